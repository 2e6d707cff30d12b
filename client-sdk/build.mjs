/**
 * Builds the @modhub/client package into client-sdk/dist: esbuild writes ESM (.mjs) and CommonJS (.cjs) of the
 * two entry points (index: runs anywhere fetch runs; node: adds the file-system helpers), tsc writes the .d.ts
 * files (the core type-checked with the DOM lib and no Node types). `node` imports the core entry rather than
 * bundling it again, so both entries share one ModhubError class (instanceof works across them).
 * Run: `npm run build:sdk` (root) or `npm pack` in client-sdk/ (prepack).
 */
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const esbuild = require('esbuild');

rmSync(join(here, 'dist'), { recursive: true, force: true });

/** Keeps `./index` out of the node bundle: it imports the built core entry instead. */
const coreExternal = (ext) => ({
  name: 'core-external',
  setup(b) {
    b.onResolve({ filter: /^\.\/index$/ }, (a) => (a.importer.endsWith('node.ts') ? { path: `./index${ext}`, external: true } : undefined));
  },
});

for (const [format, ext, dir] of [['esm', '.mjs', 'esm'], ['cjs', '.cjs', 'cjs']]) {
  for (const entry of ['index', 'node']) {
    await esbuild.build({
      entryPoints: [join(here, `${entry}.ts`)],
      outfile: join(here, 'dist', dir, `${entry}${ext}`),
      bundle: true,
      format,
      platform: entry === 'node' ? 'node' : 'neutral',
      target: 'es2022',
      packages: 'external',
      sourcemap: true,
      legalComments: 'none',
      plugins: entry === 'node' ? [coreExternal(ext)] : [],
      logLevel: 'warning',
    });
  }
}

const tsc = require.resolve('typescript/bin/tsc');
for (const p of ['tsconfig.json', 'tsconfig.node.json']) execFileSync(process.execPath, [tsc, '-p', join(here, p)], { stdio: 'inherit' });
process.stdout.write(`built ${join(here, 'dist')}\n`);
