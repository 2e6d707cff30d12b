/**
 * Scale-out with real servers: three `modhub serve` processes sharing one PostgreSQL catalog and one S3 bucket
 * (s3rver), nginx in front as the load balancer. A publish, tag move, yank or delete on one replica is seen by the
 * next request on every other one — including the inference path, whose ref → version memo is dropped when the
 * registry generation moves (change notification, or the change-count check each request makes; the fallback
 * poll is set to a minute here). Start-up refuses an unreachable database or bucket, naming it.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openStore, packArchive, type Registry } from '../../modules-store';
import { serializeSafetensors } from '../../modules-store/safetensors';
import { loadBase } from '../../server/model/base';
import { createTinyBase } from '../../server/model/tiny';
import { registerHubCommands } from '../../server/cli/hub';
import { runCommand } from '../helpers/cli';
import { makeAdapterModule, type BaseInfo } from '../helpers/modules';
import { describeWithPg, startPg, type PgServer } from '../helpers/pg-server';
import { findNginx, NGINX_MISSING_MESSAGE, runServe, startNginx, startReplica, type Nginx, type Replica } from '../helpers/replicas';
import { startS3, type S3Server } from '../helpers/s3-server';

jest.setTimeout(300_000);

describeWithPg('three replicas over one PostgreSQL + one S3 bucket, behind nginx', () => {
  let pg: PgServer;
  let s3: S3Server;
  let env: Record<string, string>;
  let replicas: Replica[] = [];
  let lb: Nginx | null = null;
  let admin: string;
  let info: BaseInfo;
  let scratch: string;
  let baseDir: string;
  let control: Registry;

  beforeAll(async () => {
    [pg, s3] = await Promise.all([startPg(), startS3()]);
    env = { ...s3.env('hub/'), MODHUB_DATABASE_URL: await pg.createDatabase(), MODHUB_CHANGE_POLL_MS: '60000' };
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-scale-'));
    baseDir = path.join(scratch, 'base');
    await createTinyBase({ out: baseDir, family: 'bert', layers: 2, hidden: 16, heads: 2, seed: 5 });
    const c = (await loadBase(baseDir)).config;
    replicas = await Promise.all([0, 1, 2].map(() => startReplica({ base: baseDir, env, args: ['--threads', '1', '--batch-wait-ms', '1'] })));
    // An admin token from `modhub token create`, which writes into the shared catalog when MODHUB_DATABASE_URL is set.
    const saved = { ...process.env };
    Object.assign(process.env, env);
    try {
      admin = (await runCommand(registerHubCommands, ['token', 'create', '--scope', 'admin', 'write', 'read', '--data', path.join(scratch, 'cli')])).split('\n')[0];
    } finally {
      for (const k of Object.keys(env)) if (saved[k] === undefined) delete process.env[k];
      Object.assign(process.env, saved);
    }
    expect(admin).toMatch(/^mh_/);
    // The test's own handle on the shared store, to look into the catalog and the bucket.
    control = await openStore({ dataDir: path.join(scratch, 'control'), env: { ...process.env, ...env }, sweep: false });
    const base = (await control.listBases())[0];
    expect(base).toBeDefined();
    info = { family: 'bert', fingerprint: base.fingerprint, hidden_size: c.hiddenSize, num_layers: c.numLayers, vocab_size: c.vocabSize, intermediate_size: c.intermediateSize };
    if (findNginx()) lb = await startNginx(replicas.map((r) => r.url));
    else process.stderr.write(NGINX_MISSING_MESSAGE);
  });

  afterAll(async () => {
    await lb?.stop();
    await Promise.all(replicas.map((r) => r.stop()));
    await control?.close();
    await s3?.stop();
    await pg?.stop();
    if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
  });

  const auth = (): Record<string, string> => ({ Authorization: `Bearer ${admin}` });

  function archive(id: string, version: string, seed: number): Buffer {
    const m = makeAdapterModule({ id, version, base: info, preset: 'seq_bn', config: { reduction_factor: 2 }, head: { type: 'classification', num_labels: 2, labels: ['no', 'yes'] }, seed });
    return packArchive(new Map([
      ['module.json', Buffer.from(JSON.stringify(m.manifest))],
      ['weights.safetensors', serializeSafetensors(m.tensors)],
    ]), false);
  }

  async function publish(url: string, id: string, version: string, seed: number): Promise<void> {
    const form = new FormData();
    form.append('archive', new Blob([archive(id, version, seed)]), 'm.tar');
    const res = await fetch(`${url}/v1/modules`, { method: 'POST', headers: auth(), body: form });
    if (res.status !== 201) throw new Error(`publish ${id}@${version} on ${url}: ${res.status} ${await res.text()}`);
  }

  /** The `id@version` a composition resolves to on a replica (the inference path, with its memo), or the HTTP error code. */
  async function resolvesTo(url: string, composition: string): Promise<string> {
    const res = await fetch(`${url}/v1/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: [{ text: 'hello world' }], composition }) });
    const body = (await res.json()) as { modules?: string[][]; error?: { code: string } };
    return res.status === 200 ? body.modules![0].join('+') : `${res.status} ${body.error?.code}`;
  }

  async function onEvery(composition: string): Promise<string[]> {
    return Promise.all(replicas.map((r) => resolvesTo(r.url, composition)));
  }

  it('shows a publish, tag move, yank and delete on one replica to the next request on every replica', async () => {
    const [a, b, c] = replicas.map((r) => r.url);
    await publish(a, 'scale/topic', '1.0.0', 1);
    // Each replica now memoises scale/topic → 1.0.0 in its engine.
    expect(await onEvery('scale/topic')).toEqual(Array(3).fill('scale/topic@1.0.0'));
    expect(await onEvery('scale/topic')).toEqual(Array(3).fill('scale/topic@1.0.0'));

    await publish(b, 'scale/topic', '1.1.0', 2);
    expect(await onEvery('scale/topic')).toEqual(Array(3).fill('scale/topic@1.1.0'));

    const tag = await fetch(`${c}/v1/modules/scale/topic/tags/stable`, { method: 'PUT', headers: { ...auth(), 'content-type': 'application/json' }, body: JSON.stringify({ version: '1.0.0' }) });
    expect(tag.status).toBe(200);
    expect(await onEvery('scale/topic@stable')).toEqual(Array(3).fill('scale/topic@1.0.0'));
    const moved = await fetch(`${a}/v1/modules/scale/topic/tags/stable`, { method: 'PUT', headers: { ...auth(), 'content-type': 'application/json' }, body: JSON.stringify({ version: '1.1.0' }) });
    expect(moved.status).toBe(200);
    expect(await onEvery('scale/topic@stable')).toEqual(Array(3).fill('scale/topic@1.1.0'));
    const untag = await fetch(`${b}/v1/modules/scale/topic/tags/stable`, { method: 'DELETE', headers: auth() });
    expect(untag.status).toBe(200);
    expect(await onEvery('scale/topic@stable')).toEqual(Array(3).fill('404 VERSION_NOT_FOUND'));

    const yank = await fetch(`${a}/v1/modules/scale/topic/versions/1.1.0/yank`, { method: 'POST', headers: { ...auth(), 'content-type': 'application/json' }, body: '{}' });
    expect(yank.status).toBe(200);
    expect(await onEvery('scale/topic')).toEqual(Array(3).fill('scale/topic@1.0.0'));

    // Delete 1.1.0 on c: every replica stops resolving it and the bucket loses its blobs (1.0.0's stay).
    const v11 = (await control.catalog.getVersion('scale', 'topic', '1.1.0'))!;
    const v10 = (await control.catalog.getVersion('scale', 'topic', '1.0.0'))!;
    const del = await fetch(`${c}/v1/modules/scale/topic/versions/1.1.0`, { method: 'DELETE', headers: auth() });
    expect(del.status).toBe(204);
    expect(await onEvery('scale/topic@1.1.0')).toEqual(Array(3).fill('404 VERSION_NOT_FOUND'));
    const inBucket = new Set(await control.blobs.list());
    const onlyIn11 = v11.files.filter((f) => !v10.files.some((g) => g.digest === f.digest));
    expect(onlyIn11.length).toBeGreaterThan(0);
    for (const f of onlyIn11) expect(inBucket.has(f.digest)).toBe(false);
    for (const f of v10.files) expect(inBucket.has(f.digest)).toBe(true);
    // Downloads of what is left come from the bucket through any replica, whole and by range.
    const w = v10.files.find((f) => f.name === 'weights.safetensors')!;
    for (const url of [a, b, c]) {
      const whole = await fetch(`${url}/v1/modules/scale/topic/versions/1.0.0/files/weights.safetensors`);
      expect(whole.status).toBe(200);
      expect(Buffer.from(await whole.arrayBuffer()).equals(await control.blobs.read(w.digest))).toBe(true);
      const part = await fetch(`${url}/v1/modules/scale/topic/versions/1.0.0/files/weights.safetensors`, { headers: { Range: 'bytes=0-7' } });
      expect(part.status).toBe(206);
      expect(Buffer.from(await part.arrayBuffer()).equals((await control.blobs.read(w.digest)).subarray(0, 8))).toBe(true);
    }

    const delModule = await fetch(`${b}/v1/modules/scale/topic`, { method: 'DELETE', headers: auth() });
    expect(delModule.status).toBe(204);
    expect(await onEvery('scale/topic')).toEqual(Array(3).fill('404 MODULE_NOT_FOUND'));
    expect(await control.blobs.list()).toEqual([]);
  });

  it('balances requests over all three replicas through nginx, and what is published through it is everywhere', async () => {
    if (!lb) {
      process.stderr.write(NGINX_MISSING_MESSAGE);
      return;
    }
    await publish(lb.url, 'scale/lb', '1.0.0', 3);
    const served = new Set<string>();
    for (let i = 0; i < 9; i++) {
      const res = await fetch(`${lb.url}/v1/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: [{ text: `request ${i}` }], composition: 'scale/lb' }) });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { modules: string[][] }).modules[0]).toEqual(['scale/lb@1.0.0']);
      served.add(res.headers.get('x-modhub-upstream') ?? '');
    }
    expect(served).toEqual(new Set(replicas.map((r) => `127.0.0.1:${r.port}`)));
    await publish(lb.url, 'scale/lb', '1.0.1', 4);
    expect(await onEvery('scale/lb')).toEqual(Array(3).fill('scale/lb@1.0.1'));
    // A second publish of the same version through the balancer loses on whichever replica it lands: 409.
    const form = new FormData();
    form.append('archive', new Blob([archive('scale/lb', '1.0.1', 5)]), 'm.tar');
    const again = await fetch(`${lb.url}/v1/modules`, { method: 'POST', headers: auth(), body: form });
    expect(again.status).toBe(409);
    const ready = await fetch(`${lb.url}/readyz`);
    expect(await ready.json()).toEqual({ status: 'ready' });
  });

  it('refuses to start on an unreachable database or bucket, naming it', async () => {
    const data = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-scale-bad-'));
    try {
      const badDb = await runServe(['--base', baseDir, '--data', data, '--port', '0'], { ...env, MODHUB_DATABASE_URL: `postgres://modhub:hunter2@127.0.0.1:${pg.port}/no_such_db` });
      expect(badDb.code).toBe(1);
      expect(badDb.output).toContain(`cannot use the PostgreSQL catalog at postgres://modhub:***@127.0.0.1:${pg.port}/no_such_db`);
      expect(badDb.output).not.toContain('hunter2');
      const badBucket = await runServe(['--base', baseDir, '--data', data, '--port', '0', '--blob-url', 's3://missing-bucket/x'], env);
      expect(badBucket.code).toBe(1);
      expect(badBucket.output).toContain(`cannot use the blob bucket s3://missing-bucket/x/ at ${s3.endpoint}: the bucket does not exist`);
    } finally {
      fs.rmSync(data, { recursive: true, force: true });
    }
  });
});
