/**
 * Crash safety with a real child process: the hub server is SIGKILLed at known phases of an upload (after each
 * blob, before and after the catalog commit) and at timed moments while the body streams in and blobs are being
 * written. After each restart the module version is either fully visible (every file downloadable, bytes equal to
 * what was sent) or absent, earlier versions are intact, and there are no temp files and no unreferenced blobs.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openRegistry, unpackArchive } from '../../modules-store';
import { makeArchive, makePackageFiles, registerTestBase, type MakeOptions } from '../helpers/hub';

const ROOT = path.resolve(__dirname, '../..');
let dataDir: string;
let token: string;

interface Child {
  proc: ChildProcessWithoutNullStreams;
  port: number;
  lines: string[];
  waitFor(prefix: string, timeoutMs?: number): Promise<string>;
}

async function startChild(pauseAt = ''): Promise<Child> {
  const proc = spawn(process.execPath, ['-r', './test/helpers/register-ts.js', 'test/helpers/hub-child.ts'], {
    cwd: ROOT,
    env: { ...process.env, MODHUB_DATA: dataDir, PAUSE_AT: pauseAt },
  });
  const lines: string[] = [];
  const waiters: { prefix: string; resolve: (l: string) => void }[] = [];
  let buf = '';
  let stderr = '';
  proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  proc.stdout.on('data', (c: Buffer) => {
    buf += c.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(line);
      for (const w of waiters.filter((x) => line.startsWith(x.prefix))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  const waitFor = (prefix: string, timeoutMs = 20000): Promise<string> => {
    const seen = lines.find((l) => l.startsWith(prefix));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`child never printed '${prefix}'; stderr: ${stderr}`)), timeoutMs);
      waiters.push({ prefix, resolve: (l) => (clearTimeout(t), resolve(l)) });
      proc.once('exit', (code) => reject(new Error(`child exited (${code}) before '${prefix}'; stderr: ${stderr}`)));
    });
  };
  const port = Number((await waitFor('LISTENING')).split(' ')[1]);
  return { proc, port, lines, waitFor };
}

async function kill(c: Child, signal: NodeJS.Signals): Promise<void> {
  if (c.proc.exitCode !== null || c.proc.signalCode !== null) return;
  const exited = new Promise((r) => c.proc.once('exit', r));
  c.proc.kill(signal);
  await exited;
}

const PKG = (version: string, seed: number): MakeOptions => ({ id: 'crash/mod', version, weightsBytes: 4 << 20, seed });
const expected = new Map<string, Map<string, Buffer>>();
function expectedFiles(version: string, seed: number): Map<string, Buffer> {
  const key = `${version}/${seed}`;
  if (!expected.has(key)) expected.set(key, makePackageFiles(PKG(version, seed)));
  return expected.get(key)!;
}

/** Checks the invariant after a restart; returns whether `version` is visible. */
async function checkState(c: Child, expectVisible: Map<string, number>, version: string, seed: number): Promise<boolean> {
  const base = `http://127.0.0.1:${c.port}`;
  expect(await fsp.readdir(path.join(dataDir, 'blobs', 'tmp'))).toEqual([]);
  const info = await fetch(`${base}/v1/modules/crash/mod`);
  const versions: string[] = info.status === 404 ? [] : ((await info.json()) as { versions: { version: string }[] }).versions.map((v) => v.version);
  const visible = versions.includes(version);
  const all = new Map(expectVisible);
  if (visible) all.set(version, seed);
  expect(versions.sort()).toEqual([...all.keys()].sort());
  for (const [v, s] of all) {
    const res = await fetch(`${base}/v1/modules/crash/mod/versions/${v}/archive`);
    expect(res.status).toBe(200);
    const files = await unpackArchive(Buffer.from(await res.arrayBuffer()), { maxFileBytes: 64 << 20, maxTotalBytes: 64 << 20 });
    const want = expectedFiles(v, s);
    expect(files.get('weights.safetensors')!.equals(want.get('weights.safetensors')!)).toBe(true);
    expect(files.get('module.json')!.equals(want.get('module.json')!)).toBe(true);
  }
  return visible;
}

async function noOrphans(): Promise<void> {
  const reg = await openRegistry({ dataDir, sweep: false });
  try {
    expect(new Set(await reg.blobs.list())).toEqual(await reg.catalog.allDigests());
  } finally {
    await reg.close();
  }
}

beforeAll(async () => {
  dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'modhub-crash-'));
  const reg = await openRegistry({ dataDir });
  await registerTestBase(reg, { hidden_size: 256 });
  token = (await reg.createToken({ scopes: ['admin'] })).token;
  await reg.close();
});
afterAll(() => fsp.rm(dataDir, { recursive: true, force: true }));

describe('SIGKILL during upload', () => {
  const committed = new Map<string, number>();
  let tempFilesLeft = 0;
  const scenarios: { label: string; pauseAt?: string; killOn?: string; killAfterMs?: number; mustBeVisible?: boolean }[] = [
    { label: 'with the weights in a temp file, before its rename', pauseAt: 'temp-written:2', mustBeVisible: false },
    { label: 'after the first blob', pauseAt: 'blob:1', mustBeVisible: false },
    { label: 'after the weights blob', pauseAt: 'blob:2', mustBeVisible: false },
    { label: 'just before the catalog commit', pauseAt: 'commit-begin:1', mustBeVisible: false },
    { label: 'just after the catalog commit, before the response', pauseAt: 'commit-done:1', mustBeVisible: true },
    { label: 'while the body streams in (1 ms)', killAfterMs: 1 },
    { label: 'while validating (30 ms)', killAfterMs: 30 },
    { label: 'while the weights blob is written', killOn: 'blob:1' },
    { label: 'while the README blob is written', killOn: 'blob:2' },
    { label: 'while the catalog transaction runs', killOn: 'commit-begin:1' },
  ];
  scenarios.forEach((s, i) => {
    it(`leaves all or nothing when killed ${s.label}`, async () => {
      const version = `1.0.${i}`;
      const seed = i + 1;
      const c = await startChild(s.pauseAt ?? '');
      const upload = fetch(`http://127.0.0.1:${c.port}/v1/modules`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/x-tar' },
        body: makeArchive(PKG(version, seed)),
      }).then(
        (r) => r.status,
        () => 'connection lost',
      );
      if (s.pauseAt || s.killOn) await c.waitFor(`PHASE ${s.pauseAt ?? s.killOn}`);
      else await new Promise((r) => setTimeout(r, s.killAfterMs));
      await kill(c, 'SIGKILL');
      tempFilesLeft += (await fsp.readdir(path.join(dataDir, 'blobs', 'tmp'))).length;
      const outcome = await upload;
      if (process.env.CRASH_DEBUG) process.stderr.write(`${s.label}: ${outcome} temp=${tempFilesLeft} phases=${c.lines.filter((l) => l.startsWith('PHASE')).join(',')}\n`);
      const c2 = await startChild();
      try {
        const visible = await checkState(c2, committed, version, seed);
        if (s.mustBeVisible !== undefined) expect(visible).toBe(s.mustBeVisible);
        if (outcome === 201) expect(visible).toBe(true);
        if (visible) committed.set(version, seed);
      } finally {
        await kill(c2, 'SIGTERM');
      }
      await noOrphans();
    });
  });
  it('really killed some upload in the middle of a blob write (the sweep had temp files to remove)', () => {
    expect(tempFilesLeft).toBeGreaterThan(0);
  });
});
