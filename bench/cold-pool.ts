/**
 * Pools the cold-start samples of several `bench:serve --cold-only --json FILE` runs: one run's 32 modules spread
 * about as widely as the changes we measure (±50% run to run on the VM we use), so a change is judged on the
 * medians over every run of each code, side by side.
 *   node dist-bench/bench/cold-pool.js before=a.json,b.json after=c.json,d.json
 * Prints, per module kind and over all kinds, the pooled median and quartiles of the extra ms of a first request
 * (first − the same request once loaded), its median page faults, and the medians of the main thread's stages on
 * it (plan: resolve and load, of which load: loadEngineModule; feeds: pools.acquire).
 */
import * as fs from 'fs';

interface Sample {
  kind: string;
  coldMs: number;
  warmMs: number;
  coldFaults: number;
  /** Instrumented stages of the first request (bench/serve.ts instrument()): ms by stage. */
  coldStages: Record<string, { ms: number; calls: number }>;
}

/** The main thread's own work on a first request: steadier than end-to-end times, which include the VM's noise. */
const STAGES: [string, string][] = [
  ['plan', 'engine.plan (async: resolve + load on miss)'],
  ['load', 'loadEngineModule (sync, module loads)'],
  ['feeds', 'engine.pools.acquire (sync, main thread)'],
];

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return NaN;
  const at = (s.length - 1) * q;
  const lo = Math.floor(at);
  return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (at - lo);
}

function main(): void {
  const groups = process.argv.slice(2).map((arg) => {
    const eq = arg.indexOf('=');
    if (eq <= 0) throw new Error(`cold-pool: expected NAME=file.json[,file.json…], got '${arg}'`);
    const files = arg.slice(eq + 1).split(',');
    const samples = files.flatMap((f) => (JSON.parse(fs.readFileSync(f, 'utf8')) as { coldStart: Sample[] }).coldStart);
    return { name: arg.slice(0, eq), runs: files.length, samples };
  });
  if (!groups.length) throw new Error('cold-pool: give at least one NAME=file.json[,file.json…]');
  const kinds = [...new Set(groups.flatMap((g) => g.samples.map((s) => s.kind))), 'all'];
  const f = (x: number) => x.toFixed(1);
  const rows = kinds.map((k) => [
    k,
    ...groups.map((g) => {
      const xs = g.samples.filter((s) => k === 'all' || s.kind === k);
      const extra = xs.map((s) => s.coldMs - s.warmMs);
      const stages = STAGES.map(([short, key]) => `${short} ${f(quantile(xs.map((s) => s.coldStages[key]?.ms ?? 0), 0.5))}`).join(', ');
      return `${f(quantile(extra, 0.5))} (${f(quantile(extra, 0.25))}–${f(quantile(extra, 0.75))}) n=${xs.length}, faults ${quantile(xs.map((s) => s.coldFaults), 0.5).toFixed(0)}; ${stages}`;
    }),
  ]);
  const head = ['kind', ...groups.map((g) => `${g.name}: extra ms, median (quartiles), ${g.runs} run(s)`)];
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(width[i])).join('  ');
  process.stdout.write([line(head), line(width.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n') + '\n');
}

try {
  main();
} catch (e) {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exitCode = 1;
}
