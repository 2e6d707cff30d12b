/**
 * The multilingual example's data preparation (examples/multilingual/): deb822 parsing of apt's Packages and
 * Translation lists, multi-line descriptions, section → topic mapping, grouping of shared and near-identical
 * descriptions, the no-leakage rule across languages, determinism, and the scores the recipe reports.
 * Synthetic lists written here; no apt needed.
 */
import { firstParagraph, flattenDescription, parsePackages, parseStanzas, parseTranslation, type PackageRecord, type Translation } from '../../examples/multilingual/deb822';
import { bareSection, topicOf, TOPIC_NAMES } from '../../examples/multilingual/topics';
import { buildDataset, findLeaks, normalise, unitHash, LANGUAGES, TARGETS, type Dataset } from '../../examples/multilingual/split';
import { scores } from '../../examples/multilingual/metrics';

describe('deb822 parsing', () => {
  test('stanzas: folded fields, case-insensitive names, CRLF, a continuation holding only a no-break space', () => {
    const st = parseStanzas('Package: a\r\nDescription-en: short\r\n long one\r\n \u00a0\r\n more\r\n\r\nPACKAGE: b\nSection: games\n');
    expect(st).toHaveLength(2);
    expect(st[0].get('package')).toBe('a');
    expect(st[0].get('description-en')).toBe('short\nlong one\n\u00a0\nmore');
    expect(st[1].get('package')).toBe('b');
    expect(st[1].get('section')).toBe('games');
  });

  test('malformed lines name their line', () => {
    expect(() => parseStanzas(' orphan continuation\n', 'x')).toThrow('x:1: continuation line outside a field');
    expect(() => parseStanzas('Package: a\nno colon here\n', 'x')).toThrow("x:2: expected 'Field: value'");
  });

  test('multi-line descriptions: synopsis + paragraphs + verbatim lines on one line', () => {
    const d = 'Real-time strategy game\n 0 A.D. is a free, open-source\n game of ancient warfare.\n .\n Features:\n  * 3D graphics\n  * sound';
    expect(flattenDescription(d)).toBe('Real-time strategy game. 0 A.D. is a free, open-source game of ancient warfare. Features: * 3D graphics * sound');
    expect(flattenDescription('Ends with a question?\n body')).toBe('Ends with a question? body');
    expect(firstParagraph(d)).toBe('0 A.D. is a free, open-source game of ancient warfare.');
    expect(firstParagraph('only a synopsis')).toBe('');
  });

  test('Translation and Packages files', () => {
    const tr = parseTranslation('Package: 0ad\nDescription-md5: m1\nDescription-de: Strategiespiel\n Ein Spiel.\n .\n Zweiter Absatz.\n', 'de');
    expect(tr).toEqual([{ package: '0ad', md5: 'm1', lang: 'de', text: 'Strategiespiel. Ein Spiel. Zweiter Absatz.', first: 'Ein Spiel.' }]);
    expect(() => parseTranslation('Package: x\nDescription-md5: m\nDescription-en: wrong language\n', 'de', 'T-de')).toThrow("T-de: stanza of 'x' lacks");
    const pk = parsePackages('Package: a\nSource: asrc (1.2-3)\nSection: contrib/games\nDescription-md5: m1\n\nPackage: b\nSection: libs\nDescription-md5: m2\n\nPackage: c\nDescription-md5: m3\n');
    expect(pk).toEqual([
      { package: 'a', section: 'contrib/games', source: 'asrc', md5: 'm1' },
      { package: 'b', section: 'libs', source: 'b', md5: 'm2' },
    ]);
  });
});

describe('topics', () => {
  test('sections map to topics after the archive-area prefix is stripped; ambiguous sections have none', () => {
    expect(bareSection('non-free/sound')).toBe('sound');
    expect(topicOf('contrib/games')).toBe('games');
    expect(topicOf('math')).toBe('science');
    expect(topicOf('Science')).toBe('science');
    for (const s of ['libs', 'libdevel', 'devel', 'misc', 'utils', 'admin', 'doc', 'x11', '']) expect(topicOf(s)).toBeNull();
    expect([...TOPIC_NAMES]).toEqual([...TOPIC_NAMES].sort());
  });
});

/**
 * A synthetic archive: `n` projects, each a program (labelled by its section), most with a "-data" package whose
 * description repeats the program's first paragraph (near-duplicate, its own source and md5), some packages
 * sharing one md5, and translations into de, fr, it, es for some of them.
 */
