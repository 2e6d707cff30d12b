/**
 * Free TCP ports for the servers tests start (PostgreSQL, s3rver, server replicas, nginx), drawn from
 * MODHUB_TEST_PORTS=<lo>-<hi> when set (a shared machine gives each engineer a range), else from the OS.
 * Example: `const port = await freePort();`
 */
import * as net from 'node:net';

const taken = new Set<number>();

function tryBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** A port nothing listens on now (and that this process has not handed out before). */
export async function freePort(): Promise<number> {
  const range = /^(\d+)-(\d+)$/.exec(process.env.MODHUB_TEST_PORTS ?? '');
  if (!range) {
    for (;;) {
      const port = await new Promise<number>((resolve, reject) => {
        const s = net.createServer();
        s.once('error', reject);
        s.listen(0, '127.0.0.1', () => {
          const p = (s.address() as net.AddressInfo).port;
          s.close(() => resolve(p));
        });
      });
      if (!taken.has(port)) {
        taken.add(port);
        return port;
      }
    }
  }
  const lo = Number(range[1]);
  const hi = Number(range[2]);
  const span = hi - lo + 1;
  // Start at a random offset so parallel jest workers rarely probe the same port first.
  const start = Math.floor(Math.random() * span);
  for (let i = 0; i < span; i++) {
    const port = lo + ((start + i) % span);
    if (taken.has(port)) continue;
    if (await tryBind(port)) {
      taken.add(port);
      return port;
    }
  }
  throw new Error(`no free port in MODHUB_TEST_PORTS=${process.env.MODHUB_TEST_PORTS}`);
}
