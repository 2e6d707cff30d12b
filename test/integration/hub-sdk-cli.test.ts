/** The TypeScript SDK and the hub CLI commands against a real server on a data dir (fetch over a socket). */
import { runCommand } from '../helpers/cli';
import { promises as fsp } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import client from 'prom-client';
import { NodeModhubClient as ModhubClient, ModhubError } from '../../client-sdk/node';
import { packArchive } from '../../modules-store';
import { registerAuthCommands } from '../../server/cli/auth';
import { registerHubCommands } from '../../server/cli/hub';
import { createHubServer } from '../../server/http/app';
import { makePackageFiles, registerTestBase, TEST_BASE } from '../helpers/hub';

let dataDir: string;
let server: Server;
let url: string;
let close: () => Promise<void>;
let admin: string;

async function writePkg(dir: string, id: string, version: string, o = {}): Promise<string> {
  await fsp.mkdir(dir, { recursive: true });
  for (const [n, b] of makePackageFiles({ id, version, ...o })) await fsp.writeFile(path.join(dir, n), b);
  return dir;
}

/** Runs the hub CLI in-process; returns stdout, or rejects with the error the top-level handler would print. */
async function cli(...args: string[]): Promise<string> {
  return runCommand((p) => {
    registerHubCommands(p);
    registerAuthCommands(p);
  }, args);
}

beforeAll(async () => {
  dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'modhub-sdk-'));
  const hub = await createHubServer({ dataDir, logger: pino({ level: 'silent' }), metrics: new client.Registry() });
  await registerTestBase(hub.registry);
  close = hub.close;
  server = await new Promise<Server>((resolve) => {
    const s = hub.app.listen(0, '127.0.0.1', () => resolve(s));
  });
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((r) => server.close(r));
  await close();
  await fsp.rm(dataDir, { recursive: true, force: true });
});

describe('CLI', () => {
  it('token create (local data dir) → push → ls → info → tag → yank → pull, with clear errors', async () => {
    const created = JSON.parse(await cli('token', 'create', '--scope', 'admin', '--data', dataDir, '--json'));
    expect(created.token).toMatch(/^mh_/);
    admin = created.token;
    const hubArgs = ['--hub', url, '--token', admin];
    const pkg = await writePkg(path.join(dataDir, 'pkgs', 'de'), 'lang/de', '1.0.0', { description: 'German adapter' });
    expect(await cli('push', pkg, ...hubArgs)).toMatch(/^published lang\/de@1\.0\.0 /);
    const archive = path.join(dataDir, 'pkgs', 'de-1.1.0.tar.gz');
    await fsp.writeFile(archive, packArchive(makePackageFiles({ id: 'lang/de', version: '1.1.0' }), true));
    expect(await cli('push', archive, ...hubArgs)).toMatch(/published lang\/de@1\.1\.0/);
    await expect(cli('push', pkg, ...hubArgs)).rejects.toThrow(/^VERSION_EXISTS: lang\/de@1\.0\.0 is already published/);
    await expect(cli('push', pkg, '--hub', url)).rejects.toThrow(/^UNAUTHORIZED: /);
    await expect(cli('push', path.join(dataDir, 'nope'), ...hubArgs)).rejects.toThrow(/INVALID_PACKAGE: .*does not exist/);
    expect(await cli('ls', 'lang', '--hub', url)).toMatch(/lang\/de\s+bottleneck/);
    expect(JSON.parse(await cli('ls', '--kind', 'lora', '--json', '--hub', url)).total).toBe(0);
    expect(await cli('tag', 'lang/de', 'stable', '1.0.0', ...hubArgs)).toMatch(/lang\/de@stable -> 1\.0\.0/);
    expect(await cli('yank', 'lang/de@1.1.0', '--reason', 'bad', ...hubArgs)).toMatch(/yanked/);
    expect(await cli('info', 'lang/de', '--hub', url)).toMatch(/1\.1\.0.*YANKED \(bad\)/);
    const out = path.join(dataDir, 'pulled');
    expect(await cli('pull', 'lang/de', '--out', out, '--hub', url)).toMatch(/pulled lang\/de@1\.0\.0/);
    expect((await fsp.readFile(path.join(out, 'weights.safetensors'))).equals(makePackageFiles({ id: 'lang/de' }).get('weights.safetensors')!)).toBe(true);
    await expect(cli('pull', 'lang/none', '--out', out, '--hub', url)).rejects.toThrow(/^MODULE_NOT_FOUND/);
    await expect(cli('yank', 'lang/de', ...hubArgs)).rejects.toThrow(/must name an exact version/);
    await expect(cli('token', 'create', '--scope', 'root', '--data', dataDir)).rejects.toThrow(/unknown scope\(s\) root/);
    expect(await cli('tag', 'lang/de', 'stable', '--remove', ...hubArgs)).toMatch(/removed lang\/de@stable/);
  });
});

