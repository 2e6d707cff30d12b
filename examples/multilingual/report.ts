/**
 * Prints the multilingual recipe's results as Markdown: stage timings (times.tsv) and, per method and language,
 * accuracy / macro-F1 of each task module alone and with the target language's module (stacked adapter or summed
 * SFT), averaged over seeds (± the standard deviation of accuracy when there are several), with trainable
 * parameters per method (from the module's training record) and the majority-class baseline.
 * Run: node -r ./test/helpers/register-ts.js examples/multilingual/report.ts WORK_DIR
 */
import * as fs from 'fs';
import * as path from 'path';

interface Row {
  tag: string;
  lang: string;
  system: string;
  n: number;
  accuracy: number;
  macro_f1: number;
}

const METHODS: [string, string][] = [
  ['pfeiffer', 'Pfeiffer adapter (`seq_bn`)'],
  ['houlsby', 'Houlsby adapter (`double_seq_bn`)'],
  ['lora', 'LoRA'],
  ['ia3', 'IA³'],
  ['bitfit', 'BitFit'],
  ['diff-pruning', 'Diff Pruning'],
  ['lt-sft', 'LT-SFT'],
  ['full', 'full fine-tuning'],
];
const SETTINGS: [string, string][] = [
  ['alone', 'alone'],
  ['on lang adapter', 'on the target language adapter (MAD-X)'],
  ['+ lang SFT', '+ the target language SFT, summed'],
];

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const sd = (xs: number[]) => Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / Math.max(1, xs.length - 1));
const pct = (x: number) => (x * 100).toFixed(1);

function trainableParams(dir: string, method: string): string {
  const file = path.join(dir, 'topic', method, 'module.json');
  if (!fs.existsSync(file)) return '';
  const n = (JSON.parse(fs.readFileSync(file, 'utf8')) as { training?: { trainable_params?: number } }).training?.trainable_params;
  return n === undefined ? '' : n.toLocaleString('en-US');
}

function main(): void {
  const dir = process.argv[2];
  if (!dir) throw new RangeError('usage: report.ts WORK_DIR (the folder holding results.jsonl and times.tsv)');
  const out: string[] = [];
  const times = path.join(dir, 'times.tsv');
  if (fs.existsSync(times)) {
    out.push('| stage | seconds |', '|---|---:|');
    let total = 0;
    for (const line of fs.readFileSync(times, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      const [stage, s] = line.split('\t');
      total += Number(s);
      out.push(`| ${stage} | ${s} |`);
    }
    out.push(`| **total** | **${total}** (${(total / 60).toFixed(0)} min) |`, '');
  }
  const file = path.join(dir, 'results.jsonl');
  if (!fs.existsSync(file)) throw new RangeError(`${file} does not exist: run the recipe's eval stages first`);
  // the last line of each (seed, language, system) wins: a re-run evaluation replaces an earlier one
  const latest = new Map<string, Row>();
  for (const l of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!l.trim()) continue;
    const r = JSON.parse(l) as Row;
    latest.set(`${r.tag}\u0000${r.lang}\u0000${r.system}`, r);
  }
  const rows = [...latest.values()];
  const langs = [...new Set(rows.map((r) => r.lang))];
  const seeds = [...new Set(rows.map((r) => r.tag))];
  const cell = (lang: string, system: string) => {
    const rs = rows.filter((x) => x.lang === lang && x.system === system);
    if (!rs.length) return '';
    const acc = rs.map((r) => r.accuracy);
    const spread = rs.length > 1 ? ` ± ${pct(sd(acc))}` : '';
    return `${pct(mean(acc))}${spread} / ${pct(mean(rs.map((r) => r.macro_f1)))}`;
  };
  const n = (l: string) => rows.find((r) => r.lang === l)!.n;
  out.push(
    `Accuracy / macro-F1 (%) on held-out packages, task modules trained on English only; ${seeds.length} seed${seeds.length > 1 ? 's' : ''} (${seeds.join(', ')})` +
      `${seeds.length > 1 ? ', mean ± standard deviation of accuracy' : ''}. Test rows: ${langs.map((l) => `${l} ${n(l)}`).join(', ')}.`,
    '',
  );
  out.push(`| method | trainable params | composition | ${langs.join(' | ')} |`, `|---|---:|---|${langs.map(() => '---:').join('|')}|`);
  out.push(`| majority class (of en.train) | 0 | — | ${langs.map((l) => cell(l, 'majority')).join(' | ')} |`);
  for (const [m, label] of METHODS) {
    let first = true;
    for (const [suffix, what] of SETTINGS) {
      const system = `${m} ${suffix}`;
      if (!rows.some((r) => r.system === system)) continue;
      out.push(`| ${first ? label : ''} | ${first ? trainableParams(dir, m) : ''} | ${what} | ${langs.map((l) => cell(l, system)).join(' | ')} |`);
      first = false;
    }
  }
  process.stdout.write(out.join('\n') + '\n');
}

try {
  main();
} catch (e) {
  process.stderr.write(`report: ${(e as Error).message}\n`);
  process.exit(1);
}
