/**
 * @modhub/client as a package: `npm pack` in client-sdk/ (its prepack builds dist/ with esbuild + tsc), the
 * tarball installed offline into a temp project (zod packed from our node_modules beside it, an empty npm cache,
 * --offline: nothing is fetched), then used from ESM (.mjs), CommonJS (.cjs) and type-checked TypeScript (.mts,
 * node16 resolution). Then client-sdk/README.md's setup and example run as written: the setup's `modhub` lines
 * through a shim for the CLI, the example with `node example.mjs` against a real `modhub serve` child process.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const REPO = path.resolve(__dirname, '..', '..');
const SDK = path.join(REPO, 'client-sdk');
const PORTS = Array.from({ length: 20 }, (_, i) => 19120 + i);

let root: string;
let app: string;

async function sh(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<{ stdout: string; stderr: string }> {
  try {
    return await run(cmd, args, { cwd, env: { ...process.env, ...env }, maxBuffer: 1 << 24 });
  } catch (e) {
    const x = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${x.message}\n${x.stdout ?? ''}\n${x.stderr ?? ''}`);
  }
}

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-sdk-pkg-'));
  const packs = path.join(root, 'packs');
  fs.mkdirSync(packs);
  await sh('npm', ['pack', '--pack-destination', packs], SDK);
  await sh('npm', ['pack', '--ignore-scripts', '--pack-destination', packs], path.dirname(require.resolve('zod/package.json')));
  const tarballs = fs.readdirSync(packs).map((f) => path.join(packs, f));
  expect(tarballs.map((t) => path.basename(t)).sort()).toEqual([expect.stringMatching(/^modhub-client-\d+\.\d+\.\d+\.tgz$/), expect.stringMatching(/^zod-4\.[\d.]+\.tgz$/)]);
  app = path.join(root, 'app');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
  await sh('npm', ['install', '--offline', '--ignore-scripts', '--no-audit', '--no-fund', '--cache', path.join(root, 'npm-cache'), ...tarballs], app);
}, 300_000);

afterAll(() => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

describe('@modhub/client, packed and installed', () => {
  it('ships ESM, CJS and types for both entries, and nothing else', () => {
    const pkg = path.join(app, 'node_modules', '@modhub', 'client');
    const files = (fs.readdirSync(path.join(pkg, 'dist'), { recursive: true }) as string[]).filter((f) => !f.endsWith('.map')).sort();
    expect(files).toEqual(expect.arrayContaining(['cjs/index.cjs', 'cjs/node.cjs', 'esm/index.mjs', 'esm/node.mjs', 'types/index.d.ts', 'types/node.d.ts']));
    // The core bundle runs in browsers: no Node built-in and no Buffer in it.
    for (const f of ['esm/index.mjs', 'cjs/index.cjs']) expect(fs.readFileSync(path.join(pkg, 'dist', f), 'utf8')).not.toMatch(/node:|require\("(fs|crypto|path)"\)|\bBuffer\b/);
    expect(fs.readdirSync(pkg).sort()).toEqual(['README.md', 'dist', 'package.json']);
  });

  const probe = (load: string) => `${load}
const out = {
  core: typeof core.ModhubClient,
  stack: core.stack('lang/de', core.fuse('f/x', 'a/b', 'a/c')),
  average: core.average(['sft/de', 'sft/en'], { weights: [0.7, 0.3] }),
  sameError: core.ModhubError === node.ModhubError,
  nodeIsCore: new node.NodeModhubClient({ baseUrl: 'http://127.0.0.1:1' }) instanceof core.ModhubClient,
  codes: Object.keys(core.ERROR_CODES).length,
};
let err;
try { core.stack(); } catch (e) { err = e.constructor.name + ': ' + e.message; }
out.err = err;
const c = new core.ModhubClient({ baseUrl: 'http://127.0.0.1:1', retry: { retries: 0 } });
c.search().catch((e) => { out.network = [e instanceof core.ModhubError, e.code, e.status]; console.log(JSON.stringify(out)); });
`;
  const expected = {
    core: 'function',
    stack: { stack: ['lang/de', { fuse: ['a/b', 'a/c'], fusion: 'f/x' }] },
    average: { average: ['sft/de', 'sft/en'], weights: [0.7, 0.3] },
    sameError: true,
    nodeIsCore: true,
    codes: expect.any(Number),
    err: "RangeError: 'stack' needs at least one module or block, got none",
    network: [true, 'NETWORK_ERROR', 0],
  };

  it('works from ESM (.mjs)', async () => {
    fs.writeFileSync(path.join(app, 'probe.mjs'), probe("import * as core from '@modhub/client';\nimport * as node from '@modhub/client/node';"));
    expect(JSON.parse((await sh(process.execPath, ['probe.mjs'], app)).stdout)).toEqual(expected);
  });

  it('works from CommonJS (.cjs)', async () => {
    fs.writeFileSync(path.join(app, 'probe.cjs'), probe("const core = require('@modhub/client');\nconst node = require('@modhub/client/node');"));
    expect(JSON.parse((await sh(process.execPath, ['probe.cjs'], app)).stdout)).toEqual(expected);
  });

  it('type-checks in a TypeScript ESM project (node16 resolution, DOM lib), and catches a wrong field', async () => {
    const ok = [
      "import { ModhubClient, stack, type ClassificationPrediction, type SearchPage } from '@modhub/client';",
      "import { NodeModhubClient } from '@modhub/client/node';",
      "const hub: ModhubClient = new NodeModhubClient({ baseUrl: 'http://localhost:8080' });",
      "export async function f(): Promise<[SearchPage, ClassificationPrediction[]]> {",
      "  return [await hub.search({ kind: 'lora' }), await hub.classify(['x'], { composition: stack('a/b', 'c/d'), signal: AbortSignal.timeout(1000) })];",
      '}',
    ].join('\n');
    fs.writeFileSync(path.join(app, 'ok.mts'), ok);
    fs.writeFileSync(path.join(app, 'bad.mts'), "import { ModhubClient } from '@modhub/client';\nawait new ModhubClient({ baseUrl: 'x' }).search({ kind: 'nope' });\n");
    const tsc = require.resolve('typescript/bin/tsc');
    const flags = ['--noEmit', '--strict', '--module', 'node16', '--moduleResolution', 'node16', '--target', 'es2022', '--lib', 'es2022,dom', '--types', 'node', '--typeRoots', path.join(REPO, 'node_modules', '@types')];
    await sh(process.execPath, [tsc, ...flags, 'ok.mts'], app);
    await expect(sh(process.execPath, [tsc, ...flags, 'bad.mts'], app)).rejects.toThrow(/bad\.mts.*'"nope"' is not assignable/);
  });
});

describe("client-sdk/README.md's example, as written", () => {
  let server: ChildProcess | undefined;
  afterAll(() => {
    server?.kill('SIGTERM');
  });

  /** The fenced block that follows `<!-- example:<name> -->`. */
  function block(readme: string, name: string): string {
    const m = new RegExp(`<!-- example:${name} -->\\s*\`\`\`(\\w+)\\n([\\s\\S]*?)\`\`\``).exec(readme);
    if (!m) throw new Error(`client-sdk/README.md has no block after <!-- example:${name} -->`);
    return m[2];
  }

  it('pulls and re-publishes a demo module (already published), classifies German through stack(lang/de, topic/pfeiffer) and sum(lang-sft/de, topic/lt-sft) as the README prints, shows a typed error', async () => {
    const readme = fs.readFileSync(path.join(SDK, 'README.md'), 'utf8');
    const bin = path.join(root, 'bin');
    fs.mkdirSync(bin);
    // `modhub` as the README's reader has it: the CLI from this checkout.
    fs.writeFileSync(path.join(bin, 'modhub'), `#!/bin/sh\nexec "${process.execPath}" -r "${REPO}/test/helpers/register-ts.js" "${REPO}/server/cli.ts" "$@"\n`, { mode: 0o755 });
    const env = { PATH: `${bin}:${process.env.PATH}`, MODHUB_TOKEN: '', MODHUB_HUB: '' };

    let hub = '';
    for (const port of PORTS) {
      const child = spawn(path.join(bin, 'modhub'), ['serve', '--data', './.modhub', '--port', String(port)], { cwd: app, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let log = '';
      child.stdout.on('data', (d: Buffer) => (log += d.toString()));
      child.stderr.on('data', (d: Buffer) => (log += d.toString()));
      const up = await new Promise<boolean>((resolve) => {
        child.once('exit', () => resolve(false));
        const poll = setInterval(() => {
          if (log.includes('modhub listening')) {
            clearInterval(poll);
            resolve(true);
          }
        }, 100);
        child.once('exit', () => clearInterval(poll));
      });
      if (up) {
        server = child;
        hub = `http://127.0.0.1:${port}`;
        break;
      }
      if (!/EADDRINUSE/.test(log)) throw new Error(`modhub serve did not start:\n${log}`);
    }
    expect(hub).not.toBe('');

    const setup = block(readme, 'setup');
    fs.writeFileSync(path.join(app, 'example.mjs'), block(readme, 'run'));
    const script = `set -e\n${setup}\nnode example.mjs\necho '--- again'\nnode example.mjs\n`;
    const { stdout } = await sh('bash', ['-c', script], app, { ...env, MODHUB_HUB: hub });
    const [first, again] = stdout.split('--- again');
    // the hub was seeded with the shipped demo: the pulled folder is already published, both times
    for (const run of [first, again]) expect(run).toMatch(/lang\/de@1\.0\.0 is already published/);
    // every prediction line of the README's printed output, exactly (the demo modules are trained; inference is deterministic)
    const shown = /<!-- example:run -->[\s\S]*?```js[\s\S]*?```\s*```\n([\s\S]*?)```/.exec(readme)![1].split('\n').filter((l) => l.includes(' -> '));
    expect(shown.length).toBeGreaterThanOrEqual(4);
    for (const line of shown) {
      expect(first).toContain(line);
      expect(again).toContain(line);
    }
    expect(first).toMatch(/MODULE_NOT_FOUND \(HTTP 404, request [\w-]+\): .*topic\/nope/);
  }, 240_000);
});