describe('SDK', () => {
  let hub: ModhubClient;
  beforeAll(async () => {
    if (!admin) admin = JSON.parse(await cli('token', 'create', '--scope', 'admin', '--data', dataDir, '--json')).token;
    hub = new ModhubClient({ baseUrl: url, token: admin });
  });
  it('publishes from files and archives, searches, reads info, downloads with range and verifies', async () => {
    const files = Object.fromEntries(makePackageFiles({ id: 'task/topic', version: '1.0.0', kind: 'lora' }));
    const r = await hub.publish({ files });
    expect(r).toMatchObject({ id: 'task/topic', version: '1.0.0' });
    await hub.publish({ archive: packArchive(makePackageFiles({ id: 'task/topic', version: '1.0.1', kind: 'lora' })) });
    expect((await hub.search({ namespace: 'task' })).items.map((m) => m.id)).toEqual(['task/topic']);
    const info = await hub.info('task/topic');
    expect(info.tags.latest).toBe('1.0.1');
    expect((await hub.version('task/topic@1.0.0')).manifest.kind).toBe('lora');
    const w = files['weights.safetensors'];
    expect(Buffer.from(await hub.downloadFile('task/topic@1.0.0', 'weights.safetensors')).equals(w)).toBe(true);
    expect(Buffer.from(await hub.downloadFile('task/topic@1.0.0', 'weights.safetensors', { range: { start: 0, end: 7 } })).equals(w.subarray(0, 8))).toBe(true);
    expect((await hub.downloadArchive('task/topic')).length % 512).toBe(0);
    const seen: { file: string; loaded: number; total: number }[] = [];
    const out = path.join(dataDir, 'pull-progress');
    await hub.pull('task/topic@1.0.0', out, { onProgress: (p) => seen.push(p) });
    const last = seen.filter((p) => p.file === 'weights.safetensors').pop()!;
    expect(last).toEqual({ file: 'weights.safetensors', loaded: w.length, total: w.length });
    expect((await fsp.readFile(path.join(out, 'weights.safetensors'))).equals(w)).toBe(true);
    expect((await fsp.readdir(out)).sort()).toEqual(['README.md', 'module.json', 'weights.safetensors']);
  });
  it('tags, yanks, deletes, and manages tokens and bases', async () => {
    await hub.publish({ files: Object.fromEntries(makePackageFiles({ id: 'x/y', version: '1.0.0' })) });
    expect(await hub.setTag('x/y', 'stable', '1.0.0')).toMatchObject({ stable: '1.0.0' });
    expect(await hub.removeTag('x/y', 'stable')).toEqual({ latest: '1.0.0' });
    expect(await hub.yank('x/y@1.0.0', { reason: 'r' })).toMatchObject({ yanked: true });
    await hub.delete('x/y@1.0.0');
    await expect(hub.info('x/y')).rejects.toMatchObject({ code: 'MODULE_NOT_FOUND', status: 404 });
    const t = await hub.createToken({ scopes: ['write'], namespace: 'x' });
    expect((await new ModhubClient({ baseUrl: url, token: t.token }).whoami())?.id).toBe(t.id);
    expect((await hub.listTokens()).some((x) => x.id === t.id)).toBe(true);
    await hub.revokeToken(t.id);
    await expect(new ModhubClient({ baseUrl: url, token: t.token }).whoami()).rejects.toMatchObject({ code: 'UNAUTHORIZED', status: 401 });
    await hub.registerBase({ ...TEST_BASE, fingerprint: `sha256:${'7'.repeat(64)}` });
    expect((await hub.listBases()).length).toBe(2);
  });
  it('throws ModhubError with the server code, and NETWORK_ERROR when the hub is unreachable', async () => {
    const e = await hub.publish({ files: Object.fromEntries(makePackageFiles({ id: 'task/topic', version: '1.0.0', kind: 'lora' })) }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ModhubError);
    expect(e).toMatchObject({ status: 409, code: 'VERSION_EXISTS' });
    await expect(new ModhubClient({ baseUrl: 'http://127.0.0.1:1' }).search()).rejects.toMatchObject({ code: 'NETWORK_ERROR' });
    await expect(hub.info('no-slash')).rejects.toMatchObject({ code: 'INVALID_REF' });
  });

  it('downloads to a file resumably: a partial <dest>.part is completed by a Range request; a corrupt one is refused and removed', async () => {
    const files = Object.fromEntries(makePackageFiles({ id: 'res/ume', version: '1.0.0' }));
    await hub.publish({ files });
    const w = files['weights.safetensors'];
    expect(w.length).toBeGreaterThan(100);
    const asked: { range: string | null; status: number }[] = [];
    const recording: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      if (String(input).includes('/files/')) asked.push({ range: new Headers(init?.headers).get('range'), status: res.status });
      return res;
    };
    const c = new ModhubClient({ baseUrl: url, fetch: recording });
    const dir = path.join(dataDir, 'resume');
    await fsp.mkdir(dir, { recursive: true });
    const dest = path.join(dir, 'weights.safetensors');
    await fsp.writeFile(`${dest}.part`, w.subarray(0, 100));
    const seen: number[] = [];
    await c.downloadToFile('res/ume@1.0.0', 'weights.safetensors', dest, { onProgress: (p) => seen.push(p.loaded) });
    expect(asked).toEqual([{ range: 'bytes=100-', status: 206 }]);
    expect(seen[seen.length - 1]).toBe(w.length);
    expect((await fsp.readFile(dest)).equals(w)).toBe(true);
    expect(await fsp.readdir(dir)).toEqual(['weights.safetensors']);

    await fsp.writeFile(`${dest}.part`, Buffer.alloc(100, 7));
    await expect(c.downloadToFile('res/ume', 'weights.safetensors', dest)).rejects.toMatchObject({ code: 'DIGEST_MISMATCH', message: expect.stringContaining('the partial file was removed') });
    expect(await fsp.readdir(dir)).toEqual(['weights.safetensors']);
    expect((await fsp.readFile(dest)).equals(w)).toBe(true);
    await c.downloadToFile('res/ume', 'weights.safetensors', dest);
    expect(asked[asked.length - 1]).toEqual({ range: null, status: 200 });
    await expect(c.downloadToFile('res/ume', 'nope.bin', dest)).rejects.toMatchObject({ code: 'FILE_NOT_FOUND', message: expect.stringContaining('module.json') });
  });
});
