/**
 * GitHub issue 2: engine throughput of compositions vs the bare base, and of a 32-way mixed batch vs a
 * single-composition batch, on random-init bases (BERT-base shape and a small one), T = 128, batch 1 and 32.
 *
 * Method: every configuration of one (model, batch) is warmed up (session built, diff weights materialised),
 * then measured in rounds; each round runs every configuration once, in a rotated order, so drift (thermal,
 * other load) hits all of them alike. Throughput is rows / median time; a ratio is the median over rounds of
 * (bare time / configuration time) measured in that same round.
 *
 *   npm run bench:engine -- [--quick] [--json FILE] [--threads N]
 *   --quick   small model only, fewer rounds (< 1 minute)
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { createTinyBase } from '../server/model/tiny';
import { loadBase, type Base } from '../server/model/base';
import { Engine } from '../server/runtime/engine';
import { parseManifest } from '../modules-store/manifest';
import type { RowPlan } from '../server/model/composition';
import type { EncodedBatch } from '../server/model/tokenizer';
import { baseParamShapes, makeAdapterModule, makeDiffModule, makeLoraModule, mulberry32, type BaseInfo } from '../test/helpers/modules';
import type { RefModule } from '../test/reference/modules';

// ---- options -----------------------------------------------------------------------------------------------
const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const argOf = (k: string) => {
  const i = argv.indexOf(k);
  return i >= 0 ? argv[i + 1] : undefined;
};
const JSON_OUT = argOf('--json');
const THREADS = argOf('--threads') !== undefined ? Number(argOf('--threads')) : undefined;
const T = 128;

interface ModelSpec {
  name: string;
  layers: number;
  hidden: number;
  heads: number;
  intermediate: number;
  /** Rounds (after warm-up) per batch size. */
  rounds: Record<number, number>;
  warmup: number;
}
const SMALL: ModelSpec = { name: 'small (4L, 256H, 4 heads, FFN 1024)', layers: 4, hidden: 256, heads: 4, intermediate: 1024, rounds: QUICK ? { 1: 30, 32: 4 } : { 1: 60, 32: 12 }, warmup: 2 };
const BERT_BASE: ModelSpec = { name: 'BERT-base shape (12L, 768H, 12 heads, FFN 3072)', layers: 12, hidden: 768, heads: 12, intermediate: 3072, rounds: { 1: 40, 32: 5 }, warmup: 1 };
const MODELS = QUICK ? [SMALL] : [SMALL, BERT_BASE];

// ---- helpers -----------------------------------------------------------------------------------------------
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const now = () => Number(process.hrtime.bigint()) / 1e6; // ms
const log = (s: string) => process.stderr.write(`[bench] ${s}\n`);

/** Pseudo-words so that the trained WordPiece vocabulary approaches BERT's size (the built-in corpus gives a few hundred). */
function bigCorpus(seed: number): string[] {
  const rnd = mulberry32(seed);
  const syl = ['ka', 'lo', 'mi', 'ne', 'ru', 'ta', 'shi', 'po', 'gre', 'vul', 'an', 'dor', 'pex', 'qui', 'zan', 'bro', 'ilm', 'ost', 'fa', 'ye', 'hu', 'jor', 'wen', 'cai'];
  const lines: string[] = [];
  for (let i = 0; i < 6000; i++) {
    const words: string[] = [];
    for (let w = 0; w < 12; w++) {
      let s = '';
      const n = 1 + Math.floor(rnd() * 4);
      for (let k = 0; k < n; k++) s += syl[Math.floor(rnd() * syl.length)];
      if (rnd() < 0.3) s += String(Math.floor(rnd() * 1000));
      words.push(s);
    }
    lines.push(words.join(' '));
  }
  return lines;
}

function randomBatch(base: Base, B: number, seed: number): EncodedBatch {
  const V = base.config.vocabSize;
  const rnd = mulberry32(seed);
  const inputIds = new Int32Array(B * T);
  for (let i = 0; i < inputIds.length; i++) inputIds[i] = 5 + Math.floor(rnd() * (V - 5));
  const positionIds = new Int32Array(B * T);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) positionIds[b * T + t] = t + base.config.positionOffset;
  return {
    batch: B,
    length: T,
    inputIds,
    attentionMask: new Int32Array(B * T).fill(1),
    tokenTypeIds: new Int32Array(B * T),
    positionIds,
    specialTokensMask: new Int32Array(B * T),
    lengths: new Array(B).fill(T),
    tokens: [],
    offsets: [],
    wordIds: [],
    sequenceIds: [],
  };
}

