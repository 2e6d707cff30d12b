/**
 * Many parallel uploads over HTTP against an on-disk registry: of the same id@version exactly one wins (the rest
 * are 409) and its bytes are the ones stored; of different versions all land; nothing is lost or left over,
 * also after reopening the data dir.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import client from 'prom-client';
import { openRegistry, type Registry } from '../../modules-store';
import { createApp } from '../../server/http/app';
import { makePackageFiles, publishModule, registerTestBase } from '../helpers/hub';

let dataDir: string;
let reg: Registry;
let token: string;
let app: ReturnType<typeof createApp>;

beforeAll(async () => {
  dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'modhub-conc-'));
  reg = await openRegistry({ dataDir });
  await registerTestBase(reg);
  token = (await reg.createToken({ scopes: ['write'] })).token;
  app = createApp({ registry: reg, logger: pino({ level: 'silent' }), metrics: new client.Registry() });
});
afterAll(async () => {
  await reg.close();
  await fsp.rm(dataDir, { recursive: true, force: true });
});

describe('parallel uploads', () => {
  it('same version from 16 writers with different bytes: exactly one 201, fifteen 409, the winner is stored intact', async () => {
    const results = await Promise.all(Array.from({ length: 16 }, (_, i) => publishModule(app, 'race/same', '1.0.0', token, { seed: i, description: `writer ${i}` })));
    const statuses = results.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 201)).toHaveLength(1);
    expect(statuses.filter((s) => s === 409)).toHaveLength(15);
    for (const r of results) if (r.status === 409) expect(r.body.error.code).toBe('VERSION_EXISTS');
    const winner = results.find((r) => r.status === 201)!;
    const m = await reg.resolve('race/same@1.0.0');
    expect(m.digest).toBe(winner.body.digest);
    const i = Number(/writer (\d+)/.exec(m.manifest.description)![1]);
    expect((await m.readFile('weights.safetensors')).equals(makePackageFiles({ id: 'race/same', seed: i }).get('weights.safetensors')!)).toBe(true);
  });
  it('different versions and modules from 24 writers: all land', async () => {
    const jobs = Array.from({ length: 24 }, (_, i) => publishModule(app, `race/m${i % 3}`, `1.${Math.floor(i / 3)}.0`, token, { seed: 100 + i }));
    const results = await Promise.all(jobs);
    expect(results.map((r) => r.status)).toEqual(Array(24).fill(201));
    for (let k = 0; k < 3; k++) expect((await reg.info('race', `m${k}`)).versions).toHaveLength(8);
  });
  it('nothing lost or left over after reopening the data dir', async () => {
    await reg.close();
    reg = await openRegistry({ dataDir });
    const sweep = await reg.sweep();
    expect(sweep).toEqual({ tempFiles: 0, orphanBlobs: 0 });
    expect(new Set(await reg.blobs.list())).toEqual(await reg.catalog.allDigests());
    for (let k = 0; k < 3; k++) {
      for (const v of (await reg.info('race', `m${k}`)).versions) {
        const m = await reg.resolve(`race/m${k}@${v.version}`);
        const j = Number(v.version.split('.')[1]);
        const want = makePackageFiles({ id: `race/m${k}`, version: v.version, seed: 100 + 3 * j + k }).get('weights.safetensors')!;
        expect((await m.readFile('weights.safetensors')).equals(want)).toBe(true);
      }
    }
  });
});
