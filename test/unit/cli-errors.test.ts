/**
 * The one CLI error handler (server/cli/errors.ts): every command group reports failures as one `CODE: message`
 * line and a non-zero status — in-process for several commands, and once as a real `modhub` process.
 */
import { execFile } from 'node:child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Command } from 'commander';
import { runCommand } from '../helpers/cli';
import { registerCommands } from '../../server/cli/index';
import { cliErrorLine, runProgram } from '../../server/cli/errors';
import { CodedError, StoreError } from '../../modules-store';
import { ModhubError } from '../../client-sdk';

const run = (...args: string[]): Promise<string> => runCommand(registerCommands, args);
let root: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-cli-errors-'));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

test.each([
  // commander's own usage errors
  [['base', 'tiny'], /^INVALID_ARGUMENT: required option '--out <dir>' not specified$/m],
  [['nope'], /^INVALID_ARGUMENT: unknown command 'nope'/m],
  [['ls', '--sort', 'stars'], /^INVALID_ARGUMENT: option '--sort <sort>' argument 'stars' is invalid/m],
  // our argument checks
  [['base', 'tiny', '--out', 'x', '--layers', 'two'], /^INVALID_ARGUMENT: '--layers' must be an integer, got 'two'$/],
  [['module', 'init', '--base', 'b', '--kind', 'diff', '--id', 'a/b', '--out', 'o'], /^INVALID_ARGUMENT: '--kind' must be one of bottleneck, lora, fusion, ia3/],
  [['serve', '--device', 'tpu'], /^INVALID_ARGUMENT: '--device' must be cpu or cuda, got 'tpu'$/],
  [['serve', '--pool-memory-mb', '-1'], /^INVALID_ARGUMENT: '--pool-memory-mb' must be a non-negative integer, got '-1'$/],
  [['serve', '--diff-memory-mb', 'lots'], /^INVALID_ARGUMENT: '--diff-memory-mb' must be a non-negative integer, got 'lots'$/],
  [['serve', '--module-memory-mb', 'all'], /^INVALID_ARGUMENT: '--module-memory-mb' must be a non-negative integer, got 'all'$/],
  [['serve', '--max-sessions', '0'], /^INVALID_ARGUMENT: '--max-sessions' must be at least 1, got '0'$/],
  [['serve', '--heap-growing-percent', '20000'], /^INVALID_ARGUMENT: '--heap-growing-percent' must be at most 10000, got '20000'$/],
  [['serve', '--mixed-gates', 'sometimes'], /^INVALID_ARGUMENT: '--mixed-gates' must be auto, on or off, got 'sometimes'$/],
  [['serve', '--run-overhead-tokens', '-3'], /^INVALID_ARGUMENT: '--run-overhead-tokens' must be a non-negative integer, got '-3'$/],
  [['serve', '--heap-growing-percent', 'big'], /^INVALID_ARGUMENT: '--heap-growing-percent' must be a non-negative integer, got 'big'$/],
  [['yank', 'lang/de'], /^INVALID_ARGUMENT: yank: 'lang\/de' must name an exact version/],
  [['infer', '--compose', '{"stack": [', 'x'], /^INVALID_ARGUMENT: '--compose' is not valid JSON/],
  // the SDK's errors with their codes (nothing listens on port 1)
  [['info', 'lang/de', '--hub', 'http://127.0.0.1:1'], /^NETWORK_ERROR: cannot reach http:\/\/127\.0\.0\.1:1/],
  [['infer', '--hub', 'http://127.0.0.1:1', 'hello'], /^NETWORK_ERROR: /],
  [['pull', 'not-a-ref', '--out', 'o', '--hub', 'http://127.0.0.1:1'], /^INVALID_REF: module reference 'not-a-ref'/],
])('modhub %j fails with one CODE: message line', async (args, line) => {
  const err = (await run(...args).then(
    () => null,
    (e: unknown) => e,
  )) as (Error & { exitCode: number }) | null;
  expect(err).not.toBeNull();
  expect(err!.message).toMatch(line);
  expect(err!.exitCode).toBe(1);
});

test('registry and file-system errors keep their codes', async () => {
  const missing = path.join(root, 'no-such-base');
  await expect(run('base', 'info', missing)).rejects.toThrow(/^INVALID_ARGUMENT: 'dir' is not a folder: .*no-such-base$/);
  const dataDir = path.join(root, 'data');
  await expect(run('token', 'create', '--scope', 'root', '--data', dataDir)).rejects.toThrow(/^INVALID_ARGUMENT: token create: unknown scope\(s\) root/);
});

test('cliErrorLine: codes from typed errors, INTERNAL for the rest', () => {
  expect(cliErrorLine(new StoreError('VERSION_EXISTS', 'lang/de@1.0.0 is already published'))).toBe('VERSION_EXISTS: lang/de@1.0.0 is already published');
  expect(cliErrorLine(new CodedError('INVALID_INPUT', 'no mask'))).toBe('INVALID_INPUT: no mask');
  expect(cliErrorLine(new ModhubError(404, 'MODULE_NOT_FOUND', 'module x/y does not exist'))).toBe('MODULE_NOT_FOUND: module x/y does not exist');
  expect(cliErrorLine(Object.assign(new Error("ENOENT: no such file or directory, open 'x'"), { code: 'ENOENT', syscall: 'open' }))).toBe("ENOENT: no such file or directory, open 'x'");
  expect(cliErrorLine(new Error('something broke'))).toBe('INTERNAL: something broke');
});

test('an unexpected error is INTERNAL with a hint; success and --help exit 0', async () => {
  const program = new Command().exitOverride().configureOutput({ writeOut: () => undefined, writeErr: () => undefined });
  program.command('boom').action(() => {
    throw new Error('kaput');
  });
  program.command('fine').action(() => undefined);
  let err = '';
  expect(await runProgram(program, ['node', 'modhub', 'boom'], (s) => (err += s))).toBe(1);
  expect(err).toMatch(/^INTERNAL: kaput\n.*MODHUB_DEBUG/);
  expect(await runProgram(program, ['node', 'modhub', 'fine'])).toBe(0);
  expect(await runProgram(program, ['node', 'modhub', '--help'])).toBe(0);
});

test('the real modhub process prints the line on stderr and exits 1', async () => {
  const repo = path.join(__dirname, '..', '..');
  const res = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = execFile(process.execPath, ['-r', path.join(repo, 'test/helpers/register-ts.js'), path.join(repo, 'server/cli.ts'), 'base', 'tiny', '--out', path.join(root, 'b'), '--layers', 'two'], { cwd: repo }, (_e, _out, stderr) => resolve({ code: child.exitCode, stderr }));
  });
  expect(res.code).toBe(1);
  expect(res.stderr.split('\n')[0]).toBe("INVALID_ARGUMENT: '--layers' must be an integer, got 'two'");
});
