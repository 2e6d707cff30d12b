/**
 * Scores compositions of hub modules on a labelled JSONL file ({"text", "label"}) through a running modhub server
 * (the client SDK, one `parallel` request per batch, so every composition sees the same rows): accuracy and
 * macro-F1 per composition, plus the majority-class baseline (the most frequent label of --train). Appends one
 * JSON line per composition to --out. Unlike `modhub eval` (one composition, local base), it scores through the
 * served hub, the way users reach the modules, many compositions per request.
 * Run:
 *   node -r ./test/helpers/register-ts.js examples/multilingual/eval.ts --hub http://127.0.0.1:18700 \
 *     --data .data/multilingual/task/de.test.jsonl --train .data/multilingual/task/en.train.jsonl --lang de \
 *     --system 'task=task/topic' --system 'stacked={"stack":["lang/de","task/topic"]}' --out results.jsonl
 */
import * as fs from 'fs';
import { ModhubClient, type Composition } from '../../client-sdk';
import { scores } from './metrics';

interface Flags {
  hub: string;
  token?: string;
  data: string;
  train: string;
  lang: string;
  systems: { name: string; composition: Composition }[];
  limit: number;
  batch: number;
  maxLength?: number;
  out?: string;
  tag: string;
}

function parseFlags(argv: string[]): Flags {
  const f: Partial<Flags> & { systems: Flags['systems'] } = { hub: process.env.MODHUB_HUB ?? 'http://127.0.0.1:8080', token: process.env.MODHUB_TOKEN, systems: [], limit: Infinity, batch: 64, tag: '' };
  for (let i = 0; i < argv.length; i += 2) {
    const a = argv[i];
    const v = argv[i + 1];
    if (v === undefined) throw new RangeError(`'${a}' needs a value`);
    const int = () => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new RangeError(`'${a}' must be a positive integer, got '${v}'`);
      return n;
    };
    if (a === '--hub') f.hub = v;
    else if (a === '--data') f.data = v;
    else if (a === '--train') f.train = v;
    else if (a === '--lang') f.lang = v;
    else if (a === '--limit') f.limit = int();
    else if (a === '--batch') f.batch = Math.min(int(), 256);
    else if (a === '--max-length') f.maxLength = int();
    else if (a === '--out') f.out = v;
    else if (a === '--tag') f.tag = v;
    else if (a === '--system') {
      const eq = v.indexOf('=');
      if (eq <= 0) throw new RangeError(`'--system' must be NAME=COMPOSITION (a module ref or JSON), got '${v}'`);
      const c = v.slice(eq + 1).trim();
      let composition: Composition;
      try {
        composition = c.startsWith('{') ? (JSON.parse(c) as Composition) : c;
      } catch (e) {
        throw new TypeError(`'--system ${v.slice(0, eq)}': composition is not valid JSON: ${(e as Error).message}`);
      }
      f.systems.push({ name: v.slice(0, eq), composition });
    } else throw new RangeError(`unknown option '${a}' (options: --hub, --data, --train, --lang, --system, --limit, --batch, --max-length, --out, --tag)`);
  }
  for (const k of ['data', 'train', 'lang'] as const) if (!f[k]) throw new RangeError(`'--${k}' is required`);
  if (f.systems.length === 0) throw new RangeError("give at least one '--system NAME=COMPOSITION'");
  return f as Flags;
}

function readLabelled(file: string, limit = Infinity): { text: string; label: string }[] {
  const rows: { text: string; label: string }[] = [];
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  for (let i = 0; i < lines.length && rows.length < limit; i++) {
    if (lines[i].trim() === '') continue;
    const r = JSON.parse(lines[i]) as { text?: unknown; label?: unknown };
    if (typeof r.text !== 'string' || typeof r.label !== 'string') throw new TypeError(`${file}:${i + 1}: needs string 'text' and 'label'`);
    rows.push({ text: r.text, label: r.label });
  }
  if (rows.length === 0) throw new RangeError(`${file} has no labelled rows`);
  return rows;
}

async function main(): Promise<void> {
  const f = parseFlags(process.argv.slice(2));
  const rows = readLabelled(f.data, f.limit);
  const gold = rows.map((r) => r.label);
  const trainCounts = new Map<string, number>();
  for (const r of readLabelled(f.train)) trainCounts.set(r.label, (trainCounts.get(r.label) ?? 0) + 1);
  const majority = [...trainCounts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0][0];

  const client = new ModhubClient({ baseUrl: f.hub, token: f.token });
  const preds: string[][] = f.systems.map(() => []);
  const t0 = Date.now();
  for (let i = 0; i < rows.length; i += f.batch) {
    const chunk = rows.slice(i, i + f.batch);
    const res = await client.infer({
      inputs: chunk.map((r) => ({ text: r.text })),
      composition: f.systems.length === 1 ? f.systems[0].composition : { parallel: f.systems.map((s) => s.composition) },
      ...(f.maxLength ? { max_length: f.maxLength } : {}),
    });
    res.results.forEach((r, k) => {
      r.branches.forEach((p, b) => {
        if (p.type !== 'classification') throw new TypeError(`system '${f.systems[b].name}' returned ${p.type}, not a classification (row ${i + k + 1})`);
        preds[b].push(p.label);
      });
    });
  }
  const seconds = (Date.now() - t0) / 1000;
  const lines = [
    { tag: f.tag, lang: f.lang, system: 'majority', composition: null, n: rows.length, ...scores(gold, gold.map(() => majority)) },
    ...f.systems.map((s, b) => ({ tag: f.tag, lang: f.lang, system: s.name, composition: s.composition, n: rows.length, ...scores(gold, preds[b]) })),
  ];
  for (const l of lines) process.stdout.write(`${f.lang} ${l.system.padEnd(12)} n ${l.n}  accuracy ${l.accuracy.toFixed(4)}  macro-F1 ${l.macro_f1.toFixed(4)}\n`);
  process.stdout.write(`(${rows.length} rows × ${f.systems.length} compositions in ${seconds.toFixed(1)} s)\n`);
  if (f.out) fs.appendFileSync(f.out, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
}

main().catch((e: Error) => {
  process.stderr.write(`eval: ${e.message}\n`);
  process.exit(1);
});
