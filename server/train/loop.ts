/**
 * One training phase, coordinated: build the training and evaluation graphs of a method's plan, start the
 * parameters, run optimiser steps (each `gradAccum` micro-batches whose gradients accumulate, then AdamW with
 * linear warmup/decay and clipping), evaluate on dev every `evalEvery` steps keeping the best weights, stop
 * early on `patience`, write a resumable checkpoint at each evaluation and package the result.
 * Batches: batches.ts; evaluation: evaluate.ts; checkpoints: checkpoint.ts; packaging: package.ts.
 * Example: `const res = await runPhase(ctx, STRATEGIES.lora.plan(ctx), { lr: 5e-4, what: 'LoRA' })`.
 */
import type { Base } from '../model/base';
import { Rng } from '../model/random';
import { Session, type HostTensor, type OutputBuffers } from '../runtime/session';
import { batchMaker, epochOrder, microBatch, type Batch } from './batches';
import { readCheckpoint, writeCheckpoint } from './checkpoint';
import { evaluator, METRIC_OF } from './evaluate';
import { buildTrainGraph, decays, type Objective } from './graph';
import type { MethodContext, PhasePlan, PhaseSettings } from './methods/strategy';
import { AdamW, ParamStore, accumulate, linearSchedule, type ParamSpec } from './optim';
import { packagePhase } from './package';
import type { Metrics, TrainResult } from './types';

const OBJECTIVE = { classification: 'cls', token_classification: 'tok', mlm: 'mlm' } as const satisfies Record<MethodContext['task'], Objective>;

/** The start value and shape of each trainable input: the plan's, else the base weight or module tensor. */
function paramSpecs(base: Base, plan: PhasePlan, params: readonly string[]): ParamSpec[] {
  return params.map((name) => {
    let own = plan.paramInit?.(name);
    if (!own && name.startsWith('base:')) {
      const t = base.weights.get(name.slice(5))!;
      own = { data: t.data as Float32Array, dims: [...t.shape] };
    }
    if (!own) {
      const m = /^m(\d+):(.*)$/.exec(name);
      const t = m && plan.modules[Number(m[1])]?.tensors.get(m[2]);
      if (!t) throw new TypeError(`training graph input '${name}' has no start value: the method's plan must give it (paramInit)`);
      own = { data: t.data as Float32Array, dims: [...t.shape] };
    }
    return { name, dims: own.dims, data: own.data, decay: plan.decay ? plan.decay(name) : decays(name) };
  });
}

/** Scalars the optimiser changes: every entry of a trainable input, only the selected ones of a masked one. */
function countTrainable(store: ParamStore, params: readonly string[]): number {
  let n = 0;
  for (const name of params) {
    const v = store.views.get(name)!;
    const mask = store.groups[v.group].mask;
    if (!mask) n += v.data.length;
    else for (let i = v.offset; i < v.offset + v.data.length; i++) n += mask[i] ? 1 : 0;
  }
  return n;
}

/** "best dev evaluation, step 500 of 710" / "last step (710)", for summaries and descriptions. */
export function savedText(s: TrainResult['saved']): string {
  return s.which === 'best' ? `best dev evaluation, step ${s.step} of ${s.of}` : `last step (${s.step})`;
}

