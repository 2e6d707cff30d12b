/**
 * Builds the multilingual example's data sets from parsed apt lists: joins each package's description across
 * languages (by Description-md5), groups packages whose text is shared or nearly so, and assigns whole groups
 * to test, dev or train, so that no package described in a test set — nor a near-copy of it — gives text to
 * any training, dev, pretraining or parallel set, in any language (the translations are parallel).
 * Everything is a pure function of its inputs and the seed: same lists, same files.
 * Example:
 *   const d = buildDataset({ packages, translations, seed: 'v1' });
 *   d.task.train;           // [{ package, text, label }] English, labelled
 *   d.test.de;              // [{ package, text, label }] German, zero-shot
 *   findLeaks(d);           // [] (the rule, checked)
 */
import * as crypto from 'crypto';
import type { PackageRecord, Translation } from './deb822';
import { topicOf } from './topics';

export const LANGUAGES = ['en', 'de', 'fr', 'it', 'es'] as const;
export type Lang = (typeof LANGUAGES)[number];
export const TARGETS = ['de', 'fr', 'it', 'es'] as const;

/**
 * Chance that a labelled group goes to test, by the rarest target language among its labelled packages: Spanish
 * has ~2k translated descriptions, so half of its labelled groups are held out; English-only groups stay in
 * training (the English test set is the English side of the held-out packages, comparable to the others).
 */
export const TEST_RATE: Readonly<Record<Lang, number>> = { es: 0.5, de: 0.3, fr: 0.25, it: 0.15, en: 0 };
/** Chance that a non-test group goes to dev (English task dev, per-language MLM dev text). */
export const DEV_RATE = 0.1;
/** A first paragraph shorter than this (normalised characters) is too generic to mark a near-duplicate. */
export const MIN_SHARED_PARAGRAPH = 60;

export interface Item {
  package: string;
  md5: string;
  source: string;
  /** Bare section ('' when the package has no Packages record). */
  section: string;
  label: string | null;
  /** Description per language (English always present). */
  text: Partial<Record<Lang, string>>;
}

export interface Example {
  package: string;
  text: string;
  label: string;
}

export interface Pair {
  package: string;
  en: string;
  other: string;
}

export interface Dataset {
  items: Item[];
  /** Package → its group's id (the smallest package name in it). */
  groupOf: Map<string, string>;
  split: Map<string, 'train' | 'dev' | 'test'>;
  task: { train: Example[]; dev: Example[] };
  test: Record<Lang, Example[]>;
  /** Unlabelled text per language: one line per distinct description, with the packages it describes. */
  mlm: Record<Lang, { train: { text: string; packages: string[] }[]; dev: { text: string; packages: string[] }[] }>;
  /** Parallel descriptions of training packages, English ↔ each target language. */
  parallel: Record<(typeof TARGETS)[number], Pair[]>;
}

export interface BuildOptions {
  packages: PackageRecord[];
  translations: Translation[];
  /** Changes every assignment; keep it fixed for reproducible splits. */
  seed?: string;
}

/** A number in [0, 1) from sha256(seed, key): the same key always lands in the same place. */
export function unitHash(seed: string, key: string): number {
  const h = crypto.createHash('sha256').update(seed).update('\0').update(key).digest();
  return h.readUInt32BE(0) / 2 ** 32;
}

/** Lower-case letters and digits only (any script), single spaces: the key for "nearly the same text". */
export function normalise(text: string): string {
  return text.toLowerCase().normalize('NFKC').replace(/[^\p{L}\p{N}]+/gu, ' ').trim();
}

class UnionFind {
  private parent = new Map<string, string>();
  find(a: string): string {
    let p = this.parent.get(a) ?? a;
    if (p === a) return a;
    p = this.find(p);
    this.parent.set(a, p);
    return p;
  }
  union(a: string, b: string): void {
    const ra = this.find(a);
    const rb = this.find(b);
    // the smaller name becomes the root, so a group's id does not depend on the order of unions
    if (ra < rb) this.parent.set(rb, ra);
    else if (rb < ra) this.parent.set(ra, rb);
  }
}

