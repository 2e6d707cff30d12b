/**
 * A throw-away PostgreSQL server for tests and benchmarks: `initdb` + `pg_ctl` on a temp folder and a free port
 * (Debian's postgresql package; as root the binaries run as the `postgres` user through `runuser`, since
 * PostgreSQL refuses to run as root). Each caller gets fresh databases from {@link PgServer.createDatabase}.
 * When the binaries are absent, {@link findPgBinaries} returns null and suites skip with a LOUD message
 * ({@link describeWithPg}) — never silently.
 * Example: `const pg = await startPg(); const url = await pg.createDatabase(); ...; await pg.stop();`
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from './ports';

const run = promisify(execFile);

export interface PgBinaries {
  bin: string;
}

/** The PostgreSQL bin folder (MODHUB_PG_BIN, Debian's /usr/lib/postgresql/<v>/bin, or initdb on PATH), or null. */
export function findPgBinaries(): PgBinaries | null {
  const candidates: string[] = [];
  if (process.env.MODHUB_PG_BIN) candidates.push(process.env.MODHUB_PG_BIN);
  try {
    const versions = fs.readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a));
    for (const v of versions) candidates.push(path.join('/usr/lib/postgresql', v, 'bin'));
  } catch {
    // not Debian's layout
  }
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) candidates.push(dir);
  for (const c of candidates) {
    if (c && fs.existsSync(path.join(c, 'initdb')) && fs.existsSync(path.join(c, 'pg_ctl'))) return { bin: c };
  }
  return null;
}

export const PG_MISSING_MESSAGE = [
  '',
  '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!',
  '!! PostgreSQL binaries (initdb, pg_ctl) NOT FOUND: the PostgreSQL tests are SKIPPED.          !!',
  '!! Install them (Debian: apt-get install -y postgresql) or set MODHUB_PG_BIN to their folder.  !!',
  '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!',
  '',
].join('\n');

/** `describe` when PostgreSQL is installed; otherwise a skipped describe and a loud warning on stderr. */
export function describeWithPg(name: string, fn: () => void): void {
  if (findPgBinaries()) {
    describe(name, fn);
  } else {
    process.stderr.write(PG_MISSING_MESSAGE);
    describe.skip(`${name} (SKIPPED: PostgreSQL binaries not installed)`, fn);
  }
}

export interface PgServer {
  port: number;
  /** Superuser URL of the `postgres` database. */
  adminUrl: string;
  /** Creates an empty database and returns its URL. */
  createDatabase(): Promise<string>;
  stop(): Promise<void>;
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/** Runs a PostgreSQL binary, as `postgres` when we are root. */
async function pgRun(bin: string, args: string[]): Promise<void> {
  const [cmd, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
  try {
    await run(cmd, argv, { timeout: 60_000 });
  } catch (e) {
    const err = e as Error & { stderr?: string; stdout?: string };
    throw new Error(`${path.basename(bin)} failed: ${err.message}\n${err.stdout ?? ''}${err.stderr ?? ''}`);
  }
}

let dbCounter = 0;

/**
 * Starts a fresh cluster on a free port. Durability is off (fsync, synchronous commit: it is thrown away) unless
 * `durable` asks for PostgreSQL's defaults (benchmarks comparing write costs with SQLite's synchronous=FULL).
 */
export async function startPg(opts: { durable?: boolean } = {}): Promise<PgServer> {
  const bins = findPgBinaries();
  if (!bins) throw new Error(PG_MISSING_MESSAGE);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-pg-'));
  const data = path.join(dir, 'data');
  fs.mkdirSync(data);
  if (isRoot) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    fs.chownSync(dir, Number(stdout.trim()), Number(gid.trim()));
    fs.chownSync(data, Number(stdout.trim()), Number(gid.trim()));
  }
  await pgRun(path.join(bins.bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync']);
  let port = 0;
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    try {
      await pgRun(path.join(bins.bin, 'pg_ctl'), [
        '-D', data, '-w', '-t', '60', '-l', path.join(dir, 'log'),
        '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=200${opts.durable ? '' : ' -c fsync=off -c synchronous_commit=off -c full_page_writes=off'}`,
        'start',
      ]);
      break;
    } catch (e) {
      // Another process took the port between our probe and the bind: try the next one.
      if (attempt >= 4) throw new Error(`${(e as Error).message}\n${fs.existsSync(path.join(dir, 'log')) ? fs.readFileSync(path.join(dir, 'log'), 'utf8') : ''}`);
    }
  }
  const adminUrl = `postgres://postgres@127.0.0.1:${port}/postgres`;
  return {
    port,
    adminUrl,
    async createDatabase() {
      const name = `t_${process.pid}_${++dbCounter}`;
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      try {
        await c.query(`CREATE DATABASE ${name}`);
      } finally {
        await c.end();
      }
      return `postgres://postgres@127.0.0.1:${port}/${name}`;
    },
    async stop() {
      await pgRun(path.join(bins.bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => undefined);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
