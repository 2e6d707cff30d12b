/**
 * Over a real socket: the `@huggingface/hub` npm package's download functions against a modhub server, and the
 * hub's own upload → search → download round trip with fetch + FormData.
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { downloadFile, downloadFileToCacheDir, fileDownloadInfo, fileExists, listFiles, listModels, modelInfo, snapshotDownload } from '@huggingface/hub';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import client from 'prom-client';
import { openMemoryRegistry, sha256Digest, unpackArchive, type Registry } from '../../modules-store';
import { createApp } from '../../server/http/app';
import { commitOf } from '../../server/http/hf-routes';
import { makeArchive, makePackageFiles, registerTestBase } from '../helpers/hub';

let reg: Registry;
let server: Server;
let hubUrl: string;
let closedServer: Server;
let closedUrl: string;
let readToken: string;

async function listen(app: ReturnType<typeof createApp>): Promise<[Server, string]> {
  const s = await new Promise<Server>((resolve) => {
    const srv = app.listen(0, '127.0.0.1', () => resolve(srv));
  });
  return [s, `http://127.0.0.1:${(s.address() as AddressInfo).port}`];
}

beforeAll(async () => {
  reg = await openMemoryRegistry();
  await registerTestBase(reg);
  await reg.publish({ files: makePackageFiles({ id: 'lang/de', version: '1.0.0', description: 'German adapter' }) });
  await reg.publish({ files: makePackageFiles({ id: 'lang/de', version: '1.1.0', kind: 'lora' }) });
  await reg.setTag('lang', 'de', 'stable', '1.0.0');
  readToken = (await reg.createToken({ scopes: ['read'] })).token;
  const logger = pino({ level: 'silent' });
  [server, hubUrl] = await listen(createApp({ registry: reg, logger, metrics: new client.Registry() }));
  [closedServer, closedUrl] = await listen(createApp({ registry: reg, logger, metrics: new client.Registry(), auth: { anonymousRead: false } }));
});
afterAll(async () => {
  await new Promise((r) => server.close(r));
  await new Promise((r) => closedServer.close(r));
  await reg.close();
});

describe('@huggingface/hub against modhub', () => {
  it('downloadFile fetches files by version, tag and main (= latest)', async () => {
    const want10 = makePackageFiles({ id: 'lang/de', version: '1.0.0', description: 'German adapter' }).get('weights.safetensors')!;
    const want11 = makePackageFiles({ id: 'lang/de', version: '1.1.0', kind: 'lora' }).get('weights.safetensors')!;
    const byVersion = await downloadFile({ repo: 'lang/de', path: 'weights.safetensors', revision: '1.0.0', hubUrl });
    expect(Buffer.from(await byVersion!.arrayBuffer()).equals(want10)).toBe(true);
    const byTag = await downloadFile({ repo: 'lang/de', path: 'weights.safetensors', revision: 'stable', hubUrl });
    expect(Buffer.from(await byTag!.arrayBuffer()).equals(want10)).toBe(true);
    const main = await downloadFile({ repo: 'lang/de', path: 'module.json', hubUrl });
    expect(JSON.parse(await main!.text())).toMatchObject({ id: 'lang/de', version: '1.1.0' });
    const latestWeights = await downloadFile({ repo: 'lang/de', path: 'weights.safetensors', hubUrl });
    expect(Buffer.from(await latestWeights!.arrayBuffer()).equals(want11)).toBe(true);
    expect(await downloadFile({ repo: 'lang/de', path: 'nope.bin', hubUrl })).toBeNull();
    await expect(downloadFile({ repo: 'lang/none', path: 'module.json', hubUrl })).rejects.toThrow(/module lang\/none does not exist/);
  });
  it('fileDownloadInfo reads size and ETag; X-Repo-Commit names the version; the commit works as a revision', async () => {
    const v = await reg.resolve('lang/de@1.0.0');
    const w = v.files.find((f) => f.name === 'weights.safetensors')!;
    const info = await fileDownloadInfo({ repo: 'lang/de', path: 'weights.safetensors', revision: '1.0.0', hubUrl });
    expect(info).toMatchObject({ size: w.size, etag: `"${w.digest.slice(7)}"` });
    const res = await fetch(`${hubUrl}/lang/de/resolve/1.0.0/weights.safetensors`, { method: 'HEAD' });
    expect(res.headers.get('x-repo-commit')).toBe(commitOf(v.digest));
    const byCommit = await downloadFile({ repo: 'lang/de', path: 'module.json', revision: commitOf(v.digest), hubUrl });
    expect(JSON.parse(await byCommit!.text()).version).toBe('1.0.0');
  });
  it('fileExists, modelInfo and listModels work', async () => {
    expect(await fileExists({ repo: 'lang/de', path: 'README.md', hubUrl })).toBe(true);
    expect(await fileExists({ repo: 'lang/de', path: 'missing.txt', hubUrl })).toBe(false);
    // 'siblings' is sent as expand=siblings like the others; the package's types do not list it as expandable.
    const fields = ['cardData', 'siblings', 'library_name'] as unknown as ('cardData' | 'library_name')[];
    const mi = await modelInfo({ name: 'lang/de', hubUrl, additionalFields: fields });
    expect(mi).toMatchObject({ name: 'lang/de', private: false, library_name: 'modhub' });
    expect((mi as unknown as { siblings: { rfilename: string }[] }).siblings.map((s) => s.rfilename)).toEqual(['module.json', 'weights.safetensors', 'README.md']);
    expect((mi as unknown as { cardData: Record<string, unknown> }).cardData).toMatchObject({ library_name: 'modhub' });
    const at = await modelInfo({ name: 'lang/de', revision: '1.0.0', hubUrl });
    expect(at.name).toBe('lang/de');
    const listed: string[] = [];
    for await (const m of listModels({ search: { query: 'lang/d' }, hubUrl })) listed.push(m.name);
    expect(listed).toEqual(['lang/de']);
  });
  it('listFiles, downloadFileToCacheDir and snapshotDownload fill an HF cache folder', async () => {
    const files: string[] = [];
    for await (const f of listFiles({ repo: 'lang/de', revision: '1.0.0', hubUrl })) files.push(`${f.type}:${f.path}`);
    expect(files).toEqual(['file:module.json', 'file:weights.safetensors', 'file:README.md']);
    const cacheDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'modhub-hfcache-'));
    const debug = jest.spyOn(console, 'debug').mockImplementation(() => undefined);
    try {
      const want = makePackageFiles({ id: 'lang/de', version: '1.0.0', description: 'German adapter' }).get('weights.safetensors')!;
      const p = await downloadFileToCacheDir({ repo: 'lang/de', path: 'weights.safetensors', revision: '1.0.0', hubUrl, cacheDir });
      expect((await fsp.readFile(p)).equals(want)).toBe(true);
      const snap = await snapshotDownload({ repo: 'lang/de', revision: 'stable', hubUrl, cacheDir });
      expect((await fsp.readdir(snap)).sort()).toEqual(['README.md', 'module.json', 'weights.safetensors']);
      expect((await fsp.readFile(path.join(snap, 'weights.safetensors'))).equals(want)).toBe(true);
    } finally {
      debug.mockRestore();
      await fsp.rm(cacheDir, { recursive: true, force: true });
    }
  });
  it('passes a modhub token as hf_<token> when anonymous reads are off', async () => {
    await expect(downloadFile({ repo: 'lang/de', path: 'module.json', hubUrl: closedUrl })).rejects.toThrow(/anonymous reads/);
    const f = await downloadFile({ repo: 'lang/de', path: 'module.json', hubUrl: closedUrl, accessToken: `hf_${readToken}` });
    expect(JSON.parse(await f!.text()).id).toBe('lang/de');
  });
});

describe('modhub API over a real socket', () => {
  it('uploads with FormData, searches and downloads the archive', async () => {
    const admin = (await reg.createToken({ scopes: ['admin'] })).token;
    const archive = makeArchive({ id: 'task/topic', version: '2.0.0' }, true);
    const form = new FormData();
    form.set('sha256', sha256Digest(archive));
    form.set('archive', new Blob([archive]), 'topic.tar.gz');
    const up = await fetch(`${hubUrl}/v1/modules`, { method: 'POST', body: form, headers: { Authorization: `Bearer ${admin}` } });
    expect(up.status).toBe(201);
    const search = (await (await fetch(`${hubUrl}/v1/modules?namespace=task`)).json()) as { items: { id: string }[] };
    expect(search.items.map((m) => m.id)).toEqual(['task/topic']);
    const dl = await fetch(`${hubUrl}/v1/modules/task/topic/versions/latest/archive`);
    const bytes = Buffer.from(await dl.arrayBuffer());
    expect(Number(dl.headers.get('content-length'))).toBe(bytes.length);
    const files = await unpackArchive(bytes, { maxFileBytes: 1e7, maxTotalBytes: 1e7 });
    expect(JSON.parse(files.get('module.json')!.toString()).version).toBe('2.0.0');
  });
});
