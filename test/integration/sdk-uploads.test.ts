/**
 * The SDK's resumable uploads (issue 13, item 2) against a real hub over a socket: a multi-chunk upload publishes
 * and downloads byte for byte; uploads whose PATCHes are cut off midway, lost before reaching the hub, or whose
 * answers were lost (416) resume from the hub's offset; a wrong digest is DIGEST_MISMATCH; progress is monotone and
 * ends at the total; an aborted upload resumes from a stream in a second call; NodeModhubClient.publish and
 * `modhub push` switch to the resumable path above the threshold (and not below it).
 */
import { promises as fsp } from 'node:fs';
import { createServer, type Server } from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import client from 'prom-client';
import { NodeModhubClient, sha256Blob, sha256Hex, type Progress } from '../../client-sdk/node';
import { packArchive } from '../../modules-store';
import { registerHubCommands } from '../../server/cli/hub';
import { createHubServer } from '../../server/http/app';
import { runCommand } from '../helpers/cli';
import { makePackageFiles, registerTestBase } from '../helpers/hub';

let dataDir: string;
let server: Server;
let url: string;
let close: () => Promise<void>;
let token: string;
/** Requests the hub received, as "METHOD /path" (query dropped). */
const seen: string[] = [];

/** Listens on the first free port of this worktree's range (19300-19399). */
async function listenInRange(s: Server): Promise<number> {
  for (let port = 19300; port < 19400; port++) {
    const ok = await new Promise<boolean>((resolve) => {
      const onError = () => resolve(false);
      s.once('error', onError);
      s.listen(port, '127.0.0.1', () => {
        s.off('error', onError);
        resolve(true);
      });
    });
    if (ok) return port;
  }
  throw new Error('no free port in 19300-19399');
}

beforeAll(async () => {
  dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'modhub-sdk-uploads-'));
  const hub = await createHubServer({ dataDir, logger: pino({ level: 'silent' }), metrics: new client.Registry() });
  await registerTestBase(hub.registry, { hidden_size: 256 }); // the dims of weightsBytes packages
  token = (await hub.registry.createToken({ scopes: ['write'] })).token;
  close = hub.close;
  server = createServer((req, res) => {
    seen.push(`${req.method} ${(req.url ?? '').split('?')[0]}`);
    hub.app(req, res);
  });
  url = `http://127.0.0.1:${await listenInRange(server)}`;
});
afterAll(async () => {
  await new Promise((r) => server.close(r));
  await close();
  await fsp.rm(dataDir, { recursive: true, force: true });
});

const hubClient = (fetchImpl?: typeof fetch) => new NodeModhubClient({ baseUrl: url, token, validateResponses: true, fetch: fetchImpl, retry: { retries: 0 } });
const archiveOf = (id: string, version: string, seed = 1, weightsBytes = 20_000) => packArchive(makePackageFiles({ id, version, seed, weightsBytes }), true);
const count = (re: RegExp, from = 0) => seen.slice(from).filter((s) => re.test(s)).length;

function expectMonotone(steps: Progress[], total: number): void {
  expect(steps.length).toBeGreaterThan(1);
  for (let i = 1; i < steps.length; i++) expect(steps[i].loaded).toBeGreaterThanOrEqual(steps[i - 1].loaded);
  expect(steps.at(-1)).toEqual({ loaded: total, total });
}

async function expectDownloadsEqual(hub: NodeModhubClient, ref: string, files: Map<string, Buffer>): Promise<void> {
  for (const [name, bytes] of files) expect(Buffer.from(await hub.downloadFile(ref, name)).equals(bytes)).toBe(true);
}

