/**
 * The synthetic data the hub benchmarks share (bench:hub over SQLite, bench:scale over PostgreSQL and SQLite,
 * bench:hub-memory): `catalogRows(n)` gives n one-version modules spread over 500 namespaces, 4 kinds,
 * 7 tasks, 10 languages and a common base, with descriptions drawn from a small vocabulary; `QUERIES` are the
 * search requests (filters, free text, sorts, a deep page) as query strings of GET /v1/modules; `bigPackage`
 * builds a large valid module for upload benchmarks.
 * Example: `await catalog.publishMany(catalogRows(10_000));`
 */
import { createHash, randomBytes } from 'node:crypto';
import { serializeSafetensors, type NewVersion, type SearchParams, type Tensor } from '../modules-store';

/** The base most rows (every third) are published against. */
export const FINGERPRINT = `sha256:${'be'.repeat(32)}`;

const WORDS = ['german', 'french', 'topic', 'ner', 'sentiment', 'news', 'legal', 'medical', 'adapter', 'lora', 'sparse', 'qa'];
const KINDS = ['bottleneck', 'lora', 'diff', 'fusion'];
const TASKS = ['mlm', 'topic-classification', 'ner', 'pos', 'sentiment', 'nli', 'qa'];
const LANGS = ['de', 'fr', 'en', 'es', 'it', 'sw', 'fi', 'ja', 'zh', 'ar'];

/** n one-version modules (row i is `ns<i % 500>/<word>-<i>` at 1.0.0). */
export function catalogRows(n: number): NewVersion[] {
  const rows: NewVersion[] = [];
  const t0 = Date.UTC(2025, 0, 1);
  for (let i = 0; i < n; i++) {
    const ns = `ns${i % 500}`;
    const name = `${WORDS[i % WORDS.length]}-${i}`;
    const hex = createHash('sha256').update(String(i)).digest('hex');
    rows.push({
      namespace: ns,
      name,
      version: '1.0.0',
      manifest: '{}',
      kind: KINDS[i % 4],
      task: TASKS[i % TASKS.length],
      language: LANGS[i % LANGS.length],
      baseFingerprint: i % 3 === 0 ? FINGERPRINT : `sha256:${hex}`,
      description: `${WORDS[(i * 7) % WORDS.length]} ${WORDS[(i * 3) % WORDS.length]} module number ${i}`,
      digest: `sha256:${hex}`,
      size: 1000,
      files: [{ name: 'module.json', digest: `sha256:${hex}`, size: 1000 }],
      createdAt: new Date(t0 + i * 60_000).toISOString(),
    });
  }
  return rows;
}

export const QUERIES = [
  'sort=downloads',
  'sort=recent',
  'sort=name&offset=50000',
  'kind=lora',
  'task=ner&language=de',
  `base=${FINGERPRINT}`,
  'namespace=ns42',
  'q=medical',
  'q=legal-1230',
  'q=zzz-no-match',
  'kind=diff&q=legal&sort=recent',
];

/** One of QUERIES (a GET /v1/modules query string) as Registry.search parameters. */
export function searchParamsOf(query: string): SearchParams {
  const q = Object.fromEntries(new URLSearchParams(query));
  return {
    q: q.q,
    kind: q.kind,
    task: q.task,
    language: q.language,
    baseFingerprint: q.base,
    namespace: q.namespace,
    sort: q.sort as SearchParams['sort'],
    offset: q.offset ? Number(q.offset) : 0,
  };
}

/** The base bigPackage's modules are made for (register it before publishing them). */
export const BIG_BASE = { fingerprint: FINGERPRINT, family: 'bert', hidden_size: 768, num_layers: 12, vocab_size: 30522 };

/**
 * A valid seq_bn package on a BERT-base-shaped base (D 768, 12 layers) with full-rank adapters in the first
 * `layers` layers, ~4.7 MB each, random weights so every call stores new blobs: module.json + weights.safetensors.
 */
export function bigPackage(o: { id: string; version: string; layers?: number; language?: string }): Map<string, Buffer> {
  const D = BIG_BASE.hidden_size;
  const L = BIG_BASE.num_layers;
  const layers = o.layers ?? L;
  const rand = (n: number): Float32Array => {
    const a = new Float32Array(n);
    const bytes = randomBytes(n);
    for (let i = 0; i < n; i++) a[i] = (bytes[i] - 128) / 1280;
    return a;
  };
  const tensors = new Map<string, Tensor>();
  for (let l = 0; l < layers; l++) {
    const p = `layers.${l}.output`;
    tensors.set(`${p}.adapter_down.weight`, { dtype: 'F32', shape: [D, D], data: rand(D * D) });
    tensors.set(`${p}.adapter_down.bias`, { dtype: 'F32', shape: [D], data: rand(D) });
    tensors.set(`${p}.adapter_up.weight`, { dtype: 'F32', shape: [D, D], data: rand(D * D) });
    tensors.set(`${p}.adapter_up.bias`, { dtype: 'F32', shape: [D], data: rand(D) });
  }
  const leaveOut = Array.from({ length: L - layers }, (_, i) => layers + i);
  const manifest = {
    format_version: 1,
    id: o.id,
    version: o.version,
    kind: 'bottleneck',
    config: { preset: 'seq_bn', reduction_factor: 1, ...(leaveOut.length ? { leave_out: leaveOut } : {}) },
    head: null,
    task: 'mlm',
    ...(o.language ? { language: o.language } : {}),
    labels: [],
    base: BIG_BASE,
    description: 'benchmark module',
  };
  return new Map([
    ['module.json', Buffer.from(JSON.stringify(manifest))],
    ['weights.safetensors', serializeSafetensors(tensors)],
  ]);
}