interface ConfigResult {
  model: string;
  batch: number;
  config: string;
  rowsPerSec: number;
  medianMs: number;
  /** Fastest run: the least disturbed by other processes on a shared machine. */
  minMs: number;
  timesMs: number[];
  reference: string;
  ratio: number | null;
  /** Reference's fastest run / this configuration's fastest run (a cross-check on a noisy machine). */
  ratioOfMin: number | null;
  target: number | null;
  pass: boolean | null;
}
interface SwitchResult {
  model: string;
  batch: number;
  kind: string;
  repeatedMs: number;
  switchedMs: number;
  ratio: number;
  sessionsBefore: number;
  sessionsAfter: number;
  pass: boolean;
}

const results: ConfigResult[] = [];
const switches: SwitchResult[] = [];
const notes: string[] = [];

// ---- one model ---------------------------------------------------------------------------------------------
async function benchModel(spec: ModelSpec): Promise<void> {
  const t0 = now();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-bench-'));
  await createTinyBase({ out: dir, family: 'bert', layers: spec.layers, hidden: spec.hidden, heads: spec.heads, intermediate: spec.intermediate, vocabSize: 30522, maxPositions: 512, seed: 1, corpus: bigCorpus(7) });
  const base = await loadBase(dir);
  const engine = await Engine.create({ base, threads: THREADS });
  const vocab = base.config.vocabSize;
  notes.push(`${spec.name}: vocabulary ${vocab} (trained on a pseudo-word corpus; BERT's is 30522)`);
  log(`${spec.name}: base ready (vocab ${vocab}) in ${((now() - t0) / 1000).toFixed(1)} s`);

  const info: BaseInfo = { family: 'bert', fingerprint: base.fingerprint, hidden_size: base.config.hiddenSize, num_layers: base.config.numLayers, vocab_size: vocab, intermediate_size: base.config.intermediateSize };
  const add = (m: RefModule) => {
    engine.addModule(parseManifest(m.manifest), m.tensors);
    return `${m.manifest.id}@${m.manifest.version}`;
  };
  const langs = [0, 1, 2, 3].map((i) => add(makeAdapterModule({ id: `lang/l${i}`, base: info, preset: 'seq_bn_inv', config: { reduction_factor: 16 }, seed: 100 + i })));
  const tasks = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => add(makeAdapterModule({ id: `task/t${i}`, base: info, preset: 'seq_bn', config: { reduction_factor: 16 }, seed: 200 + i })));
  const loras = [0, 1].map((i) => add(makeLoraModule({ id: `task/lora${i}`, base: info, r: 8, lora_alpha: 16, target_modules: ['query', 'value'], seed: 300 + i })));
  const shapes = baseParamShapes(info, { maxPositions: base.config.maxPositions, typeVocab: base.config.typeVocabSize });
  const dLang = add(makeDiffModule({ id: 'sft/lang', base: info, targets: shapes, density: 0.01, method: 'lt-sft', seed: 400 }));
  const dTask = add(makeDiffModule({ id: 'sft/task', base: info, targets: shapes.filter((s) => !/embeddings/.test(s.name)), density: 0.01, method: 'lt-sft', seed: 401 }));
  log(`${spec.name}: modules ready in ${((now() - t0) / 1000).toFixed(1)} s`);

  const plan1 = async (c: unknown): Promise<RowPlan> => {
    const p = await engine.plan(c);
    if (p.length !== 1) throw new Error('expected one branch');
    return p[0];
  };
  const bare = await plan1(null);
  const adapters = await plan1({ stack: [langs[0], tasks[0]] });
  const adaptersB = await plan1({ stack: [langs[1], tasks[1]] });
  const lora = await plan1(loras[0]);
  const diffs = await plan1({ sum: [dLang, dTask] });
  const adDiff = await plan1({ stack: [{ sum: [dLang] }, tasks[0]] });
  const mixedPlans: RowPlan[] = [];
  for (let i = 0; i < 32; i++) mixedPlans.push(await plan1({ stack: [langs[i % 4], tasks[Math.floor(i / 4)]] }));

  for (const B of [1, 32]) {
    const batch = randomBatch(base, B, 11 + B);
    type Cfg = { name: string; plans: RowPlan[]; ref: string; target: number | null };
    const all = (p: RowPlan) => new Array<RowPlan>(B).fill(p);
    const cfgs: Cfg[] = [
      { name: 'bare base', plans: all(bare), ref: 'bare base', target: null },
      { name: 'adapters: stack lang(seq_bn_inv)+task(seq_bn), rf 16', plans: all(adapters), ref: 'bare base', target: 0.95 },
      { name: 'LoRA r=8 on q,v', plans: all(lora), ref: 'bare base', target: 0.95 },
      { name: 'diffs: sum lang+task, 1% each', plans: all(diffs), ref: 'bare base', target: 0.85 },
      { name: 'adapter+diff: stack [sum lang-diff], task adapter', plans: all(adDiff), ref: 'bare base', target: 0.85 },
    ];
    if (B === 32) cfgs.push({ name: 'mixed batch: 32 rows, 32 compositions (lang_i+task_j)', plans: mixedPlans, ref: cfgs[1].name, target: 0.85 });

    const run = async (plans: RowPlan[]) => {
      const s = now();
      const out = await engine.forward(batch, plans, {});
      const ms = now() - s;
      if (!out[0].hidden || !Number.isFinite(out[0].hidden[0])) throw new Error('no finite output');
      return ms;
    };
    log(`${spec.name} B=${B}: warm-up (${spec.warmup}x each)`);
    for (const c of cfgs) for (let w = 0; w < spec.warmup; w++) await run(c.plans);
    await engine.copiesMade(); // diff sets' copies, made by the worker between runs
    const rounds = spec.rounds[B];
    const times = cfgs.map(() => [] as number[]);
    for (let r = 0; r < rounds; r++) {
      for (let k = 0; k < cfgs.length; k++) {
        const i = (k + r) % cfgs.length; // rotated order
        times[i].push(await run(cfgs[i].plans));
      }
      log(`${spec.name} B=${B}: round ${r + 1}/${rounds}: ${times.map((t) => t[r].toFixed(0)).join(' / ')} ms`);
    }
    cfgs.forEach((c, i) => {
      const refIdx = cfgs.findIndex((x) => x.name === c.ref);
      const ratio = i === refIdx ? null : median(times[i].map((t, r) => times[refIdx][r] / t));
      const med = median(times[i]);
      results.push({
        model: spec.name,
        batch: B,
        config: c.name,
        rowsPerSec: (B * 1000) / med,
        medianMs: med,
        minMs: Math.min(...times[i]),
        timesMs: times[i],
        reference: c.ref,
        ratio,
        ratioOfMin: i === refIdx ? null : Math.min(...times[refIdx]) / Math.min(...times[i]),
        target: c.target,
        pass: ratio === null || c.target === null ? null : ratio >= c.target,
      });
    });

    // Switch: A, B, A, ... (same variant, different modules) vs A, A, A; sessionsBuilt must not move.
    for (const [kind, pa, pb] of [
      ['adapters A=lang0+task0 / B=lang1+task1 (same variant)', all(adapters), all(adaptersB)],
      ['kinds A=adapter stack / B=LoRA (two cached variants)', all(adapters), all(lora)],
    ] as const) {
      await run(pb as RowPlan[]); // both sides warm
      const before = engine.stats.sessionsBuilt;
      const n = B === 1 ? (spec === BERT_BASE ? 5 : 9) : QUICK ? 2 : spec === BERT_BASE ? 2 : 4;
      const rep: number[] = [];
      const sw: number[] = [];
      await run(pa as RowPlan[]);
      for (let i = 0; i < n; i++) {
        rep.push(await run(pa as RowPlan[])); // A after A
        sw.push(await run(pb as RowPlan[])); // B after A
        sw.push(await run(pa as RowPlan[])); // A after B
        await run(pa as RowPlan[]);
      }
      const after = engine.stats.sessionsBuilt;
      const repeatedMs = median(rep);
      const switchedMs = median(sw);
      switches.push({ model: spec.name, batch: B, kind, repeatedMs, switchedMs, ratio: switchedMs / repeatedMs, sessionsBefore: before, sessionsAfter: after, pass: after === before });
    }
  }
  log(`${spec.name}: done in ${((now() - t0) / 1000).toFixed(1)} s; sessions built ${engine.stats.sessionsBuilt}, runs ${engine.stats.runs}`);
  await engine.close();
  fs.rmSync(dir, { recursive: true, force: true });
}

