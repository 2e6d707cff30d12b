/**
 * GitHub issue 4 benchmark: training throughput (tokens/s) and achieved GFLOP/s of adapter training (seq_bn)
 * and full fine-tuning on a BERT-base-shaped random base, against the MatMul GFLOP/s onnxruntime reaches on this
 * machine in the same run (target: >= 50%), and peak memory (RSS).
 *
 * A step = one session run (forward + loss + backward, all gradients out) + the AdamW update. FLOPs counted are
 * the matrix products only: forward 2·tokens·(linear params) + attention 4·B·T²·D per layer; backward adds
 * 2× the forward for full fine-tuning (dX and dW) and 1× (dX only, adapters' dW is negligible) for adapters.
 *
 *   npm run build:bench && node dist-bench/bench/train.js [--quick] [--json FILE] [--threads N] [--batch B] [--steps N]
 *   --quick   a 4-layer, 256-wide base (seconds), for CI smoke runs
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { createTinyBase } from '../server/model/tiny';
import { loadBase, type Base } from '../server/model/base';
import { initModule } from '../server/model/module-init';
import { GraphBuilder } from '../server/model/graph/builder';
import { Session, type HostTensor } from '../server/runtime/session';
import { buildTrainGraph, decays, type SlotModule } from '../server/train/graph';
import { AdamW, ParamStore } from '../server/train/optim';
import { Rng } from '../server/model/random';

const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const argOf = (k: string) => {
  const i = argv.indexOf(k);
  return i >= 0 ? argv[i + 1] : undefined;
};
const JSON_OUT = argOf('--json');
const THREADS = argOf('--threads') !== undefined ? Number(argOf('--threads')) : undefined;
const B = Number(argOf('--batch') ?? (QUICK ? 8 : 8));
const T = 128;
const STEPS = Number(argOf('--steps') ?? (QUICK ? 5 : 3));
const SPEC = QUICK ? { layers: 4, hidden: 256, heads: 4, intermediate: 1024 } : { layers: 12, hidden: 768, heads: 12, intermediate: 3072 };

let peakRss = 0;
const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 20);

async function matmulGflops(): Promise<number> {
  // the encoder's dominant product: [B*T, D] x [D, F]
  const M = B * T;
  const K = SPEC.hidden;
  const N = SPEC.intermediate;
  const g = new GraphBuilder('mm');
  const rng = new Rng(1);
  const w = g.initializer('w', { type: 'float32', dims: [K, N], data: rng.fillNormal(new Float32Array(K * N), 0.02) });
  g.output(g.matmul(g.input('x', 'float32', [M, K]), w), 'y');
  const s = await Session.create(g.toBytes(), { threads: THREADS });
  const x: HostTensor = { type: 'float32', dims: [M, K], data: rng.fillNormal(new Float32Array(M * K), 1) };
  for (let i = 0; i < 3; i++) await s.run({ x }, ['y']);
  const times: number[] = [];
  for (let i = 0; i < 10; i++) {
    const t0 = process.hrtime.bigint();
    await s.run({ x }, ['y']);
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  await s.release();
  times.sort((a, b) => a - b);
  return (2 * M * K * N) / times[times.length >> 1] / 1e9;
}

function forwardFlops(base: Base): number {
  const { hiddenSize: D, intermediateSize: F, numLayers: L } = base.config;
  const linear = L * (4 * D * D + 2 * D * F);
  return 2 * B * T * linear + L * 4 * B * T * T * D;
}

async function benchMethod(base: Base, method: 'seq_bn' | 'full'): Promise<{ method: string; stepSeconds: number; tokensPerSecond: number; gflops: number; trainable: number; sessionRunShare: number }> {
  const head = { type: 'classification' as const, labels: ['a', 'b'] };
  let modules: SlotModule[];
  let trainableBase: string[] = [];
  if (method === 'seq_bn') {
    const m = initModule(base, { kind: 'bottleneck', id: 'bench/ad', config: { preset: 'seq_bn' }, head });
    modules = [{ manifest: m.manifest, tensors: m.tensors, trainable: true }];
  } else {
    const m = initModule(base, { kind: 'lora', id: 'bench/head', config: { r: 1, target_modules: ['query'], leave_out: [...Array(base.config.numLayers).keys()] }, head });
    modules = [{ manifest: m.manifest, tensors: new Map([...m.tensors].filter(([k]) => k.startsWith('head.'))), trainable: true }];
    trainableBase = [...base.weights.keys()].filter((n) => !n.startsWith('mlm.') && !n.startsWith('pooler.'));
  }
  const tg = buildTrainGraph({ base, modules, objective: 'cls', trainableBase });
  const sess = await Session.create(tg.bytes, { threads: THREADS });
  const store = new ParamStore(
    tg.params.map((name) => {
      const t = name.startsWith('base:') ? base.weights.get(name.slice(5))! : modules[0].tensors.get(name.replace(/^m\d+:/, ''))!;
      return { name, dims: [...t.shape], data: t.data as Float32Array, decay: decays(name) };
    }),
  );
  const opt = await AdamW.create(store, { lr: 1e-4 });
  const rng = new Rng(3);
  const V = base.tokenizer.vocabSize;
  const ids = BigInt64Array.from({ length: B * T }, () => BigInt(5 + rng.int(V - 5)));
  const pos = BigInt64Array.from({ length: B * T }, (_, i) => BigInt(i % T));
  const feeds: Record<string, HostTensor> = {
    input_ids: { type: 'int64', dims: [B, T], data: ids },
    position_ids: { type: 'int64', dims: [B, T], data: pos },
    token_type_ids: { type: 'int64', dims: [B, T], data: new BigInt64Array(B * T) },
    attention_mask: { type: 'float32', dims: [B, T], data: new Float32Array(B * T).fill(1) },
    labels: { type: 'int64', dims: [B, 1], data: BigInt64Array.from({ length: B }, (_, i) => BigInt(i % 2)) },
    label_weights: { type: 'float32', dims: [B, 1], data: new Float32Array(B).fill(1 / B) },
    ...tg.indexFeeds(B),
  };
  let runS = 0;
  let optS = 0;
  const into = store.gradBuffers(tg.params, tg.gradNames);
  const step = async () => {
    const t0 = process.hrtime.bigint();
    await sess.run({ ...feeds, ...store.feeds() }, ['loss', ...tg.gradNames], into); // as the trainer: gradients land in the store
    const t1 = process.hrtime.bigint();
    await opt.step();
    runS += Number(t1 - t0) / 1e9;
    optS += Number(process.hrtime.bigint() - t1) / 1e9;
  };
  await step(); // warm-up
  runS = 0;
  optS = 0;
  const times: number[] = [];
  for (let i = 0; i < STEPS; i++) {
    const t0 = process.hrtime.bigint();
    await step();
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  await sess.release();
  times.sort((a, b) => a - b);
  const s = times[times.length >> 1];
  const fwd = forwardFlops(base);
  const flops = fwd * (method === 'full' ? 3 : 2);
  return { method, stepSeconds: s, tokensPerSecond: (B * T) / s, gflops: flops / s / 1e9, trainable: store.size, sessionRunShare: runS / (runS + optS) };
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-bench-train-'));
  const words = Array.from({ length: 3000 }, (_, i) => `w${i.toString(36)}`);
  const corpus = Array.from({ length: 400 }, (_, i) => Array.from({ length: 12 }, (_, k) => words[(i * 31 + k * 17) % words.length]).join(' '));
  await createTinyBase({ out: dir, family: 'bert', ...SPEC, vocabSize: 30522, maxPositions: 512, seed: 1, corpus });
  const base = await loadBase(dir);
  // The MatMul reference is measured right before and after each method (the best of the two), so load from
  // other processes on a shared machine hits both sides of the ratio alike.
  const results = [];
  const mms: number[] = [];
  for (const m of ['seq_bn', 'full'] as const) {
    const before = await matmulGflops();
    const r = await benchMethod(base, m);
    const ref = Math.max(before, await matmulGflops());
    mms.push(ref);
    results.push({ ...r, matmulGflops: ref, ratio: r.gflops / ref });
  }
  const mm = Math.max(...mms);
  clearInterval(sampler);
  const shape = `${SPEC.layers}L/${SPEC.hidden}H/${SPEC.heads} heads/FFN ${SPEC.intermediate}, vocab ${base.config.vocabSize}`;
  const lines = [
    `train bench: ${shape}; B=${B}, T=${T}, ${STEPS} timed steps (median), threads ${THREADS ?? 'all'} on ${os.cpus().length} cores`,
    `MatMul [${B * T}x${SPEC.hidden}]x[${SPEC.hidden}x${SPEC.intermediate}]: best ${mm.toFixed(1)} GFLOP/s`,
    ...results.map((r) => `${r.method.padEnd(7)} step ${r.stepSeconds.toFixed(3)} s, ${Math.round(r.tokensPerSecond)} tokens/s, ${r.gflops.toFixed(1)} GFLOP/s = ${(100 * r.ratio).toFixed(0)}% of MatMul ${r.matmulGflops.toFixed(1)} GFLOP/s measured around it (${r.trainable} trainable; ${(100 * r.sessionRunShare).toFixed(0)}% of the step in the forward+backward run, the rest AdamW)`),
    `peak RSS ${(peakRss / (1 << 20)).toFixed(0)} MiB`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
  if (JSON_OUT) fs.writeFileSync(JSON_OUT, JSON.stringify({ shape: SPEC, B, T, matmulGflops: mm, results, peakRssBytes: peakRss }, null, 2));
  fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
