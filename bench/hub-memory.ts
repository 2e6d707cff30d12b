/**
 * GitHub issue 13: the hub's memory while it takes uploads, measured in a separate server process (its RSS read
 * from /proc/<pid>/status every 20 ms, peak over each phase):
 *
 * 1. RSS growth per concurrent upload: 1, then 4, then 8 concurrent raw tar uploads of a ~57 MB module (and 1
 *    upload of a ~14 MB module, to show growth does not follow module size), then 4 multipart uploads. Growth = peak during the phase −
 *    RSS before it; per upload = growth / concurrency.
 * 2. 20 parallel gzip bombs: 1 MB tar.gz files whose weights are declared as 1e9 zero bytes (the attack);
 *    every one must be refused (413), with RSS flat.
 *
 *   npm run build:bench && node dist-bench/bench/hub-memory.js [--json FILE]
 * The server half runs as `node dist-bench/bench/hub-memory.js --serve DATA_DIR` (started by the bench itself).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, promises as fsp } from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { createGzip } from 'node:zlib';
import pino from 'pino';
import client from 'prom-client';
import { openRegistry, packArchive, ustarHeader } from '../modules-store';
import { BIG_BASE, bigPackage } from './search-fixture';
import { createApp } from '../server/http/app';

const argv = process.argv.slice(2);
const JSON_OUT = argv.includes('--json') ? argv[argv.indexOf('--json') + 1] : undefined;
const MB = 1 << 20;

/** Server half: a hub on an ephemeral port; prints `LISTENING <port> <admin token>`. */
async function serve(dataDir: string): Promise<void> {
  const registry = await openRegistry({ dataDir });
  await registry.registerBase(BIG_BASE);
  const { token } = await registry.createToken({ scopes: ['admin'] });
  const app = createApp({ registry, logger: pino({ level: 'warn' }, pino.destination(2)), metrics: new client.Registry() });
  const server = app.listen(0, '127.0.0.1', () => process.stdout.write(`LISTENING ${(server.address() as AddressInfo).port} ${token}\n`));
  // The client prepares big bodies between phases: keep idle connections longer than that, or a reused socket
  // races the server's close (EPIPE).
  server.keepAliveTimeout = 120_000;
  process.on('SIGTERM', () => server.close(() => void registry.close().then(() => process.exit(0))));
}

/** A valid bottleneck package of about `layers` × 4.7 MB as a tar (random weights: each one is new). */
function bigArchive(version: string, layers: number): Buffer {
  return packArchive(bigPackage({ id: `bench/mem${layers}`, version, layers }));
}

/** The bomb: a tar.gz declaring weights.safetensors as 1e9 bytes of zeros (~1 MB compressed). */
async function bomb(): Promise<Buffer> {
  const z = createGzip({ level: 9 });
  const parts: Buffer[] = [];
  z.on('data', (c: Buffer) => parts.push(c));
  const done = new Promise((r) => z.on('end', r));
  z.write(ustarHeader('weights.safetensors', 1e9));
  const zeros = Buffer.alloc(MB);
  for (let i = 0; i < 954; i++) z.write(zeros);
  z.end();
  await done;
  return Buffer.concat(parts);
}

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** Runs `fn` while sampling the child's RSS; returns RSS before, peak during, and `fn`'s result. */
async function sampled<T>(pid: number, fn: () => Promise<T>): Promise<{ before: number; peak: number; result: T }> {
  const before = rssOf(pid);
  let peak = before;
  const timer = setInterval(() => (peak = Math.max(peak, rssOf(pid))), 20);
  try {
    const result = await fn();
    peak = Math.max(peak, rssOf(pid));
    return { before, peak, result };
  } finally {
    clearInterval(timer);
  }
}

async function main(): Promise<void> {
  if (argv[0] === '--serve') return serve(argv[1]);
  const dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'modhub-bench-mem-'));
  const child: ChildProcess = spawn(process.execPath, [__filename, '--serve', dataDir], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const [port, token] = await new Promise<[number, string]>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
        const m = /LISTENING (\d+) (\S+)/.exec(out);
        if (m) resolve([Number(m[1]), m[2]]);
      });
      child.once('exit', (code) => reject(new Error(`server exited (${code})`)));
    });
    const url = `http://127.0.0.1:${port}`;
    const post = async (body: Buffer, type = 'application/x-tar'): Promise<number> => {
      const r = await fetch(`${url}/v1/modules`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': type }, body: new Uint8Array(body) });
      await r.arrayBuffer();
      return r.status;
    };
    const postForm = async (body: Buffer): Promise<number> => {
      const form = new FormData();
      form.append('archive', new Blob([new Uint8Array(body)]), 'module.tar');
      const r = await fetch(`${url}/v1/modules`, { method: 'POST', headers: { Authorization: `Bearer ${token}` }, body: form });
      await r.arrayBuffer();
      return r.status;
    };
    const pid = child.pid!;
    let n = 0;
    // warm-up: code paths loaded, allocator settled
    for (let i = 0; i < 2; i++) if ((await post(bigArchive(`0.0.${n++}`, 3))) !== 201) throw new Error('warm-up upload failed');
    const rows: Record<string, number | string>[] = [];
    const phase = async (label: string, conc: number, layers: number, multipart = false): Promise<void> => {
      const bodies = Array.from({ length: conc }, () => bigArchive(`1.0.${n++}`, layers));
      global.gc?.();
      const s = await sampled(pid, () => Promise.all(bodies.map((b) => (multipart ? postForm(b) : post(b)))));
      if (!s.result.every((x) => x === 201)) throw new Error(`${label}: statuses ${s.result.join(',')}`);
      const growth = s.peak - s.before;
      rows.push({ phase: label, concurrent: conc, module_mb: +(bodies[0].length / 1e6).toFixed(1), rss_before_mb: +(s.before / 1e6).toFixed(1), rss_peak_mb: +(s.peak / 1e6).toFixed(1), growth_mb: +(growth / 1e6).toFixed(1), growth_per_upload_mb: +(growth / conc / 1e6).toFixed(1) });
    };
    await phase('uploads', 1, 3);
    await phase('uploads', 1, 12);
    await phase('uploads', 4, 12);
    await phase('uploads', 8, 12);
    await phase('multipart uploads (what the SDK sends)', 4, 12, true);
    const b = await bomb();
    const s = await sampled(pid, () => Promise.all(Array.from({ length: 20 }, () => post(b, 'application/gzip'))));
    if (!s.result.every((x) => x === 413)) throw new Error(`bombs: statuses ${s.result.join(',')}`);
    rows.push({ phase: 'gzip bombs (1e9 bytes declared)', concurrent: 20, module_mb: +(b.length / 1e6).toFixed(2), rss_before_mb: +(s.before / 1e6).toFixed(1), rss_peak_mb: +(s.peak / 1e6).toFixed(1), growth_mb: +((s.peak - s.before) / 1e6).toFixed(1), growth_per_upload_mb: +((s.peak - s.before) / 20 / 1e6).toFixed(1) });
    console.log('hub memory under uploads (server RSS, peak − before; all uploads over loopback as raw tar bodies)');
    console.table(rows);
    if (JSON_OUT) await fsp.writeFile(JSON_OUT, JSON.stringify(rows, null, 2));
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    await fsp.rm(dataDir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