// ---- report ------------------------------------------------------------------------------------------------
function ortVersion(): string {
  try {
    return JSON.parse(fs.readFileSync(require.resolve('onnxruntime-node/package.json'), 'utf8')).version;
  } catch {
    return 'unknown';
  }
}

function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n);
}

function printTable(machine: string): void {
  const out: string[] = [];
  out.push('');
  out.push(`modhub engine benchmark (issue 2) — T=${T}, ${QUICK ? 'quick' : 'full'} run`);
  out.push(`machine: ${machine}`);
  for (const n of notes) out.push(`note: ${n}`);
  const W = 56;
  for (const model of [...new Set(results.map((r) => r.model))]) {
    out.push('');
    out.push(`== ${model}`);
    out.push(`${pad('B', 3, true)}  ${pad('configuration', W)} ${pad('rows/s', 9, true)} ${pad('median ms', 10, true)} ${pad('ratio', 7, true)} ${pad('min ms', 9, true)} ${pad('ratio(min)', 10, true)}  ${pad('vs', 22)} ${pad('target', 7)} result`);
    for (const r of results.filter((x) => x.model === model)) {
      out.push(
        `${pad(String(r.batch), 3, true)}  ${pad(r.config, W)} ${pad(r.rowsPerSec.toFixed(r.rowsPerSec < 100 ? 2 : 1), 9, true)} ${pad(r.medianMs.toFixed(1), 10, true)} ${pad(r.ratio === null ? '1.000' : r.ratio.toFixed(3), 7, true)} ${pad(r.minMs.toFixed(1), 9, true)} ${pad(r.ratioOfMin === null ? '1.000' : r.ratioOfMin.toFixed(3), 10, true)}  ${pad(r.ratio === null ? '-' : r.reference === 'bare base' ? 'bare' : 'single-composition', 22)} ${pad(r.target === null ? '-' : `>=${r.target}`, 7)} ${r.pass === null ? '' : r.pass ? 'PASS' : 'FAIL'}`,
      );
    }
    out.push('  switching compositions (median ms of A-after-A runs vs runs right after a switch; sessionsBuilt before -> after):');
    for (const s of switches.filter((x) => x.model === model)) {
      out.push(`${pad(String(s.batch), 3, true)}  ${pad(s.kind, W)} repeated ${s.repeatedMs.toFixed(1)} ms, switched ${s.switchedMs.toFixed(1)} ms (x${s.ratio.toFixed(3)}), sessions ${s.sessionsBefore} -> ${s.sessionsAfter}  ${s.pass ? 'PASS (no rebuild)' : 'FAIL (rebuilt)'}`);
    }
  }
  const fails = results.filter((r) => r.pass === false).length + switches.filter((s) => !s.pass).length;
  out.push('');
  out.push('ratio = median over rounds of (reference time / configuration time) in the same round; ratio(min) = fastest reference run / fastest configuration run. PASS/FAIL uses ratio.');
  out.push(fails ? `${fails} target(s) missed` : 'all targets met');
  process.stdout.write(out.join('\n') + '\n');
}

async function main(): Promise<void> {
  const cpus = os.cpus();
  const machine = `${cpus[0]?.model ?? 'unknown CPU'}, ${cpus.length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.platform()} ${os.release()}, node ${process.version}, onnxruntime-node ${ortVersion()}, threads ${THREADS ?? 'ort default (all cores)'}`;
  log(machine);
  const start = now();
  const loadStart = os.loadavg();
  for (const m of MODELS) await benchModel(m);
  const load = `load average at start ${loadStart.map((x) => x.toFixed(2)).join(' ')}, at end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} (1/5/15 min)`;
  notes.push(load);
  printTable(machine);
  const seconds = (now() - start) / 1000;
  process.stdout.write(`total ${seconds.toFixed(0)} s\n`);
  if (JSON_OUT) {
    fs.writeFileSync(JSON_OUT, JSON.stringify({ machine, T, quick: QUICK, seconds, notes, results, switches }, null, 2) + '\n');
    log(`JSON written to ${JSON_OUT}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
