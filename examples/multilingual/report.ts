/**
 * Prints the multilingual recipe's results as Markdown: stage timings (times.tsv) and, per target language,
 * accuracy / macro-F1 of every evaluated composition (results.jsonl from eval.ts), with the majority baseline.
 * Run: node -r ./test/helpers/register-ts.js examples/multilingual/report.ts WORK_DIR
 */
import * as fs from 'fs';
import * as path from 'path';

interface Row {
  lang: string;
  system: string;
  n: number;
  accuracy: number;
  macro_f1: number;
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
    out.push(`| **total** | **${total}** |`, '');
  }
  const file = path.join(dir, 'results.jsonl');
  if (!fs.existsSync(file)) throw new RangeError(`${file} does not exist: run the recipe's eval stage first`);
  const rows = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as Row);
  const langs = [...new Set(rows.map((r) => r.lang))];
  const systems = [...new Set(rows.map((r) => r.system))];
  const cell = (lang: string, system: string) => {
    const r = rows.filter((x) => x.lang === lang && x.system === system).pop();
    return r ? `${(r.accuracy * 100).toFixed(1)} / ${(r.macro_f1 * 100).toFixed(1)}` : '';
  };
  out.push(`accuracy / macro-F1 (%), test rows: ${langs.map((l) => `${l} ${rows.find((r) => r.lang === l)!.n}`).join(', ')}`, '');
  out.push(`| composition | ${langs.join(' | ')} |`, `|---|${langs.map(() => '---:').join('|')}|`);
  for (const s of systems) out.push(`| ${s} | ${langs.map((l) => cell(l, s)).join(' | ')} |`);
  process.stdout.write(out.join('\n') + '\n');
}

try {
  main();
} catch (e) {
  process.stderr.write(`report: ${(e as Error).message}\n`);
  process.exit(1);
}
