/**
 * onnxruntime's cost per node on this machine: the floor under the engine's adapter ratios (README, Performance).
 * Each row is a chain of K identical small subgraphs in one session (so per-run overhead is divided away), timed
 * as the median of interleaved runs, at 1 and 2 intra-op threads, with threads parked or spinning between ops.
 * Rows: an element-wise Add, a row mean (ReduceMean + Sub), a LayerNormalization written out (what every LN in
 * our graphs becomes), MeanVarianceNormalization, a thin adapter GEMM pair (down [D, R], up [R, D], residual),
 * and one folded adapter slot exactly as the engine emits it (13 nodes; see carriedSite in encoder-graph.ts).
 *
 *   npm run build:bench && node dist-bench/bench/ops.js [--rows 128,4096] [--hidden 256,768]     (about a minute)
 */
import * as os from 'os';
import { foldedSlotDown } from '../server/model/encoder-graph';
import { GraphBuilder, type Value } from '../server/model/graph/builder';
import { Session } from '../server/runtime/session';

const argv = process.argv.slice(2);
const listArg = (k: string, def: number[]) => {
  const i = argv.indexOf(k);
  return i >= 0 ? argv[i + 1].split(',').map(Number) : def;
};
const ROWS = listArg('--rows', [128, 4096]);
const HIDDEN = listArg('--hidden', [256, 768]);
const K = 40; // subgraphs per chain
const ROUNDS = 25;

type Chain = { name: string; nodes: number; step: (g: GraphBuilder, z: Value, w: Weights) => Value };
interface Weights {
  down: Value;
  downB: Value;
  up: Value;
}

const CHAINS: Chain[] = [
  { name: 'Add [N,D]', nodes: 1, step: (g, z) => g.add(z, g.constFloat(1e-6)) },
  { name: 'ReduceMean + Sub', nodes: 2, step: (g, z) => g.sub(z, g.reduce('ReduceMean', z, [-1], true)) },
  { name: 'LayerNorm written out', nodes: 9, step: (g, z) => g.layerNorm(z, g.constFloat(1), g.constFloat(0), 1e-12) },
  { name: 'MeanVarianceNormalization', nodes: 1, step: (g, z) => g.node('MeanVarianceNormalization', [z], { axes: [1] }, [{ type: 'float32', shape: z.shape }])[0] },
  { name: 'thin GEMM pair + residual', nodes: 2, step: (g, z, w) => g.gemm(g.gemm(z, w.down), w.up, { c: z }) },
  {
    name: 'folded adapter slot (engine)',
    nodes: 13,
    // the engine's own emitter for the down half (carriedSite), then relu and the up GEMM with the residual
    step: (g, z, w) => g.gemm(g.unary('Relu', foldedSlotDown(g, z, w.down, w.downB, 1e-12)), w.up, { c: z }),
  },
];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

function random(n: number, scale: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * scale;
  });
}

async function main(): Promise<void> {
  const cpus = os.cpus();
  process.stdout.write(`onnxruntime per-node costs — ${cpus[0]?.model ?? 'CPU'}, ${cpus.length} cores; chains of ${K}, median of ${ROUNDS} interleaved runs; µs per subgraph (per node)\n`);
  const settings = [
    { label: '1 thread', threads: 1, spin: false },
    { label: '2 parked', threads: 2, spin: false },
    { label: '2 spinning', threads: 2, spin: true },
  ];
  for (const D of HIDDEN) {
    const R = D / 16;
    for (const N of ROWS) {
      process.stdout.write(`\n[${N}, ${D}], adapter width R=${R}\n${'subgraph'.padEnd(32)}${settings.map((s) => s.label.padStart(20)).join('')}\n`);
      for (const chain of CHAINS) {
        const g = new GraphBuilder('ops');
        const x = g.input('x', 'float32', [N, D]);
        const w: Weights = { down: g.input('down', 'float32', [D, R]), downB: g.input('down_b', 'float32', [1, R]), up: g.input('up', 'float32', [R, D]) };
        let z = x;
        for (let k = 0; k < K; k++) z = chain.step(g, z, w);
        g.output(z, 'y');
        const bytes = g.toBytes();
        const feeds = {
          x: { type: 'float32' as const, dims: [N, D], data: random(N * D, 1, 1) },
          down: { type: 'float32' as const, dims: [D, R], data: random(D * R, 0.1, 2) },
          down_b: { type: 'float32' as const, dims: [1, R], data: random(R, 0.1, 3) },
          up: { type: 'float32' as const, dims: [R, D], data: random(R * D, 0.01, 4) },
        };
        const sessions = await Promise.all(settings.map((s) => Session.create(bytes, { threads: s.threads, spin: s.spin })));
        const run = async (i: number) => {
          const s = sessions[i];
          const mine = Object.fromEntries(Object.entries(feeds).filter(([k]) => s.inputNames.includes(k)));
          const t0 = process.hrtime.bigint();
          await s.run(mine, ['y']);
          return Number(process.hrtime.bigint() - t0) / 1e3;
        };
        for (let i = 0; i < sessions.length; i++) for (let r = 0; r < 3; r++) await run(i);
        const times = sessions.map(() => [] as number[]);
        for (let r = 0; r < ROUNDS; r++) for (let i = 0; i < sessions.length; i++) times[i].push(await run(i));
        const cells = times.map((t) => {
          const per = median(t) / K;
          return `${per.toFixed(1)} (${(per / chain.nodes).toFixed(1)})`.padStart(20);
        });
        process.stdout.write(`${`${chain.name} [${chain.nodes}]`.padEnd(32)}${cells.join('')}\n`);
        await Promise.all(sessions.map((s) => s.release()));
      }
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
