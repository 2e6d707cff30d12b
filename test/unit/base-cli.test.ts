/** `modhub base tiny` and `modhub base info` through commander. */
import { runCommand } from '../helpers/cli';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { registerBaseCommands } from '../../server/cli/base';

async function run(args: string[]): Promise<string> {
  return runCommand(registerBaseCommands, args);
}

test('base tiny writes a base that base info describes', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-cli-'));
  try {
    const corpus = path.join(root, 'corpus.txt');
    fs.writeFileSync(corpus, 'alpha beta\n\ngamma delta alpha\n');
    const out = path.join(root, 'base');
    const msg = await run(['base', 'tiny', '--out', out, '--family', 'distilbert', '--layers', '1', '--hidden', '8', '--heads', '2', '--seed', '3', '--corpus', corpus]);
    expect(msg).toMatch(/wrote distilbert base .* L=1 D=8 H=2 F=32/);
    const info = JSON.parse(await run(['base', 'info', out, '--json']));
    expect(info).toMatchObject({ family: 'distilbert', layers: 1, hidden_size: 8, heads: 2, intermediate_size: 32, mlm_head: true, pooler: false });
    expect(info.fingerprint).toMatch(/^sha256:[0-9a-f]{64}$/);
    const text = await run(['base', 'info', out]);
    expect(text).toMatch(new RegExp(`^fingerprint +${info.fingerprint}$`, "m"));
    await expect(run(['base', 'tiny', '--out', out, '--family', 'gpt2'])).rejects.toThrow(/'--family' must be one of/);
    await expect(run(['base', 'tiny', '--out', out, '--layers', 'two'])).rejects.toThrow(/'--layers' must be an integer/);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});