/** Languages of project i: every one in English, about half in German, 2/3 in French, 4/5 in Italian, 1/7 in Spanish. */
function langsOf(i: number): string[] {
  return ['en', ...(i % 2 === 0 ? ['de'] : []), ...(i % 3 !== 0 ? ['fr'] : []), ...(i % 5 !== 0 ? ['it'] : []), ...(i % 7 === 0 ? ['es'] : [])];
}

function archive(n: number): { packages: PackageRecord[]; translations: Translation[] } {
  const sections = ['games', 'sound', 'graphics', 'science', 'net', 'fonts', 'mail', 'libs', 'devel', 'contrib/games'];
  const packages: PackageRecord[] = [];
  const translations: Translation[] = [];
  const describe = (pkg: string, md5: string, langs: string[], synopsis: string, body: string) => {
    for (const lang of langs) {
      const raw = `${lang} ${synopsis}\n ${lang} ${body}`;
      translations.push({ package: pkg, md5, lang, text: flattenDescription(raw), first: firstParagraph(raw) });
    }
  };
  for (let i = 0; i < n; i++) {
    const section = sections[i % sections.length];
    const langs = langsOf(i);
    const body = `project ${i} is a free program for ${section} work that does many useful things for its users number ${i}.`;
    packages.push({ package: `p${i}`, section, source: `p${i}`, md5: `md5-${i}` });
    describe(`p${i}`, `md5-${i}`, langs, `program ${i}`, body);
    if (i % 4 !== 3) {
      packages.push({ package: `p${i}-data`, section: i % 8 === 0 ? 'misc' : section, source: `p${i}-data`, md5: `md5-${i}-data` });
      describe(`p${i}-data`, `md5-${i}-data`, langs, `program ${i} (data files)`, `${body}\n .\n This package holds the data.`);
    }
    if (i % 5 === 0) packages.push({ package: `p${i}-alias`, section, source: `other${i}`, md5: `md5-${i}` }); // same description as p<i>
  }
  // a translation of an English description the Packages lists do not carry (another architecture)
  describe('archonly', 'md5-archonly', ['en', 'de'], 'arch only tool', 'a tool that exists only on another architecture for testing purposes.');
  return { packages, translations };
}

