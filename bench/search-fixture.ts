/**
 * The synthetic catalog and query mix the search benchmarks share (bench:hub over SQLite, bench:scale over
 * PostgreSQL and SQLite): `catalogRows(n)` gives n one-version modules spread over 500 namespaces, 4 kinds,
 * 7 tasks, 10 languages and a common base, with descriptions drawn from a small vocabulary; `QUERIES` are the
 * search requests (filters, free text, sorts, a deep page) as query strings of GET /v1/modules.
 * Example: `await catalog.publishMany(catalogRows(10_000));`
 */
import { createHash } from 'node:crypto';
import type { NewVersion } from '../modules-store';

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