/** Trains one phase of a method; see TrainOptions for the defaults. */
export async function runPhase(ctx: MethodContext, plan: PhasePlan, settings: PhaseSettings): Promise<TrainResult> {
  const { o, base, task, labels, seed } = ctx;
  const objective = OBJECTIVE[task];
  const spec = { base, modules: plan.modules, objective, trainableBase: plan.trainableBase };
  const tg = buildTrainGraph({ ...spec, ...plan.graphTerms?.(true) });
  const eg = buildTrainGraph({ ...spec, ...plan.graphTerms?.(false), grad: false });
  const [stepSess, evalSess] = await Promise.all([Session.create(tg.bytes, { threads: o.threads }), Session.create(eg.bytes, { threads: o.threads })]);

  const specs = paramSpecs(base, plan, tg.params);
  const initial = new Map(specs.map((s) => [s.name, s.data]));
  const store = new ParamStore(specs);
  for (const [n, m] of plan.masks ?? []) if (store.views.has(`base:${n}`)) store.setMask(`base:${n}`, m);
  const opt = await AdamW.create(store, { lr: settings.lr, weightDecay: o.weightDecay ?? 0.01, maxGradNorm: o.maxGradNorm ?? 1.0 });

  const batchSize = o.batchSize ?? 16;
  const accum = o.gradAccum ?? 1;
  const epochs = o.epochs ?? 3;
  const stepsPerEpoch = Math.max(1, Math.floor(Math.ceil(o.train.length / batchSize) / accum));
  // fractional epochs round up to whole steps (HF Trainer: ceil), so the last step is a whole number that the
  // end-of-training evaluation below can recognise
  const totalSteps = o.maxSteps ?? Math.max(1, Math.ceil(stepsPerEpoch * epochs));
  const warmup = Math.round((o.warmupRatio ?? 0.06) * totalSteps);
  const evalEvery = o.evalEvery ?? stepsPerEpoch;
  const metric = METRIC_OF[task];

  const makeBatch = batchMaker({ base, objective, labelIndex: new Map(labels.map((l, i) => [l, i])), maxLength: o.maxLength ?? 128, mlmProbability: o.mlmProbability ?? 0.15 });
  const run = (sess: Session, b: Batch, outputs: string[], into?: OutputBuffers): Promise<Record<string, HostTensor>> =>
    sess.run({ ...b.feeds, ...tg.indexFeeds(b.B), ...store.feeds() }, outputs, into);
  const ev = evaluator({ makeBatch, run: (b, outputs) => run(evalSess, b, outputs), logits: eg.logits, objective, labels, batchSize, seed });
  // The first micro-batch of a step writes its gradients straight into the store's accumulators.
  const gradBuffers = store.gradBuffers(tg.params, tg.gradNames);

  let step = 0;
  const history: TrainResult['history'] = [];
  let best: { value: number; snap: Float32Array[]; metrics: Metrics; step: number } | null = null;
  let bad = 0;
  let before: Metrics | undefined;
  const ckDir = settings.checkpointDir;
  const ck = ckDir ? readCheckpoint(ckDir, store.groups.map((g) => g.params.length)) : null;
  if (ck) {
    store.groups.forEach((g, i) => {
      g.params.set(ck.groups[i].params);
      g.m.set(ck.groups[i].m);
      g.v.set(ck.groups[i].v);
    });
    step = ck.state.step;
    opt.t = ck.state.t;
    bad = ck.state.bad;
    history.push(...ck.state.history);
    if (ck.state.best && ck.best) best = { ...ck.state.best, snap: ck.best };
    before = ck.state.before;
  }
  // the starting point's dev metrics, so the summary can show what training changed (MAD-X: a language
  // module must lower its language's perplexity below the bare base's)
  if (!ck && o.dev?.length) before = await ev.evaluate(o.dev);
  const saveCheckpoint = () => {
    if (!ckDir) return;
    const state = { step, t: opt.t, bad, history, best: best && { value: best.value, metrics: best.metrics, step: best.step }, before };
    writeCheckpoint(ckDir, { state, groups: store.groups, best: best?.snap });
  };

  const t0 = Date.now();
  let tokens = 0;
  const maskRng = new Rng(seed + 7);
  while (step < totalSteps) {
    const order = epochOrder(o.train, seed, Math.floor(step / stepsPerEpoch));
    let lossSum = 0;
    for (let a = 0; a < accum; a++) {
      const b = await makeBatch(microBatch(order, step, stepsPerEpoch, accum, batchSize, a), maskRng);
      tokens += b.tokens;
      const r = await run(stepSess, b, ['loss', ...tg.gradNames], a === 0 ? gradBuffers : undefined);
      lossSum += (r.loss.data as Float32Array)[0];
      if (a > 0) for (let k = 0; k < tg.params.length; k++) await accumulate(store.views.get(tg.params[k])!.grad, r[tg.gradNames[k]].data as Float32Array);
    }
    const lrf = linearSchedule(step, warmup, totalSteps);
    await opt.step(lrf, accum);
    step++;
    const loss = lossSum / accum;
    const h: TrainResult['history'][number] = { step, loss };
    const doEval = o.dev && o.dev.length && (step % evalEvery === 0 || step === totalSteps);
    if (doEval) {
      const m = await ev.evaluate(o.dev!);
      h.eval = m;
      const v = m[metric.name];
      if (!best || (metric.higher ? v > best.value : v < best.value)) {
        best = { value: v, snap: store.snapshot(), metrics: m, step };
        bad = 0;
      } else bad++;
    }
    history.push(h);
    o.onProgress?.({ step, totalSteps, loss, lr: opt.opts.lr * lrf, tokens, elapsedMs: Date.now() - t0, eval: h.eval });
    if (doEval) saveCheckpoint();
    if (doEval && o.patience !== undefined && bad >= o.patience) break;
    if (o.stopAtStep !== undefined && step >= o.stopAtStep) break;
  }
  // the end of training always evaluates (an interruption by stopAtStep is not an end: the run resumes)
  const interrupted = o.stopAtStep !== undefined && step >= o.stopAtStep && step < totalSteps;
  const last = history[history.length - 1];
  if (o.dev?.length && last && !last.eval && !interrupted) {
    const m = await ev.evaluate(o.dev);
    last.eval = m;
    const v = m[metric.name];
    if (!best || (metric.higher ? v > best.value : v < best.value)) best = { value: v, snap: store.snapshot(), metrics: m, step };
    saveCheckpoint();
  }
  const keep = o.keep ?? (best ? 'best' : 'last');
  if (keep === 'best' && !best) throw new RangeError("'keep: best' needs a dev set ('dev') to choose the best evaluation");
  let metrics: Metrics;
  let saved: TrainResult['saved'];
  if (keep === 'best') {
    store.restore(best!.snap);
    metrics = { ...best!.metrics };
    saved = { which: 'best', step: best!.step, of: step };
  } else {
    metrics = last?.eval ? { ...last.eval } : o.dev?.length ? await ev.evaluate(o.dev) : {};
    saved = { which: 'last', step, of: step };
  }
  const trainableParams = countTrainable(store, tg.params);

  const { manifest, tensors } = packagePhase({
    base,
    params: tg.params,
    store,
    initial,
    trained: plan.modules[plan.modules.length - 1],
    id: ctx.id,
    version: o.version,
    language: o.language,
    metrics,
    description: `${settings.what}; trained by modhub for ${task} (${step} steps; saved: ${savedText(saved)})`,
    training: { steps: step, saved: saved.which, saved_step: saved.step, trainable_params: trainableParams, ...(before ? { dev_before: before } : {}) },
  });
  return {
    manifest,
    tensors,
    metrics,
    before,
    history,
    steps: step,
    saved,
    trainableParams,
    predict: (examples) => ev.predict(examples),
    release: async () => {
      await stepSess.release();
      await evalSess.release();
    },
  };
}
