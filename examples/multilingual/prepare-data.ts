/**
 * Writes the multilingual example's data from Debian's apt lists (package descriptions in en, de, fr, it, es and
 * each package's Section): English task train/dev, per-language zero-shot test sets, per-language MLM text,
 * parallel pairs and TLM lines, and stats.json. Runs `apt-get update` with those languages when the lists are
 * missing. Refuses to write anything if a test package leaks into another set.
 * Run: node -r ./test/helpers/register-ts.js examples/multilingual/prepare-data.ts [--out .data/multilingual] [--lists /var/lib/apt/lists]
 * Output (under --out):
 *   task/en.train.jsonl, task/en.dev.jsonl     {"text", "label", "package"}
 *   task/{en,de,fr,it,es}.test.jsonl            the held-out packages in each language (en: reference)
 *   mlm/{lang}.train.txt, mlm/{lang}.dev.txt    one description per line (train / dev packages only)
 *   parallel/en-{lang}.jsonl                    {"package", "en", "<lang>"} training packages only
 *   tlm/en-{lang}.txt                           "<en> [SEP] <lang>" lines (both sides cut to --tlm-chars)
 *   stats.json                                  counts per split, language and label
 */
import { execFileSync, spawnSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { parsePackages, parseTranslation, type PackageRecord, type Translation } from './deb822';
import { TOPICS, TOPIC_NAMES } from './topics';
import { buildDataset, findLeaks, LANGUAGES, TARGETS, TEST_RATE, DEV_RATE, MIN_SHARED_PARAGRAPH, type Dataset, type Example } from './split';

const APT_HELPER = '/usr/lib/apt/apt-helper';

interface Flags {
  out: string;
  lists: string;
  seed: string;
  tlmChars: number;
}

function parseFlags(argv: string[]): Flags {
  const f: Flags = { out: '.data/multilingual', lists: '/var/lib/apt/lists', seed: 'modhub-multilingual-v1', tlmChars: 300 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (v === undefined) throw new RangeError(`'${a}' needs a value`);
    if (a === '--out') f.out = v;
    else if (a === '--lists') f.lists = v;
    else if (a === '--seed') f.seed = v;
    else if (a === '--tlm-chars') {
      f.tlmChars = Number(v);
      if (!Number.isInteger(f.tlmChars) || f.tlmChars < 20) throw new RangeError(`'--tlm-chars' must be an integer >= 20, got '${v}'`);
    } else throw new RangeError(`unknown option '${a}' (options: --out, --lists, --seed, --tlm-chars)`);
    i++;
  }
  return f;
}

/** Reads an apt list file, compressed (.lz4, .gz, .xz, ...) or not, through apt's own decompressors. */
function readList(file: string): string {
  if (!/\.(lz4|gz|xz|bz2|zst|lzma)$/.test(file)) return fs.readFileSync(file, 'utf8');
  return execFileSync(APT_HELPER, ['cat-file', file], { encoding: 'utf8', maxBuffer: 1 << 30 });
}

function listFiles(dir: string): { packages: string[]; translations: Map<string, string[]> } {
  const names = fs.existsSync(dir) ? fs.readdirSync(dir).sort() : [];
  const packages = names.filter((n) => /_binary-[a-z0-9]+_Packages(\.[a-z0-9]+)?$/.test(n)).map((n) => path.join(dir, n));
  const translations = new Map<string, string[]>();
  for (const lang of LANGUAGES) translations.set(lang, names.filter((n) => new RegExp(`_i18n_Translation-${lang}(\\.[a-z0-9]+)?$`).test(n)).map((n) => path.join(dir, n)));
  return { packages, translations };
}

/** The lists, fetched with apt-get when a language (or every Packages file) is missing. */
function ensureLists(dir: string): ReturnType<typeof listFiles> {
  let found = listFiles(dir);
  const missing = LANGUAGES.filter((l) => found.translations.get(l)!.length === 0);
  if (found.packages.length > 0 && missing.length === 0) return found;
  process.stderr.write(`apt lists missing in ${dir} (${[...missing.map((l) => `Translation-${l}`), ...(found.packages.length ? [] : ['Packages'])].join(', ')}); running apt-get update\n`);
  const r = spawnSync('apt-get', ['-o', `Acquire::Languages=${LANGUAGES.join(',')}`, 'update'], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`apt-get update failed (exit ${r.status ?? r.signal}); run as root: apt-get -o Acquire::Languages="${LANGUAGES.join(',')}" update`);
  found = listFiles(dir);
  const still = LANGUAGES.filter((l) => found.translations.get(l)!.length === 0);
  if (found.packages.length === 0 || still.length > 0) throw new Error(`after apt-get update, ${dir} still lacks ${still.map((l) => `Translation-${l}`).join(', ') || 'Packages'}`);
  return found;
}

function cut(text: string, chars: number): string {
  if (text.length <= chars) return text;
  const i = text.lastIndexOf(' ', chars);
  return text.slice(0, i > chars / 2 ? i : chars);
}

function countLabels(xs: Example[]): Record<string, number> {
  const c: Record<string, number> = {};
  for (const l of TOPIC_NAMES) c[l] = 0;
  for (const x of xs) c[x.label]++;
  return c;
}

function stats(d: Dataset, f: Flags, files: string[]) {
  const groups = new Map<string, number>();
  for (const g of d.groupOf.values()) groups.set(g, (groups.get(g) ?? 0) + 1);
  const sizes = [...groups.values()].sort((a, b) => b - a);
  const majority = (xs: Example[]) => (xs.length ? Math.max(...Object.values(countLabels(xs))) / xs.length : 0);
  return {
    seed: f.seed,
    // the lists change with every archive update: the hashes say which ones these sets came from
    sources: Object.fromEntries(files.map((x) => [path.basename(x), crypto.createHash('sha256').update(fs.readFileSync(x)).digest('hex')])),
    topics: TOPICS,
    rules: { test_rate: TEST_RATE, dev_rate: DEV_RATE, min_shared_paragraph: MIN_SHARED_PARAGRAPH, tlm_chars: f.tlmChars },
    packages: d.items.length,
    labelled_packages: d.items.filter((i) => i.label !== null).length,
    descriptions: Object.fromEntries(LANGUAGES.map((l) => [l, d.items.filter((i) => i.text[l] !== undefined).length])),
    groups: { count: groups.size, largest: sizes.slice(0, 5), singletons: sizes.filter((s) => s === 1).length },
    split_packages: { train: [...d.split.values()].filter((s) => s === 'train').length, dev: [...d.split.values()].filter((s) => s === 'dev').length, test: [...d.split.values()].filter((s) => s === 'test').length },
    task: {
      'en.train': { n: d.task.train.length, labels: countLabels(d.task.train), majority: majority(d.task.train) },
      'en.dev': { n: d.task.dev.length, labels: countLabels(d.task.dev), majority: majority(d.task.dev) },
      ...Object.fromEntries(LANGUAGES.map((l) => [`${l}.test`, { n: d.test[l].length, labels: countLabels(d.test[l]), majority: majority(d.test[l]) }])),
    },
    mlm: Object.fromEntries(LANGUAGES.map((l) => [l, { train: d.mlm[l].train.length, dev: d.mlm[l].dev.length }])),
    parallel: Object.fromEntries(TARGETS.map((l) => [`en-${l}`, d.parallel[l].length])),
  };
}

function main(): void {
  const f = parseFlags(process.argv.slice(2));
  const t0 = Date.now();
  const lists = ensureLists(f.lists);
  const packages: PackageRecord[] = [];
  for (const file of lists.packages) packages.push(...parsePackages(readList(file), file));
  const translations: Translation[] = [];
  for (const lang of LANGUAGES) for (const file of lists.translations.get(lang)!) translations.push(...parseTranslation(readList(file), lang, file));
  process.stderr.write(`read ${packages.length} package records and ${translations.length} descriptions in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);

  const d = buildDataset({ packages, translations, seed: f.seed });
  const leaks = findLeaks(d);
  if (leaks.length > 0) throw new Error(`test packages leak into other sets (${leaks.length}):\n${leaks.slice(0, 10).join('\n')}`);

  const out = f.out;
  fs.rmSync(out, { recursive: true, force: true });
  for (const sub of ['task', 'mlm', 'parallel', 'tlm']) fs.mkdirSync(path.join(out, sub), { recursive: true });
  const jsonl = (file: string, rows: object[]) => fs.writeFileSync(path.join(out, file), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  const lines = (file: string, rows: string[]) => fs.writeFileSync(path.join(out, file), rows.join('\n') + '\n');
  const ex = (e: Example) => ({ text: e.text, label: e.label, package: e.package });
  jsonl('task/en.train.jsonl', d.task.train.map(ex));
  jsonl('task/en.dev.jsonl', d.task.dev.map(ex));
  for (const l of LANGUAGES) {
    jsonl(`task/${l}.test.jsonl`, d.test[l].map(ex));
    lines(`mlm/${l}.train.txt`, d.mlm[l].train.map((e) => e.text));
    lines(`mlm/${l}.dev.txt`, d.mlm[l].dev.map((e) => e.text));
  }
  for (const l of TARGETS) {
    jsonl(`parallel/en-${l}.jsonl`, d.parallel[l].map((p) => ({ package: p.package, en: p.en, [l]: p.other })));
    // TLM (Conneau & Lample 2019): both sides in one sequence so that masked words can be read off the translation
    lines(`tlm/en-${l}.txt`, d.parallel[l].map((p) => `${cut(p.en, f.tlmChars)} [SEP] ${cut(p.other, f.tlmChars)}`));
  }
  const s = stats(d, f, [...lists.packages, ...[...lists.translations.values()].flat()]);
  fs.writeFileSync(path.join(out, 'stats.json'), JSON.stringify(s, null, 2) + '\n');

  const row = (name: string, v: { n: number; labels: Record<string, number>; majority: number }) =>
    `${name.padEnd(10)} ${String(v.n).padStart(6)}  ${TOPIC_NAMES.map((t) => String(v.labels[t]).padStart(6)).join(' ')}   ${(v.majority * 100).toFixed(1)}%`;
  const report = [
    `packages ${s.packages} (labelled ${s.labelled_packages}), groups ${s.groups.count} (largest ${s.groups.largest.join(', ')}); split packages ${JSON.stringify(s.split_packages)}`,
    `${'set'.padEnd(10)} ${'n'.padStart(6)}  ${TOPIC_NAMES.map((t) => t.slice(0, 6).padStart(6)).join(' ')}   majority`,
    ...Object.entries(s.task).map(([k, v]) => row(k, v)),
    `mlm lines (train/dev): ${LANGUAGES.map((l) => `${l} ${s.mlm[l].train}/${s.mlm[l].dev}`).join(', ')}`,
    `parallel pairs: ${TARGETS.map((l) => `en-${l} ${s.parallel[`en-${l}`]}`).join(', ')}`,
    `no test package in any other set (checked); wrote ${out} in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  ];
  process.stdout.write(report.join('\n') + '\n');
}

try {
  main();
} catch (e) {
  process.stderr.write(`prepare-data: ${(e as Error).message}\n`);
  process.exit(1);
}
