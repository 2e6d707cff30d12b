/**
 * Real multilingual text for the trainer benchmarks: Debian's package descriptions and their translations and
 * each package's Section, read from the apt lists of this machine (`apt-get -o Acquire::Languages="en,de,fr,it"
 * update` fills /var/lib/apt/lists), decompressed by apt-helper. Held-out packages are chosen by a hash of the
 * package name, the same in every language, so no held-out package's description is in any training text.
 * Example: `const de = descriptions('de'); const held = [...de.keys()].filter((p) => heldOut(p));`
 */
import { spawnSync } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';

const LISTS = '/var/lib/apt/lists';

function listFiles(part: string): string[] {
  const files = fs.existsSync(LISTS) ? fs.readdirSync(LISTS).filter((f) => f.includes(part) && f.includes('_dists_bookworm_main_')) : [];
  if (!files.length) throw new Error(`no '${part}' list in ${LISTS}: run apt-get -o Acquire::Languages="en,de,fr,it" update`);
  return files.map((f) => path.join(LISTS, f));
}

function cat(file: string): string {
  const r = spawnSync('/usr/lib/apt/apt-helper', ['cat-file', file], { encoding: 'utf8', maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`apt-helper cat-file ${file}: ${r.stderr}`);
  return r.stdout;
}

/** package → description (short + long, one line, at most 400 characters) in `lang`. */
export function descriptions(lang: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of listFiles(`_i18n_Translation-${lang}`)) {
    for (const block of cat(f).split('\n\n')) {
      const pkg = /^Package: (.+)$/m.exec(block)?.[1];
      const m = new RegExp(`^Description-${lang}: (.*)$`, 'm').exec(block);
      if (!pkg || !m) continue;
      const body = block.slice(m.index + m[0].length).split('\n').map((l) => l.trim()).filter((l) => l && l !== '.');
      out.set(pkg, [m[1], ...body].join(' ').slice(0, 400));
    }
  }
  return out;
}

/** package → Section (without an area prefix such as contrib/). */
export function sections(): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of listFiles('_binary-amd64_Packages')) {
    for (const block of cat(f).split('\n\n')) {
      const pkg = /^Package: (.+)$/m.exec(block)?.[1];
      const sec = /^Section: (.+)$/m.exec(block)?.[1];
      if (pkg && sec) out.set(pkg, sec.replace(/^.*\//, ''));
    }
  }
  return out;
}

/** A deterministic split by package name: 0..99. */
export function bucket(pkg: string): number {
  return createHash('sha256').update(pkg).digest().readUInt16BE(0) % 100;
}

/** Held-out packages (about 10%): in no training or pretraining text, in any language. */
export function heldOut(pkg: string): boolean {
  return bucket(pkg) < 10;
}
