/**
 * Parses Debian's apt list files (deb822 stanzas): `Packages` (package → Section, Source, Description-md5) and
 * `i18n/Translation-<lang>` (Description-md5 → the description in that language), and flattens a multi-line
 * package description into one line of plain text.
 * Example:
 *   const t = parseTranslation(text, 'de');   // [{ package: '0ad', md5: 'd943…', lang: 'de', text: 'Echtzeit-Strategiespiel … 0 A.D. ist …' }]
 *   const p = parsePackages(packagesText);     // [{ package: '0ad', section: 'games', source: '0ad', md5: 'd943…' }]
 */

/** One stanza: field names lower-cased; a folded field keeps its continuation lines (leading space removed once). */
export type Stanza = Map<string, string>;

/**
 * Splits deb822 text into stanzas. Continuation lines (starting with a space or tab) belong to the previous field;
 * blank lines separate stanzas. A line that is neither a field nor a continuation is an error naming its line.
 */
export function parseStanzas(text: string, file = '<text>'): Stanza[] {
  const out: Stanza[] = [];
  let cur: Stanza | null = null;
  let field: string | null = null;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    // an empty line separates stanzas; a line of spaces inside a field is a continuation (apt lists have " \u00a0")
    if (line === '' || (!cur && /^[ \t]*$/.test(line))) {
      if (cur) out.push(cur);
      cur = null;
      field = null;
      continue;
    }
    if (line[0] === ' ' || line[0] === '\t') {
      if (!cur || field === null) throw new SyntaxError(`${file}:${i + 1}: continuation line outside a field`);
      cur.set(field, `${cur.get(field)}\n${line.slice(1)}`);
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) throw new SyntaxError(`${file}:${i + 1}: expected 'Field: value', got '${line.slice(0, 40)}'`);
    field = line.slice(0, colon).toLowerCase();
    cur ??= new Map();
    cur.set(field, line.slice(colon + 1).trim());
  }
  if (cur) out.push(cur);
  return out;
}

/**
 * A description field (synopsis line + extended lines) as one line of text: the synopsis, then each paragraph
 * (Debian marks paragraph breaks with a lone "."; verbatim lines start with a second space), whitespace
 * collapsed. A synopsis without final punctuation gets a full stop so that it reads as a sentence.
 */
export function flattenDescription(value: string): string {
  const [synopsis, ...rest] = value.split('\n');
  const parts: string[] = [];
  const s = synopsis.trim();
  if (s) parts.push(/[.!?:;]$/.test(s) ? s : `${s}.`);
  for (const raw of rest) {
    const line = raw.trim();
    if (line === '.' || line === '') continue;
    parts.push(line);
  }
  return parts.join(' ').replace(/\s+/g, ' ').trim();
}

/** The first paragraph of a description's extended part, flattened (''). Used to find near-duplicate descriptions. */
export function firstParagraph(value: string): string {
  const rest = value.split('\n').slice(1);
  const para: string[] = [];
  for (const raw of rest) {
    const line = raw.trim();
    if (line === '.') {
      if (para.length > 0) break;
      continue;
    }
    para.push(line);
  }
  return para.join(' ').replace(/\s+/g, ' ').trim();
}

export interface Translation {
  package: string;
  md5: string;
  lang: string;
  /** Synopsis + extended description on one line. */
  text: string;
  /** First paragraph of the extended description (near-duplicate key). */
  first: string;
}

/** Parses a `Translation-<lang>` file: stanzas with Package, Description-md5 and `Description-<lang>`. */
export function parseTranslation(text: string, lang: string, file = `Translation-${lang}`): Translation[] {
  const out: Translation[] = [];
  const key = `description-${lang.toLowerCase()}`;
  for (const st of parseStanzas(text, file)) {
    const pkg = st.get('package');
    const md5 = st.get('description-md5');
    const desc = st.get(key);
    if (!pkg || !md5 || desc === undefined) throw new SyntaxError(`${file}: stanza${pkg ? ` of '${pkg}'` : ''} lacks Package, Description-md5 or Description-${lang}`);
    const flat = flattenDescription(desc);
    if (flat === '') continue;
    out.push({ package: pkg, md5, lang, text: flat, first: firstParagraph(desc) });
  }
  return out;
}

export interface PackageRecord {
  package: string;
  /** As in the file, e.g. 'games', 'contrib/games'. */
  section: string;
  /** Source package name without a version ('(1.2-3)'); the package itself when the stanza has no Source. */
  source: string;
  md5: string;
}

/**
 * Parses a `Packages` file. Stanzas without Section or Description-md5 are skipped (they cannot be labelled or
 * joined with a translation).
 */
export function parsePackages(text: string, file = 'Packages'): PackageRecord[] {
  const out: PackageRecord[] = [];
  for (const st of parseStanzas(text, file)) {
    const pkg = st.get('package');
    if (!pkg) throw new SyntaxError(`${file}: stanza without Package`);
    const section = st.get('section');
    const md5 = st.get('description-md5');
    if (!section || !md5) continue;
    const source = (st.get('source') ?? pkg).split(/\s+/)[0];
    out.push({ package: pkg, section, source, md5 });
  }
  return out;
}
