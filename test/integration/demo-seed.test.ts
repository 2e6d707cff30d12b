/**
 * `modhub serve` without --base serves the shipped demo (demo/base) and seeds the hub with demo/modules:
 * real inference through a seeded composition at once, idempotent on restart, a user's own version of a demo
 * module never replaced, --no-demo back to a random base. A small demo folder is built here (tiny base, two
 * modules); the real demo/ is checked in test/integration/demo-shipped.test.ts.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { serve } from '../../server/cli/serve';
import { findDemo, readDemo } from '../../server/demo';
import { loadBase } from '../../server/model/base';
import { initModule } from '../../server/model/module-init';
import { createTinyBase } from '../../server/model/tiny';
import { writeModulePackage } from '../../modules-store/package';
import { freePort } from '../helpers/ports';

jest.setTimeout(60_000);

let root: string;
let demoDir: string;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-demo-'));
  demoDir = path.join(root, 'demo');
  await createTinyBase({ out: path.join(demoDir, 'base'), family: 'bert', layers: 2, hidden: 32, heads: 2, seed: 3 });
  const base = await loadBase(path.join(demoDir, 'base'));
  const lang = initModule(base, { kind: 'bottleneck', id: 'lang/de', version: '1.0.0', config: { preset: 'seq_bn_inv', non_linearity: 'gelu', reduction_factor: 2 }, task: 'mlm', language: 'de', seed: 1 });
  const topic = initModule(base, { kind: 'bottleneck', id: 'topic/pfeiffer', version: '1.0.0', config: { preset: 'seq_bn' }, head: { type: 'classification', labels: ['games', 'sound', 'fonts'] }, task: 'classification', seed: 2 });
  await writeModulePackage(path.join(demoDir, 'modules', 'lang', 'de'), lang.manifest, lang.tensors);
  await writeModulePackage(path.join(demoDir, 'modules', 'topic', 'pfeiffer'), topic.manifest, topic.tensors);
});

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

async function start(data: string, o: { demo?: boolean | string } = {}) {
  const port = await freePort();
  const srv = await serve({ data, port, host: '127.0.0.1', device: 'cpu', threads: 1, batchRows: 8, batchWaitMs: 2, anonymousRead: true, demo: o.demo ?? demoDir });
  return { ...srv, get: (p: string) => fetch(`${srv.url}${p}`), post: (p: string, body: unknown) => fetch(`${srv.url}${p}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }) };
}

describe('the demo served by default', () => {
  it('finds demo/ above the code and lists its modules in a stable order', () => {
    expect(readDemo(demoDir).modules.map((m) => path.relative(demoDir, m))).toEqual([path.join('modules', 'lang', 'de'), path.join('modules', 'topic', 'pfeiffer')]);
    expect(findDemo(path.join(demoDir, 'base'))?.dir).toBe(demoDir);
    expect(findDemo(os.tmpdir())).toBeNull();
  });

  it('serves the demo base, seeds its modules once, and answers a stacked composition at once; a restart publishes nothing', async () => {
    const data = path.join(root, 'hub-a');
    const demoBase = await loadBase(path.join(demoDir, 'base'));
    let srv = await start(data);
    try {
      expect(((await (await srv.get('/v1/base')).json()) as { fingerprint: string }).fingerprint).toBe(demoBase.fingerprint);
      const res = await srv.post('/v1/infer', { inputs: [{ text: 'Ein Spiel mit Karten' }], composition: { stack: ['lang/de', 'topic/pfeiffer'] } });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { results: { branches: { type: string; label: string }[] }[] };
      expect(body.results[0].branches[0].type).toBe('classification');
      expect(['games', 'sound', 'fonts']).toContain(body.results[0].branches[0].label);
    } finally {
      await srv.stop();
    }
    const versionsBefore = fs.readdirSync(path.join(data, 'blobs'), { recursive: true }).length;
    srv = await start(data);
    try {
      const info = (await (await srv.get('/v1/modules/topic/pfeiffer')).json()) as { versions: unknown[] };
      expect(info.versions).toHaveLength(1);
      expect(fs.readdirSync(path.join(data, 'blobs'), { recursive: true }).length).toBe(versionsBefore);
    } finally {
      await srv.stop();
    }
  });

  it("leaves a user's own module of a demo name alone", async () => {
    const data = path.join(root, 'hub-b');
    let srv = await start(data, { demo: false });
    await srv.stop();
    // a hub whose topic/pfeiffer@1.0.0 is someone else's (other weights): seeding must not replace it
    const base = await loadBase(path.join(demoDir, 'base'));
    const other = initModule(base, { kind: 'bottleneck', id: 'topic/pfeiffer', version: '1.0.0', config: { preset: 'seq_bn' }, head: { type: 'classification', labels: ['games', 'sound', 'fonts'] }, task: 'classification', seed: 99 });
    const ownOnly = path.join(root, 'own-only');
    fs.cpSync(path.join(demoDir, 'base'), path.join(ownOnly, 'base'), { recursive: true });
    await writeModulePackage(path.join(ownOnly, 'modules', 'topic', 'pfeiffer'), other.manifest, other.tensors);
    srv = await start(data, { demo: ownOnly });
    const ownDigest = ((await (await srv.get('/v1/modules/topic/pfeiffer/1.0.0')).json()) as { digest: string }).digest;
    await srv.stop();
    srv = await start(data);
    try {
      const now = (await (await srv.get('/v1/modules/topic/pfeiffer/1.0.0')).json()) as { digest: string };
      expect(now.digest).toBe(ownDigest);
      expect((await srv.get('/v1/modules/lang/de')).status).toBe(200); // the rest of the demo is seeded
    } finally {
      await srv.stop();
    }
  });

  it('--no-demo serves a tiny random base in <data>/base and seeds nothing', async () => {
    const data = path.join(root, 'hub-c');
    const srv = await start(data, { demo: false });
    try {
      expect(fs.existsSync(path.join(data, 'base', 'config.json'))).toBe(true);
      expect((await srv.get('/v1/modules/lang/de')).status).toBe(404);
    } finally {
      await srv.stop();
    }
  });
});
