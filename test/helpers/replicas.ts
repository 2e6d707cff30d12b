/**
 * Real `modhub serve` processes and nginx in front of them, for the replica test and bench:scale. Replicas run
 * the TypeScript CLI through test/helpers/register-ts.js (or the built dist/server/cli.js when it exists and
 * `built` is asked for), each with its own --data folder and the shared store given in `env`. nginx (Debian's
 * /usr/sbin/nginx, or MODHUB_NGINX) runs in the foreground with its config, pid, logs and temp folders in a
 * temp dir; absent nginx makes {@link findNginx} return null so callers can skip LOUDLY.
 * Example: `const r = await startReplica({ base, env }); const lb = await startNginx([r.url]); ...; await lb.stop(); await r.stop();`
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort } from './ports';

/** The repository root (this file runs from test/helpers/ or, compiled for a benchmark, from dist/test/helpers/). */
const ROOT = ((): string => {
  for (let d = __dirname; d !== path.dirname(d); d = path.dirname(d)) {
    if (fs.existsSync(path.join(d, 'package.json')) && fs.existsSync(path.join(d, 'server'))) return d;
  }
  throw new Error(`replicas: no repository root above ${__dirname}`);
})();

export interface Replica {
  url: string;
  port: number;
  proc: ChildProcess;
  /** Everything the process wrote (stdout + stderr), for failure messages. */
  output(): string;
  stop(): Promise<void>;
}

export interface ReplicaOptions {
  /** Base model folder (shared by all replicas: they must serve the same fingerprint). */
  base: string;
  /** Store configuration (MODHUB_DATABASE_URL, MODHUB_BLOB_URL, MODHUB_S3_*). */
  env: Record<string, string>;
  /** Extra `serve` flags. */
  args?: string[];
  /** The --data folder (default: a fresh temp folder, removed on stop). */
  data?: string;
  /** Run dist/server/cli.js (after `npm run build`) instead of the TypeScript sources. */
  built?: boolean;
  /** How long to wait for the server to listen (default 120 s: several replicas start at once on few cores). */
  timeoutMs?: number;
}

function cliCommand(built: boolean): string[] {
  const dist = path.join(ROOT, 'dist', 'server', 'cli.js');
  if (built && fs.existsSync(dist)) return [dist];
  return ['-r', path.join(ROOT, 'test', 'helpers', 'register-ts.js'), path.join(ROOT, 'server', 'cli.ts')];
}

/** Runs `modhub serve` with the given arguments to completion (for start-up failures); resolves with its exit code and output. */
export function runServe(args: string[], env: Record<string, string>, built = false): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [...cliCommand(built), 'serve', ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.on('exit', (code) => resolve({ code, output: out }));
  });
}

/** Starts one replica on a free port and waits until /healthz answers. */
export async function startReplica(o: ReplicaOptions): Promise<Replica> {
  const port = await freePort();
  const data = o.data ?? fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-replica-'));
  const args = [...cliCommand(o.built ?? false), 'serve', '--base', o.base, '--data', data, '--port', String(port), '--host', '127.0.0.1', ...(o.args ?? [])];
  const proc = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...o.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  proc.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  let exited = false;
  proc.on('exit', () => (exited = true));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (o.timeoutMs ?? 120_000);
  for (;;) {
    if (exited) throw new Error(`replica on port ${port} exited during start-up:\n${out}`);
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`replica on port ${port} did not start within ${o.timeoutMs ?? 120_000} ms:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    port,
    proc,
    output: () => out,
    stop: async () => {
      if (!exited) {
        const gone = new Promise<void>((r) => proc.once('exit', () => r()));
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
        await gone;
        clearTimeout(timer);
      }
      if (!o.data) fs.rmSync(data, { recursive: true, force: true });
    },
  };
}

/** The nginx binary (MODHUB_NGINX, /usr/sbin/nginx, or nginx on PATH), or null. */
export function findNginx(): string | null {
  const candidates = [process.env.MODHUB_NGINX, '/usr/sbin/nginx', ...(process.env.PATH ?? '').split(path.delimiter).map((d) => path.join(d, 'nginx'))];
  for (const c of candidates) if (c && fs.existsSync(c)) return c;
  return null;
}

export const NGINX_MISSING_MESSAGE = [
  '',
  '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!',
  '!! nginx NOT FOUND: the load-balancer part of the replica test is SKIPPED.                   !!',
  '!! Install it (Debian: apt-get install -y nginx) or set MODHUB_NGINX to the binary.           !!',
  '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!',
  '',
].join('\n');

export interface Nginx {
  url: string;
  stop(): Promise<void>;
}

/**
 * nginx as a round-robin load balancer over `upstreams` (http://host:port). Each answer carries the replica that
 * served it in `X-Modhub-Upstream`. Uploads stream through (no request buffering, no size limit here: the
 * replicas enforce theirs).
 */
export async function startNginx(upstreams: string[]): Promise<Nginx> {
  const bin = findNginx();
  if (!bin) throw new Error(NGINX_MISSING_MESSAGE);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-nginx-'));
  const port = await freePort();
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const conf = `
${isRoot ? 'user root;' : ''}
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  client_max_body_size 0;
  upstream modhub {
${upstreams.map((u) => `    server ${u.replace(/^https?:\/\//, '')} max_fails=0;`).join('\n')}
    keepalive 32;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://modhub;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_read_timeout 300s;
      add_header X-Modhub-Upstream $upstream_addr always;
    }
  }
}
`;
  fs.writeFileSync(path.join(dir, 'nginx.conf'), conf);
  const proc = spawn(bin, ['-p', dir, '-e', path.join(dir, 'error.log'), '-c', path.join(dir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  let exited = false;
  proc.on('exit', () => (exited = true));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (exited) throw new Error(`nginx exited during start-up:\n${out}\n${fs.existsSync(path.join(dir, 'error.log')) ? fs.readFileSync(path.join(dir, 'error.log'), 'utf8') : ''}`);
    try {
      await fetch(`${url}/healthz`);
      break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`nginx did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    stop: async () => {
      if (!exited) {
        const gone = new Promise<void>((r) => proc.once('exit', () => r()));
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
        await gone;
        clearTimeout(timer);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
