/**
 * The heap growth `serve` sets (heap-growth.ts) changes how often V8 runs full collections: the same allocation
 * pattern — a live set plus garbage that lives long enough to be promoted, as a server's requests leave behind —
 * runs in fresh child processes with V8's own growth and with serve's default, and the second must need fewer
 * mark-compacts. Counts, not times: the machine's load does not change them.
 */
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { DEFAULT_HEAP_GROWING_PERCENT, setHeapGrowingPercent } from '../../server/runtime/heap-growth';

const ROOT = path.resolve(__dirname, '../..');

const CHILD = `
const { PerformanceObserver, constants } = require('node:perf_hooks');
const { setHeapGrowingPercent } = require('./server/runtime/heap-growth.ts');
setHeapGrowingPercent(Number(process.argv[1]));
let major = 0;
const obs = new PerformanceObserver((list) => { for (const e of list.getEntries()) if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR) major++; });
obs.observe({ entryTypes: ['gc'] });
const live = Array.from({ length: 200000 }, (_, i) => ({ i, s: 'x' + i }));
const ring = new Array(256).fill(null);
for (let k = 0; k < 20000; k++) ring[k % 256] = Array.from({ length: 2000 }, (_, i) => ({ k, i }));
setTimeout(() => { obs.disconnect(); process.stdout.write(JSON.stringify({ major, live: live.length + ring.length })); }, 200);
`;

async function majorCollections(percent: number): Promise<number> {
  const { stdout } = await promisify(execFile)(process.execPath, ['-r', './test/helpers/register-ts.js', '-e', CHILD, String(percent)], { cwd: ROOT });
  return (JSON.parse(stdout) as { major: number }).major;
}

describe('heap growth', () => {
  it("serve's default runs fewer full collections than V8's own growth on the same allocations", async () => {
    await majorCollections(0); // the first child transpiles the module (register-ts caches it): its heap differs
    const own = await majorCollections(0);
    const tuned = await majorCollections(DEFAULT_HEAP_GROWING_PERCENT);
    expect(own).toBeGreaterThan(2);
    expect(tuned).toBeLessThan(own / 2);
  }, 60_000);

  it('refuses what V8 would not take', () => {
    expect(() => setHeapGrowingPercent(-1)).toThrow(/integer from 0/);
    expect(() => setHeapGrowingPercent(1.5)).toThrow(/integer from 0/);
    expect(() => setHeapGrowingPercent(20_000)).toThrow(/to 10000, got 20000/);
  });
});
