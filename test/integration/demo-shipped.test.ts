/**
 * The demo that ships in demo/ (examples/multilingual/recipe.sh full → ship.sh): an F16 base, every module made
 * for exactly that base, small enough for the repository; and the README's quick-start predictions, run for real
 * through `serve` with no --base (the out-of-the-box path): every `modhub infer --compose '…' "text"` line there
 * and the `# "text" -> label (score)` lines under it must be what the server answers.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { serve } from '../../server/cli/serve';
import { findDemo } from '../../server/demo';
import { loadBase } from '../../server/model/base';
import { readModulePackage } from '../../modules-store';
import { parseSafetensorsHeader } from '../../modules-store/safetensors';
import { freePort } from '../helpers/ports';

jest.setTimeout(120_000);

const REPO = path.resolve(__dirname, '..', '..');
const demo = findDemo(path.join(REPO, 'server'))!;

function dirBytes(dir: string): number {
  let n = 0;
  for (const f of fs.readdirSync(dir, { recursive: true }) as string[]) {
    const p = path.join(dir, f);
    if (fs.statSync(p).isFile()) n += fs.statSync(p).size;
  }
  return n;
}

/** The README quick start's `modhub infer --compose 'C' "t1" "t2"` commands with their `# "t" -> label (score)` lines. */
function readmeExamples(): { composition: unknown; texts: string[]; expected: { text: string; label: string; score: string }[] }[] {
  const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');
  const quick = readme.slice(readme.indexOf('## Quick start'), readme.indexOf('\n## ', readme.indexOf('## Quick start') + 5));
  const out = [];
  const re = /^modhub infer --compose '([^']+)' (.+)\n((?:# ".*\n)+)/gm;
  for (let m; (m = re.exec(quick)); ) {
    const texts = [...m[2].matchAll(/"([^"]+)"/g)].map((x) => x[1]);
    const expected = [...m[3].matchAll(/^# "(.+)" -> (\S+) \((0\.\d{3})\)$/gm)].map((x) => ({ text: x[1], label: x[2], score: x[3] }));
    out.push({ composition: m[1].startsWith('{') ? JSON.parse(m[1]) : m[1], texts, expected });
  }
  return out;
}

describe('the shipped demo', () => {
  it('is an F16 base and modules made for it, tens of MB at most', async () => {
    expect(demo).not.toBeNull();
    const header = parseSafetensorsHeader(fs.readFileSync(path.join(demo.base, 'model.safetensors')));
    expect(new Set([...header.entries.values()].map((e) => e.dtype))).toEqual(new Set(['F16']));
    const base = await loadBase(demo.base);
    expect(demo.modules.length).toBeGreaterThanOrEqual(17);
    for (const dir of demo.modules) {
      const pkg = await readModulePackage(dir);
      expect([path.relative(path.join(demo.dir, 'modules'), dir), pkg.manifest.base.fingerprint]).toEqual([pkg.manifest.id, base.fingerprint]);
    }
    expect(dirBytes(demo.dir)).toBeLessThan(30 * 1024 * 1024);
  });

  it("answers the README's quick-start examples as printed, from a fresh data folder with no --base", async () => {
    const examples = readmeExamples();
    expect(examples.length).toBeGreaterThanOrEqual(4);
    const data = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-demo-shipped-'));
    const srv = await serve({ data, port: await freePort(), host: '127.0.0.1', device: 'cpu', threads: 1, batchRows: 16, batchWaitMs: 2, anonymousRead: true });
    try {
      for (const ex of examples) {
        const res = await fetch(`${srv.url}/v1/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: ex.texts.map((text) => ({ text })), composition: ex.composition }) });
        expect(res.status).toBe(200);
        const body = (await res.json()) as { results: { branches: { label: string; score: number }[] }[] };
        const got = ex.texts.map((text, i) => ({ text, label: body.results[i].branches[0].label, score: body.results[i].branches[0].score.toFixed(3) }));
        expect(got).toEqual(ex.expected);
      }
    } finally {
      await srv.stop();
      fs.rmSync(data, { recursive: true, force: true });
    }
  });
});
