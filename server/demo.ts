/**
 * The demo that ships in the repository (demo/): a small multilingual BERT trained by
 * examples/multilingual/recipe.sh on Debian package descriptions, and the language and topic modules trained on
 * it. `modhub serve` without --base serves that base and seeds the hub with the modules, so a fresh clone answers
 * real predictions at once. Seeding is idempotent: a module already published with the same content is left as
 * it is, and a version that exists with other content (a user's own) is never replaced.
 * Example: `const demo = findDemo(); if (demo) await seedDemo(registry, demo, logger)`.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { Logger } from 'pino';
import { CodedError } from '../modules-store/errors';
import type { Registry } from '../modules-store/registry';

export interface Demo {
  /** The demo folder (holds base/ and modules/). */
  dir: string;
  base: string;
  /** Module package folders, `modules/<namespace>/<name>`, in a stable order. */
  modules: string[];
}

/** The shipped demo: the nearest `demo/` with base/config.json above this file (source or dist), or null. */
export function findDemo(from = __dirname): Demo | null {
  for (let d = from; ; d = path.dirname(d)) {
    const dir = path.join(d, 'demo');
    if (fs.existsSync(path.join(dir, 'base', 'config.json'))) return readDemo(dir);
    if (path.dirname(d) === d) return null;
  }
}

/** The demo laid out in `dir`: base/ and modules/<namespace>/<name>/module.json. */
export function readDemo(dir: string): Demo {
  const modulesDir = path.join(dir, 'modules');
  const modules: string[] = [];
  if (fs.existsSync(modulesDir)) {
    for (const ns of fs.readdirSync(modulesDir).sort()) {
      const nsDir = path.join(modulesDir, ns);
      if (!fs.statSync(nsDir).isDirectory()) continue;
      for (const name of fs.readdirSync(nsDir).sort()) if (fs.existsSync(path.join(nsDir, name, 'module.json'))) modules.push(path.join(nsDir, name));
    }
  }
  return { dir, base: path.join(dir, 'base'), modules };
}

export interface SeedResult {
  published: string[];
  present: string[];
  /** Versions that exist with other content (left alone), with why. */
  skipped: { module: string; reason: string }[];
}

/** Publishes every demo module the hub does not hold yet. */
export async function seedDemo(registry: Registry, demo: Demo, logger?: Logger): Promise<SeedResult> {
  const r: SeedResult = { published: [], present: [], skipped: [] };
  for (const dir of demo.modules) {
    const label = path.relative(path.join(demo.dir, 'modules'), dir);
    try {
      const p = await registry.publish({ path: dir });
      (p.existing ? r.present : r.published).push(`${p.id}@${p.version}`);
    } catch (e) {
      if (!(e instanceof CodedError && e.code === 'VERSION_EXISTS')) throw e;
      r.skipped.push({ module: label, reason: e.message });
    }
  }
  logger?.info({ published: r.published.length, present: r.present.length, skipped: r.skipped }, `demo modules: ${r.published.length} published, ${r.present.length} already in the hub`);
  return r;
}
