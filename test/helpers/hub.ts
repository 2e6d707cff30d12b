/**
 * Test helpers for the hub: tiny VALID module packages of every kind built in code (tensors from the same
 * expected-tensor table the validator uses, filled with deterministic values), archives, and supertest shortcuts.
 * Example: `const files = makePackageFiles({ id: 'lang/de', version: '1.0.0', kind: 'bottleneck' })`.
 */
import type { Express } from 'express';
import request from 'supertest';
import {
  expectedTensors,
  packArchive,
  parseManifest,
  type Manifest,
  type ManifestInput,
  type ModuleKind,
  type Registry,
  type Tensor,
} from '../../modules-store';
import { serializeSafetensors } from '../../modules-store/safetensors';

export const TEST_BASE = {
  family: 'bert',
  fingerprint: `sha256:${'ab'.repeat(32)}`,
  hidden_size: 8,
  num_layers: 2,
  vocab_size: 32,
};

export interface MakeOptions {
  id?: string;
  version?: string;
  kind?: ModuleKind;
  task?: string;
  language?: string;
  description?: string;
  head?: ManifestInput['head'];
  labels?: string[];
  config?: Record<string, unknown>;
  base?: Partial<typeof TEST_BASE>;
  /** Overrides merged into the manifest last (for invalid-manifest tests). */
  extra?: Record<string, unknown>;
  /** Scales the bottleneck adapter to roughly this many weight bytes (for large-module tests). */
  weightsBytes?: number;
  /** Varies the tensor values (same shapes), so packages differ in their weights. */
  seed?: number;
}

const DEFAULT_CONFIG: Record<ModuleKind, Record<string, unknown>> = {
  bottleneck: { preset: 'seq_bn', reduction_factor: 4 },
  lora: { r: 2, lora_alpha: 4, target_modules: ['query', 'value'] },
  diff: { method: 'lt-sft' },
  fusion: { adapters: ['lang/de@1.0.0', 'task/topic'] },
  ia3: { target_modules: ['key', 'value', 'ffn_in'] },
};

/** A manifest input (not yet validated) for a tiny module. */
export function makeManifestInput(o: MakeOptions = {}): ManifestInput {
  const kind = o.kind ?? 'bottleneck';
  let base = { ...TEST_BASE, ...o.base };
  let config = { ...DEFAULT_CONFIG[kind], ...o.config };
  if (o.weightsBytes && kind === 'bottleneck') {
    // r = D / rf; weights ≈ L * 2 * (2 * r * D) * 4 bytes → pick D and r to reach the size.
    const D = 256;
    const r = Math.max(1, Math.round(o.weightsBytes / (base.num_layers * 4 * D * 4)));
    base = { ...base, hidden_size: D };
    config = { ...config, reduction_factor: D / r };
  }
  return {
    format_version: 1,
    id: o.id ?? 'test/mod',
    version: o.version ?? '1.0.0',
    kind,
    config,
    head: o.head ?? { type: 'classification', num_labels: 3, layers: 2, activation: 'tanh' },
    task: o.task ?? 'topic-classification',
    language: o.language ?? 'de',
    labels: o.labels ?? ['a', 'b', 'c'],
    base,
    metrics: { accuracy: 0.5 },
    license: 'apache-2.0',
    description: o.description ?? `tiny ${kind} module for tests`,
    ...o.extra,
  } as ManifestInput;
}

function fill(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.sin(seed * 7.1 + i * 0.37) * 0.1;
  return a;
}

/** Valid tensors for a validated manifest. Diff modules touch two base parameters (one sparse, one dense). */
export function makeTensors(m: Manifest, seed0 = 0): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  let seed = 1 + seed0 * 1000;
  for (const [name, e] of expectedTensors(m, 4 * m.base.hidden_size)) {
    out.set(name, { dtype: 'F32', shape: e.shape, data: fill(e.shape.reduce((a, b) => a * b, 1), seed++) });
  }
  if (m.kind === 'diff') {
    out.set('bert.encoder.layer.0.attention.self.query.weight.index', { dtype: 'I64', shape: [3], data: BigInt64Array.from([1n, 5n, 9n]) });
    out.set('bert.encoder.layer.0.attention.self.query.weight.values', { dtype: 'F32', shape: [3], data: Float32Array.from([0.1, -0.2, 0.3]) });
    out.set('bert.encoder.layer.0.attention.self.query.bias.dense', { dtype: 'F32', shape: [m.base.hidden_size], data: fill(m.base.hidden_size, 99) });
  }
  return out;
}

/** The files of a valid package (module.json + weights.safetensors; README.md only when `card` is given). */
export function makePackageFiles(o: MakeOptions = {}, card?: string): Map<string, Buffer> {
  const input = makeManifestInput(o);
  // tensors come from a valid twin of the manifest, which may itself be deliberately invalid
  const m = parseManifest({ ...makeManifestInput({ ...o, extra: undefined, version: undefined }) });
  const files = new Map<string, Buffer>([
    ['module.json', Buffer.from(JSON.stringify(input, null, 2))],
    ['weights.safetensors', serializeSafetensors(makeTensors(m, o.seed))],
  ]);
  if (card !== undefined) files.set('README.md', Buffer.from(card));
  return files;
}

/** A tar (or tar.gz) archive of a valid package. */
export function makeArchive(o: MakeOptions = {}, gzip = false): Buffer {
  return packArchive(makePackageFiles(o), gzip);
}

/** Registers the test base so packages built here are accepted. */
export async function registerTestBase(reg: Registry, base: Partial<typeof TEST_BASE> = {}): Promise<void> {
  await reg.registerBase({ ...TEST_BASE, ...base });
}

/** Uploads a tiny valid module over HTTP (multipart archive); returns the supertest response. */
export function publishModule(app: Express, id: string, version: string, token?: string, o: MakeOptions = {}): request.Test {
  const req = request(app).post('/v1/modules');
  if (token) req.set('Authorization', `Bearer ${token}`);
  return req.attach('archive', makeArchive({ ...o, id, version }), { filename: 'module.tar', contentType: 'application/x-tar' });
}
