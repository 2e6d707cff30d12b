/**
 * Untrained modules from `initModule` are valid packages the engine loads; PEFT's LoRA init (B = 0) and the IA³
 * init (ones) leave the base unchanged, while AdapterHub's "bert" init for bottleneck adapters does not.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { createTinyBase } from '../../server/model/tiny';
import { loadBase, type Base } from '../../server/model/base';
import { initModule } from '../../server/model/module-init';
import { Engine } from '../../server/runtime/engine';
import { ModuleCache } from '../../server/runtime/module-cache';
import { validatePackage } from '../../modules-store';
import { serializeSafetensors } from '../../modules-store/safetensors';

let base: Base;
let engine: Engine;
beforeAll(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-init-'));
  await createTinyBase({ out: dir, layers: 2, hidden: 16, heads: 2, seed: 1 });
  base = await loadBase(dir);
  engine = await Engine.create({ base });
});
afterAll(() => engine.close());

async function hidden(comp: unknown): Promise<Float32Array> {
  const enc = await base.tokenizer.encodeBatch(['the quick brown fox']);
  const [o] = await engine.forward(enc, await engine.plan(comp), { hidden: true });
  return o.hidden!;
}

it.each([
  ['bottleneck', { preset: 'seq_bn_inv' }],
  ['bottleneck', { preset: 'double_seq_bn', ln_before: true, ln_after: true }],
  ['lora', { target_modules: ['query', 'value', 'ffn_in', 'ffn_out'] }],
  ['ia3', {}],
  ['ia3', { target_modules: ['query', 'key', 'value', 'attn_output', 'ffn_in', 'ffn_out'] }],
] as const)('a fresh %s module %j is a valid package the engine runs', async (kind, config) => {
  const m = initModule(base, { kind, id: 'test/fresh', config: { ...config }, head: { type: 'classification', labels: ['a', 'b'] } });
  const pkg = validatePackage(new Map([['module.json', Buffer.from(JSON.stringify(m.manifest))], ['weights.safetensors', serializeSafetensors(m.tensors)]]));
  expect(pkg.manifest.id).toBe('test/fresh');
  engine.addModule(m.manifest, m.tensors);
  const plans = await engine.plan('test/fresh@0.1.0');
  expect(plans[0].head?.weights.labels).toEqual(['a', 'b']);
  const h = await hidden('test/fresh@0.1.0');
  const bare = await hidden(null);
  const maxDiff = h.reduce((a, x, i) => Math.max(a, Math.abs(x - bare[i])), 0);
  // LoRA B = 0 and IA³ ones: the base up to float rounding (their variants' graphs fuse ops differently).
  if (kind === 'lora' || kind === 'ia3') expect(maxDiff).toBeLessThan(1e-5);
  else expect(maxDiff).toBeGreaterThan(1e-4);
});

it('refuses heads without labels and fusion without adapters', () => {
  expect(() => initModule(base, { kind: 'bottleneck', id: 'a/b', head: { type: 'classification' } })).toThrow(/labels/);
  expect(() => initModule(base, { kind: 'fusion', id: 'a/b' })).toThrow(/adapters/);
  expect(() => initModule(base, { kind: 'ia3', id: 'a/b', config: { target_modules: ['k'] } })).toThrow(/invalid ia3 config: config\.target_modules\.0/);
});

it.each([
  ['bottleneck', { preset: 'seq_bn_inv' }],
  ['lora', { target_modules: ['query', 'value', 'ffn_in', 'ffn_out'] }],
  ['ia3', {}],
] as const)('%s: a module loaded from its file keeps none of the file\'s bytes (it reads them as views)', async (kind, config) => {
  const m = initModule(base, { kind, id: 'test/file', config: { ...config }, head: { type: 'classification', labels: ['a', 'b'] } });
  const file = serializeSafetensors(m.tensors);
  const cache = new ModuleCache(base, { resolve: async () => ({ manifest: m.manifest, readFile: async () => file }) }, 2 ** 30, { moduleLoads: 0 });
  const loaded = await cache.module('test/file@0.1.0');
  // every typed array the module holds, however deep
  const arrays: ArrayBufferView[] = [];
  const seen = new Set<unknown>();
  const walk = (x: unknown): void => {
    if (x === null || typeof x !== 'object' || seen.has(x)) return;
    seen.add(x);
    if (ArrayBuffer.isView(x)) return void arrays.push(x);
    for (const v of x instanceof Map ? x.values() : Object.values(x)) walk(v);
  };
  walk(loaded);
  expect(arrays.length).toBeGreaterThan(0);
  for (const a of arrays) expect(a.buffer).not.toBe(file.buffer);
  expect(loaded.bytes).toBe([...m.tensors.values()].reduce((n, t) => n + t.data.byteLength, 0));
});