describe('splits', () => {
  const a = archive(400);
  let d: Dataset;
  beforeAll(() => {
    d = buildDataset({ ...a, seed: 't' });
  });

  test('descriptions are joined across languages by md5, and labels come from sections', () => {
    const p1 = d.items.find((i) => i.package === 'p1')!;
    expect(p1.label).toBe('sound');
    expect(Object.keys(p1.text).sort()).toEqual(['en', 'fr', 'it']);
    expect(p1.text.fr).toBe(`fr program 1. fr project 1 is a free program for sound work that does many useful things for its users number 1.`);
    expect(d.items.find((i) => i.package === 'p5-alias')!.text).toEqual(d.items.find((i) => i.package === 'p5')!.text);
    expect(d.items.find((i) => i.package === 'p9')!.label).toBe('games'); // contrib/games
    expect(d.items.find((i) => i.package === 'p7')!.label).toBeNull(); // libs
    const arch = d.items.find((i) => i.package === 'archonly')!;
    expect(arch.label).toBeNull();
    expect(arch.text.de).toBe('de arch only tool. de a tool that exists only on another architecture for testing purposes.');
  });

  test('shared md5, shared source and near-identical text (foo / foo-data) are one group', () => {
    expect(d.groupOf.get('p5-alias')).toBe(d.groupOf.get('p5'));
    expect(d.groupOf.get('p1-data')).toBe(d.groupOf.get('p1'));
    expect(d.groupOf.get('p2')).not.toBe(d.groupOf.get('p1'));
    for (const [pkg, g] of d.groupOf) expect(d.split.get(pkg)).toBe(d.split.get(g));
  });

  test('every set is filled, and English-only labelled groups never go to test', () => {
    expect(d.task.train.length).toBeGreaterThan(50);
    expect(d.task.dev.length).toBeGreaterThan(0);
    for (const l of LANGUAGES) {
      expect(d.test[l].length).toBeGreaterThan(0);
      expect(d.mlm[l].train.length).toBeGreaterThan(0);
    }
    for (const l of TARGETS) expect(d.parallel[l].length).toBeGreaterThan(0);
    // a test group holds a labelled package with a translation
    for (const e of d.test.en) {
      const g = d.groupOf.get(e.package);
      expect(d.items.some((i) => d.groupOf.get(i.package) === g && i.label !== null && Object.keys(i.text).length > 1)).toBe(true);
    }
    for (const e of [...d.task.train, ...d.task.dev, ...d.test.de]) expect(TOPIC_NAMES).toContain(e.label);
  });

  test('no leakage: no test package, its translations or a near-copy give text to any other set, in any language', () => {
    expect(findLeaks(d)).toEqual([]);
    const testPkgs = new Set(LANGUAGES.flatMap((l) => d.test[l].map((e) => e.package)));
    const testGroups = new Set([...testPkgs].map((p) => d.groupOf.get(p)));
    // every text of a held-out group, in every language, and every first paragraph (the near-copy key)
    const heldOut = d.items.filter((i) => testGroups.has(d.groupOf.get(i.package)));
    const heldTexts = new Set(heldOut.flatMap((i) => Object.values(i.text).map((t) => normalise(t!))));
    // first paragraphs of held-out descriptions: a near-copy (foo-data) contains one
    const firsts = new Map(a.translations.map((t) => [`${t.package}\0${t.lang}`, normalise(t.first)]));
    const heldFirsts = heldOut.flatMap((i) => LANGUAGES.map((l) => firsts.get(`${i.package}\0${l}`)).filter((f): f is string => !!f));
    expect(heldFirsts.length).toBeGreaterThan(100);
    const others = [
      ...d.task.train.map((e) => [e.package, e.text]),
      ...d.task.dev.map((e) => [e.package, e.text]),
      ...LANGUAGES.flatMap((l) => [...d.mlm[l].train, ...d.mlm[l].dev].flatMap((e) => e.packages.map((p) => [p, e.text]))),
      ...TARGETS.flatMap((l) => d.parallel[l].flatMap((p) => [[p.package, p.en], [p.package, p.other]])),
    ];
    expect(others.length).toBeGreaterThan(1000);
    for (const [pkg, text] of others) {
      expect(testGroups.has(d.groupOf.get(pkg))).toBe(false);
      expect(heldTexts.has(normalise(text))).toBe(false);
      const t = normalise(text);
      expect(heldFirsts.find((f) => t.includes(f))).toBeUndefined();
    }
    // and some -data packages of held-out programs exist, so the near-copy case was really exercised
    expect(heldOut.some((i) => i.package.endsWith('-data'))).toBe(true);
  });

  test('findLeaks reports a test package planted in training data', () => {
    const leaky: Dataset = { ...d, task: { ...d.task, train: [...d.task.train, d.test.de[0]] } };
    expect(findLeaks(leaky).some((l) => l.includes(`package '${d.test.de[0].package}' is in a test set`))).toBe(true);
    const copy = d.items.find((i) => i.package === d.test.de[0].package)!;
    const textLeak: Dataset = { ...d, mlm: { ...d.mlm, fr: { ...d.mlm.fr, train: [...d.mlm.fr.train, { text: copy.text.en!.toUpperCase(), packages: ['unrelated'] }] } } };
    expect(findLeaks(textLeak).some((l) => l.startsWith('mlm.fr.train: text of a test package'))).toBe(true);
  });

  test('deterministic: same inputs (in any order) and seed give the same sets; another seed moves groups', () => {
    const again = buildDataset({ packages: [...a.packages].reverse(), translations: [...a.translations].reverse(), seed: 't' });
    const pick = (x: Dataset) => JSON.stringify({ task: x.task, test: x.test, mlm: x.mlm, parallel: x.parallel });
    expect(pick(again)).toBe(pick(d));
    const other = buildDataset({ ...a, seed: 'u' });
    expect(JSON.stringify(other.test)).not.toBe(JSON.stringify(d.test));
    expect(unitHash('t', 'k')).toBe(unitHash('t', 'k'));
    expect(unitHash('t', 'k')).toBeGreaterThanOrEqual(0);
    expect(unitHash('t', 'k')).toBeLessThan(1);
  });
});

describe('scores', () => {
  test('accuracy and macro-F1 over the gold labels', () => {
    const s = scores(['a', 'a', 'b', 'c'], ['a', 'b', 'b', 'a']);
    expect(s.accuracy).toBeCloseTo(0.5, 12);
    // a: tp 1 fp 1 fn 1 → 0.5; b: tp 1 fp 1 fn 0 → 2/3; c: 0
    expect(s.macro_f1).toBeCloseTo((0.5 + 2 / 3 + 0) / 3, 12);
    expect(s.per_label.c).toEqual({ f1: 0, n: 1 });
    expect(() => scores(['a'], [])).toThrow(RangeError);
  });
});
