/**
 * A tiny require hook that lets a plain `node` child process load our TypeScript sources (the crash test runs
 * the server as a real process): `node -r ./test/helpers/register-ts.js test/helpers/hub-child.ts`.
 * It transpiles only (no type check), like ts-jest's isolated mode, and caches the output by content hash in the
 * OS temp folder so that restarts skip loading the compiler.
 */
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const cacheDir = path.join(os.tmpdir(), 'modhub-ts-cache');
fs.mkdirSync(cacheDir, { recursive: true });
let ts;

require.extensions['.ts'] = function compileTs(module, filename) {
  const source = fs.readFileSync(filename, 'utf8');
  const key = crypto.createHash('sha256').update(filename).update('\0').update(source).digest('hex');
  const cached = path.join(cacheDir, `${key}.js`);
  let code;
  try {
    code = fs.readFileSync(cached, 'utf8');
  } catch {
    ts = ts || require('typescript');
    code = ts.transpileModule(source, {
      fileName: filename,
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, inlineSourceMap: true },
    }).outputText;
    const tmp = `${cached}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, code);
    fs.renameSync(tmp, cached);
  }
  module._compile(code, filename);
};