/** Joins package records with the descriptions of every language. Only packages with an English description are kept. */
export function joinItems(packages: PackageRecord[], translations: Translation[]): { items: Item[]; first: Map<string, Partial<Record<Lang, string>>> } {
  // md5 → lang → translation; when lists disagree (they should not), the smaller text wins, for determinism
  const byMd5 = new Map<string, Map<string, Translation>>();
  for (const t of translations) {
    if (!(LANGUAGES as readonly string[]).includes(t.lang)) continue;
    let m = byMd5.get(t.md5);
    if (!m) byMd5.set(t.md5, (m = new Map()));
    const old = m.get(t.lang);
    if (!old || t.text < old.text) m.set(t.lang, t);
  }
  // candidate (md5, section, source) per package: from Packages, plus English translations of packages the
  // Packages lists do not carry (other architectures): unlabelled, but their text still counts for the rule
  const cands = new Map<string, { md5: string; section: string; source: string }[]>();
  const add = (pkg: string, c: { md5: string; section: string; source: string }) => {
    const l = cands.get(pkg);
    if (l) l.push(c);
    else cands.set(pkg, [c]);
  };
  for (const p of packages) add(p.package, { md5: p.md5, section: p.section, source: p.source });
  for (const t of translations) if (t.lang === 'en' && !cands.has(t.package)) add(t.package, { md5: t.md5, section: '', source: t.package });

  const items: Item[] = [];
  const first = new Map<string, Partial<Record<Lang, string>>>();
  for (const pkg of [...cands.keys()].sort()) {
    // the description with the most languages (ties: smallest md5, then a labelled section)
    const best = cands
      .get(pkg)!
      .filter((c) => byMd5.get(c.md5)?.has('en'))
      .sort((a, b) => (byMd5.get(b.md5)!.size - byMd5.get(a.md5)!.size) || (a.md5 < b.md5 ? -1 : a.md5 > b.md5 ? 1 : 0) || b.section.length - a.section.length)[0];
    if (!best) continue;
    const tr = byMd5.get(best.md5)!;
    const text: Partial<Record<Lang, string>> = {};
    const firsts: Partial<Record<Lang, string>> = {};
    for (const lang of LANGUAGES) {
      const t = tr.get(lang);
      if (t) {
        text[lang] = t.text;
        firsts[lang] = t.first;
      }
    }
    const section = best.section ? best.section.slice(best.section.lastIndexOf('/') + 1).toLowerCase() : '';
    items.push({ package: pkg, md5: best.md5, source: best.source, section, label: best.section ? topicOf(best.section) : null, text });
    first.set(pkg, firsts);
  }
  return { items, first };
}

/**
 * Groups packages that must land on the same side: same Description-md5, same source package, or the same first
 * paragraph (normalised, at least MIN_SHARED_PARAGRAPH characters) or whole text in any language.
 */
export function groupItems(items: Item[], first: Map<string, Partial<Record<Lang, string>>>): Map<string, string> {
  const uf = new UnionFind();
  const owner = new Map<string, string>();
  const link = (key: string, pkg: string) => {
    const o = owner.get(key);
    if (o === undefined) owner.set(key, pkg);
    else uf.union(o, pkg);
  };
  for (const it of items) {
    uf.find(it.package);
    link(`md5\0${it.md5}`, it.package);
    link(`src\0${it.source}`, it.package);
    for (const lang of LANGUAGES) {
      const text = it.text[lang];
      if (text !== undefined) link(`text\0${lang}\0${normalise(text)}`, it.package);
      const f = normalise(first.get(it.package)?.[lang] ?? '');
      if (f.length >= MIN_SHARED_PARAGRAPH) link(`first\0${lang}\0${f}`, it.package);
    }
  }
  const groupOf = new Map<string, string>();
  for (const it of items) groupOf.set(it.package, uf.find(it.package));
  return groupOf;
}