describe('uploadResumable', () => {
  it('a multi-chunk upload publishes, downloads byte for byte, and reports monotone progress ending at the total', async () => {
    const files = makePackageFiles({ id: 'up/multi', version: '1.0.0', seed: 2, weightsBytes: 20_000 });
    const archive = packArchive(files, true);
    expect(archive.length).toBeGreaterThan(5000);
    const hub = hubClient();
    const steps: Progress[] = [];
    const from = seen.length;
    const r = await hub.uploadResumable(archive, { chunkBytes: 1000, onProgress: (p) => steps.push(p) });
    expect(r).toMatchObject({ id: 'up/multi', version: '1.0.0' });
    expect(count(/^PATCH \/v1\/uploads\/up_/, from)).toBe(Math.ceil(archive.length / 1000));
    expect(count(/^PUT \/v1\/uploads\/up_/, from)).toBe(1);
    expect(count(/^POST \/v1\/modules$/, from)).toBe(0);
    expectMonotone(steps, archive.length);
    await expectDownloadsEqual(hub, 'up/multi@1.0.0', files);
    // the identical archive again is the idempotent success of a retried publish (200, the stored record)
    expect(await hub.uploadResumable(archive, { chunkBytes: 4096 })).toEqual({ ...r, existing: true });
  });

  it('resumes from the hub offset after a PATCH cut off midway, one lost before the hub, and one whose answer was lost (416)', async () => {
    const files = makePackageFiles({ id: 'up/flaky', version: '1.0.0', seed: 3, weightsBytes: 20_000 });
    const archive = packArchive(files, true);
    let patches = 0;
    const faults: string[] = [];
    const flaky: typeof fetch = async (input, init) => {
      if (init?.method !== 'PATCH') return fetch(input, init);
      patches++;
      const headers = init.headers as Record<string, string>;
      const body = Buffer.from(await (init.body as Blob).arrayBuffer());
      const start = Number(/^bytes (\d+)-/.exec(headers['Content-Range'])![1]);
      if (patches === 2) {
        // the connection drops after half the chunk reached the hub
        const half = Math.floor(body.length / 2);
        const sent = await fetch(input, { ...init, headers: { ...headers, 'Content-Range': `bytes ${start}-${start + half - 1}/*` }, body: body.subarray(0, half) });
        expect(sent.status).toBe(202);
        faults.push(`cut ${start}+${half}`);
        throw new TypeError('fetch failed: socket hang up');
      }
      if (patches === 4) {
        faults.push(`lost ${start}`);
        throw new TypeError('fetch failed: ECONNRESET');
      }
      if (patches === 6) {
        // an earlier attempt of this chunk got through but its answer was lost: the hub is past `start`
        const first = await fetch(input, { ...init, body });
        expect(first.status).toBe(202);
        faults.push(`dup ${start}`);
        const again = await fetch(input, { ...init, body });
        expect(again.status).toBe(416);
        return again;
      }
      return fetch(input, { ...init, body });
    };
    const steps: Progress[] = [];
    const from = seen.length;
    const r = await hubClient(flaky).uploadResumable(archive, { chunkBytes: 3000, onProgress: (p) => steps.push(p) });
    expect(r).toMatchObject({ id: 'up/flaky', version: '1.0.0' });
    expect(faults).toHaveLength(3);
    expect(count(/^GET \/v1\/uploads\/up_/, from)).toBe(3);
    expectMonotone(steps, archive.length);
    // the cut chunk went on from the middle: progress passed through the hub's offset after the cut
    const cut = /cut (\d+)\+(\d+)/.exec(faults[0])!;
    expect(steps.map((s) => s.loaded)).toContain(Number(cut[1]) + Number(cut[2]));
    await expectDownloadsEqual(hubClient(), 'up/flaky@1.0.0', files);
  });

  it('resumes after a TCP proxy drops the connection in the middle of a PATCH body', async () => {
    const files = makePackageFiles({ id: 'up/proxy', version: '1.0.0', seed: 4, weightsBytes: 20_000 });
    const archive = packArchive(files, true);
    const target = new URL(url);
    let upstreamBytes = 0;
    let dropped = 0;
    const sockets = new Set<net.Socket>();
    // forwards bytes both ways; once 9000 request bytes have passed (inside the third 4 KiB chunk), kills that connection
    const proxy = net.createServer((c) => {
      const up = net.connect(Number(target.port), target.hostname);
      sockets.add(c).add(up);
      c.on('data', (d: Buffer) => {
        upstreamBytes += d.length;
        if (!dropped && upstreamBytes > 9000) {
          dropped++;
          up.write(d.subarray(0, d.length >> 1), () => {
            up.destroy();
            c.destroy();
          });
          return;
        }
        up.write(d);
      });
      up.on('data', (d: Buffer) => c.write(d));
      const end = () => {
        up.destroy();
        c.destroy();
      };
      c.on('error', end).on('close', end);
      up.on('error', end).on('close', end);
    });
    const port = await listenInRange(proxy as unknown as Server);
    try {
      const hub = new NodeModhubClient({ baseUrl: `http://127.0.0.1:${port}`, token, retry: { retries: 0 } });
      const steps: Progress[] = [];
      const from = seen.length;
      const r = await hub.uploadResumable(archive, { chunkBytes: 4096, onProgress: (p) => steps.push(p) });
      expect(r).toMatchObject({ id: 'up/proxy', version: '1.0.0' });
      expect(dropped).toBe(1);
      expect(count(/^GET \/v1\/uploads\/up_/, from)).toBeGreaterThanOrEqual(1);
      expectMonotone(steps, archive.length);
      await expectDownloadsEqual(hubClient(), 'up/proxy@1.0.0', files);
    } finally {
      for (const x of sockets) x.destroy();
      await new Promise((res) => proxy.close(res));
    }
  });

  it('a wrong digest is DIGEST_MISMATCH and the session it opened is cancelled', async () => {
    const archive = archiveOf('up/wrong', '1.0.0');
    const hub = hubClient();
    let id = '';
    const err = await hub.uploadResumable(archive, { chunkBytes: 2048, digest: 'ab'.repeat(32), onSession: (s) => (id = s.id) }).catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 400, code: 'DIGEST_MISMATCH', message: expect.stringContaining(`sha256:${'ab'.repeat(32)}`) });
    expect(id).toMatch(/^up_/);
    await expect(hub.uploadStatus(id)).rejects.toMatchObject({ status: 404, code: 'UPLOAD_NOT_FOUND' });
    await expect(hub.info('up/wrong')).rejects.toMatchObject({ code: 'MODULE_NOT_FOUND' });
    await expect(hub.uploadResumable(archive, { digest: 'nothex' })).rejects.toThrow(/'digest' must be the sha256/);
    await expect(hub.uploadResumable(new Blob([archive]).stream())).rejects.toThrow(/pass 'digest'/);
  });

  it('an aborted upload names its session; a second call resumes it from a stream, skipping what the hub holds', async () => {
    const files = makePackageFiles({ id: 'up/stream', version: '1.0.0', seed: 5, weightsBytes: 20_000 });
    const archive = packArchive(files, true);
    const hub = hubClient();
    const ctl = new AbortController();
    let id = '';
    const err = await hub
      .uploadResumable(archive, { chunkBytes: 1500, signal: ctl.signal, onSession: (s) => (id = s.id), onProgress: (p) => p.loaded >= 3000 && ctl.abort() })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ABORTED', message: expect.stringContaining(`resumeFrom: '${id}'`) });
    const held = (await hub.uploadStatus(`/v1/uploads/${id}`)).offset;
    expect(held).toBe(3000);
    const steps: Progress[] = [];
    const from = seen.length;
    const r = await hub.uploadResumable(new Blob([archive]).stream(), { resumeFrom: id, digest: await sha256Hex(archive), chunkBytes: 4000, onProgress: (p) => steps.push(p) });
    expect(r).toMatchObject({ id: 'up/stream', version: '1.0.0' });
    expect(count(/^POST \/v1\/uploads$/, from)).toBe(0);
    expect(count(/^PATCH /, from)).toBe(Math.ceil((archive.length - held) / 4000));
    expect(steps[0]).toEqual({ loaded: held, total: 0 });
    expect(steps.at(-1)).toEqual({ loaded: archive.length, total: archive.length });
    await expectDownloadsEqual(hub, 'up/stream@1.0.0', files);
  });

  it('openUpload / cancelUpload; resumeFrom a session holding more than the archive is UPLOAD_SESSION_MISMATCH', async () => {
    const hub = hubClient();
    const s = await hub.openUpload();
    expect(s).toMatchObject({ id: expect.stringMatching(/^up_/), offset: 0, max_bytes: expect.any(Number) });
    const put = await fetch(`${url}/v1/uploads/${s.id}`, { method: 'PATCH', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/octet-stream', 'Content-Range': 'bytes 0-4999/*' }, body: new Uint8Array(5000) });
    expect(put.status).toBe(202);
    await expect(hub.uploadResumable(new Uint8Array(100), { resumeFrom: s.id })).rejects.toMatchObject({ status: 0, code: 'UPLOAD_SESSION_MISMATCH', message: expect.stringContaining('holds 5000 bytes, more than the 100 bytes') });
    // a session the call did not open is left to its owner
    expect((await hub.uploadStatus(s.id)).offset).toBe(5000);
    await hub.cancelUpload(s.id);
    await expect(hub.uploadStatus(s.id)).rejects.toMatchObject({ code: 'UPLOAD_NOT_FOUND' });
  });
});

describe('publish switches to the resumable path above the threshold', () => {
  it('NodeModhubClient.publish: a folder and an archive file above resumableAbove go in chunks, below it in one POST', async () => {
    const dir = path.join(dataDir, 'pkg-big');
    const files = makePackageFiles({ id: 'up/folder', version: '1.0.0', seed: 6, weightsBytes: 20_000 });
    await fsp.mkdir(dir, { recursive: true });
    for (const [n, b] of files) await fsp.writeFile(path.join(dir, n), b);
    const hub = hubClient();
    let from = seen.length;
    const steps: Progress[] = [];
    const r = await hub.publish(dir, { resumableAbove: 10_000, chunkBytes: 4096, onProgress: (p) => steps.push(p) });
    expect(r).toMatchObject({ id: 'up/folder', version: '1.0.0' });
    expect(count(/^PATCH \/v1\/uploads\//, from)).toBeGreaterThan(3);
    expect(count(/^POST \/v1\/modules$/, from)).toBe(0);
    expect(steps.at(-1)!.loaded).toBe(steps.at(-1)!.total);
    await expectDownloadsEqual(hub, 'up/folder@1.0.0', files);

    const file = path.join(dataDir, 'big.tar.gz');
    await fsp.writeFile(file, archiveOf('up/file', '1.0.0', 7));
    from = seen.length;
    expect(await hub.publish(file, { resumableAbove: 1000, chunkBytes: 4096 })).toMatchObject({ id: 'up/file', version: '1.0.0' });
    expect(count(/^PUT \/v1\/uploads\//, from)).toBe(1);
    expect(await sha256Blob(new Blob([await fsp.readFile(file)]))).toBe(await sha256Hex(await fsp.readFile(file)));

    const small = path.join(dataDir, 'pkg-small');
    await fsp.mkdir(small, { recursive: true });
    for (const [n, b] of makePackageFiles({ id: 'up/small', version: '1.0.0', weightsBytes: 20_000 })) await fsp.writeFile(path.join(small, n), b);
    from = seen.length;
    await hub.publish(small);
    expect(seen.slice(from).filter((s) => !s.startsWith('GET'))).toEqual(['POST /v1/modules']);
  });

  it('modhub push of an archive over --resumable-above uses the upload sessions; bad sizes are usage errors', async () => {
    const file = path.join(dataDir, 'cli.tar.gz');
    await fsp.writeFile(file, archiveOf('up/cli', '1.0.0', 8));
    const cli = (...args: string[]) => runCommand((p) => registerHubCommands(p), args);
    const from = seen.length;
    expect(await cli('push', file, '--hub', url, '--token', token, '--resumable-above', '4K', '--chunk-size', '2k')).toMatch(/^published up\/cli@1\.0\.0 /);
    const size = (await fsp.stat(file)).size;
    expect(count(/^PATCH \/v1\/uploads\//, from)).toBe(Math.ceil(size / 2048));
    expect(count(/^POST \/v1\/modules$/, from)).toBe(0);
    await expect(cli('push', file, '--hub', url, '--token', token, '--chunk-size', '0')).rejects.toThrow(/'--chunk-size' must be a byte count of at least 1/);
    await expect(cli('push', file, '--hub', url, '--token', token, '--resumable-above', 'lots')).rejects.toThrow(/'--resumable-above' must be a byte count/);
  });
});