/** Builds every split (see the file header). */
export function buildDataset(o: BuildOptions): Dataset {
  const seed = o.seed ?? 'modhub-multilingual-v1';
  const { items, first } = joinItems(o.packages, o.translations);
  const groupOf = groupItems(items, first);

  // test rate of a group: the highest rate among the languages of its labelled packages
  const rate = new Map<string, number>();
  for (const it of items) {
    if (it.label === null) continue;
    const g = groupOf.get(it.package)!;
    let r = rate.get(g) ?? 0;
    for (const lang of LANGUAGES) if (it.text[lang] !== undefined) r = Math.max(r, TEST_RATE[lang]);
    rate.set(g, r);
  }
  const groupSplit = new Map<string, 'train' | 'dev' | 'test'>();
  for (const g of new Set(groupOf.values())) {
    const s = unitHash(seed, `split\0${g}`) < (rate.get(g) ?? 0) ? 'test' : unitHash(seed, `dev\0${g}`) < DEV_RATE ? 'dev' : 'train';
    groupSplit.set(g, s);
  }
  const split = new Map<string, 'train' | 'dev' | 'test'>();
  for (const it of items) split.set(it.package, groupSplit.get(groupOf.get(it.package)!)!);

  // deterministic shuffles: order by a hash of the package (examples) or text (MLM lines)
  const byHash = <T>(xs: T[], key: (x: T) => string): T[] =>
    xs.map((x) => [unitHash(seed, `order\0${key(x)}`), key(x), x] as const).sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : 1)).map((e) => e[2]);

  const labelled = (s: 'train' | 'dev' | 'test', lang: Lang): Example[] =>
    byHash(
      items.filter((it) => it.label !== null && split.get(it.package) === s && it.text[lang] !== undefined).map((it) => ({ package: it.package, text: it.text[lang]!, label: it.label! })),
      (e) => e.package,
    );
  const unlabelled = (s: 'train' | 'dev', lang: Lang) => {
    const byText = new Map<string, string[]>();
    for (const it of items) {
      const t = it.text[lang];
      if (t === undefined || split.get(it.package) !== s) continue;
      const l = byText.get(t);
      if (l) l.push(it.package);
      else byText.set(t, [it.package]);
    }
    return byHash([...byText].map(([text, packages]) => ({ text, packages })), (e) => e.text);
  };

  const test = {} as Dataset['test'];
  const mlm = {} as Dataset['mlm'];
  for (const lang of LANGUAGES) {
    test[lang] = labelled('test', lang);
    mlm[lang] = { train: unlabelled('train', lang), dev: unlabelled('dev', lang) };
  }
  const parallel = {} as Dataset['parallel'];
  for (const lang of TARGETS) {
    parallel[lang] = byHash(
      items.filter((it) => split.get(it.package) === 'train' && it.text[lang] !== undefined).map((it) => ({ package: it.package, en: it.text.en!, other: it.text[lang]! })),
      (p) => p.package,
    );
  }
  return { items, groupOf, split, task: { train: labelled('train', 'en'), dev: labelled('dev', 'en') }, test, mlm, parallel };
}

/**
 * The no-leakage rule, checked on the result: every package and every (normalised) text of a test set, in any
 * language, against every non-test output. Returns one line per violation ([] when clean).
 */
export function findLeaks(d: Dataset): string[] {
  const byPkg = new Map(d.items.map((i) => [i.package, i]));
  const testPkgs = new Set<string>();
  const testTexts = new Set<string>();
  for (const lang of LANGUAGES) {
    for (const e of d.test[lang]) {
      testPkgs.add(e.package);
      const it = byPkg.get(e.package);
      for (const l of LANGUAGES) if (it?.text[l] !== undefined) testTexts.add(normalise(it.text[l]!));
    }
  }
  const leaks: string[] = [];
  const check = (where: string, packages: string[], texts: string[]) => {
    for (const p of packages) if (testPkgs.has(p)) leaks.push(`${where}: package '${p}' is in a test set`);
    for (const t of texts) if (testTexts.has(normalise(t))) leaks.push(`${where}: text of a test package: '${t.slice(0, 60)}'`);
  };
  for (const s of ['train', 'dev'] as const) for (const e of d.task[s]) check(`task.${s}`, [e.package], [e.text]);
  for (const lang of LANGUAGES) for (const s of ['train', 'dev'] as const) for (const e of d.mlm[lang][s]) check(`mlm.${lang}.${s}`, e.packages, [e.text]);
  for (const lang of TARGETS) for (const p of d.parallel[lang]) check(`parallel.en-${lang}`, [p.package], [p.en, p.other]);
  return leaks;
}
