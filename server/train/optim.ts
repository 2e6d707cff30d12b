/**
 * AdamW (decoupled weight decay, bias correction; Loshchilov & Hutter, as torch.optim.AdamW), linear warmup +
 * linear decay, global-norm gradient clipping and gradient accumulation. The element-wise work runs in small
 * onnxruntime graphs over flat Float32Arrays (one run per parameter group per step), never in JS loops.
 *
 * Parameters, gradients and moments live in one flat buffer per group (`ParamStore`); each named tensor is a
 * view into it, so the training session can be fed the views and the optimiser updates the whole group at once.
 * Example:
 *   const store = new ParamStore([{ name: 'w', dims: [4], data, decay: true }]);
 *   const opt = await AdamW.create(store, { lr: 1e-3 });
 *   store.addGrad('w', grad); await opt.step();
 */
import { GraphBuilder } from '../model/graph/builder';
import { Session, type HostTensor, type OutputBuffers } from '../runtime/session';

export interface ParamSpec {
  name: string;
  dims: number[];
  data: Float32Array;
  /** Apply weight decay (false for biases and LayerNorm weights, as HF's Trainer). */
  decay: boolean;
  /** Optional 0/1 mask of elements allowed to change (LT-SFT phase 2). */
  mask?: Float32Array;
}

interface Group {
  params: Float32Array;
  grads: Float32Array;
  m: Float32Array;
  v: Float32Array;
  mask: Float32Array | null;
  decay: boolean;
}

/** Trainable tensors in two flat groups (decay / no decay), with gradient accumulators and Adam moments. */
export class ParamStore {
  readonly views = new Map<string, { dims: number[]; data: Float32Array; grad: Float32Array; group: number; offset: number }>();
  readonly groups: Group[] = [];
  readonly size: number;

  constructor(specs: ParamSpec[]) {
    const hasMask = specs.some((s) => s.mask);
    for (const decay of [true, false]) {
      const mine = specs.filter((s) => s.decay === decay);
      const n = mine.reduce((a, s) => a + s.data.length, 0);
      const g: Group = { params: new Float32Array(n), grads: new Float32Array(n), m: new Float32Array(n), v: new Float32Array(n), mask: hasMask ? new Float32Array(n).fill(1) : null, decay };
      // (a group without any mask runs the unmasked update graph)
      let off = 0;
      for (const s of mine) {
        if (this.views.has(s.name)) throw new RangeError(`duplicate parameter '${s.name}'`);
        g.params.set(s.data, off);
        if (s.mask && g.mask) g.mask.set(s.mask, off);
        this.views.set(s.name, { dims: s.dims, data: g.params.subarray(off, off + s.data.length), grad: g.grads.subarray(off, off + s.data.length), group: this.groups.length, offset: off });
        off += s.data.length;
      }
      this.groups.push(g);
    }
    this.size = this.groups.reduce((a, g) => a + g.params.length, 0);
  }

  names(): string[] {
    return [...this.views.keys()];
  }

  get(name: string): Float32Array {
    const v = this.views.get(name);
    if (!v) throw new RangeError(`no parameter '${name}'`);
    return v.data;
  }

  /** Host tensors of the current values (views, no copy). */
  feeds(): Record<string, HostTensor> {
    const out: Record<string, HostTensor> = {};
    for (const [name, v] of this.views) out[name] = { type: 'float32', dims: v.dims, data: v.data };
    return out;
  }

  /** The gradient accumulators as output buffers for a training run (`gradNames[k]` is `params[k]`'s gradient). */
  gradBuffers(params: readonly string[], gradNames: readonly string[]): OutputBuffers {
    const out: OutputBuffers = {};
    params.forEach((p, k) => {
      const v = this.views.get(p);
      if (!v) throw new RangeError(`no parameter '${p}'`);
      out[gradNames[k]] = { type: 'float32', dims: v.dims, data: v.grad };
    });
    return out;
  }

  zeroGrad(): void {
    for (const g of this.groups) g.grads.fill(0);
  }

  /** Sets the masks (1 = trainable element) of named tensors; others keep theirs. */
  setMask(name: string, mask: Float32Array): void {
    const v = this.views.get(name)!;
    const g = this.groups[v.group];
    if (!g.mask) g.mask = new Float32Array(g.params.length).fill(1);
    g.mask.set(mask, v.offset);
  }

  /** Snapshot of all parameter values (for best-checkpoint selection). */
  snapshot(): Float32Array[] {
    return this.groups.map((g) => g.params.slice());
  }

  restore(s: Float32Array[]): void {
    s.forEach((p, i) => this.groups[i].params.set(p));
  }
}

/** Element-wise helper graphs (accumulate, squared norm, AdamW) shared by all optimisers of a process. */
class Kernels {
  private static inst: Promise<Kernels> | null = null;
  private constructor(
    readonly acc: Session,
    readonly sumsq: Session,
    readonly adamw: Session,
    readonly adamwMasked: Session,
  ) {}

  static get(): Promise<Kernels> {
    return (Kernels.inst ??= Kernels.build());
  }

  private static async build(): Promise<Kernels> {
    // acc: out = a + b
    const ga = new GraphBuilder('acc');
    ga.output(ga.add(ga.input('a', 'float32', ['N']), ga.input('b', 'float32', ['N'])), 'out');
    // sumsq: s = sum(g * g)
    const gs = new GraphBuilder('sumsq');
    const x = gs.input('g', 'float32', ['N']);
    gs.output(gs.reduce('ReduceSum', gs.mul(x, x), [0], false), 's');
    // adamw, with the scalar algebra done in JS so the graph is 14 element-wise passes (the update is a hot path):
    //   m = b1 m + c1 g;  v = b2 v + c2 g²;  p = p·decay − step · m / (sqrt(v)·k + eps)
    //   c1 = (1−b1)·s, c2 = (1−b2)·s² (s = clip / accumulation), decay = 1 − lr·wd, step = lr / (1 − b1^t),
    //   k = 1 / sqrt(1 − b2^t). The masked variant multiplies g and the whole parameter change by the mask.
    const adam = (masked: boolean) => {
      const g = new GraphBuilder(masked ? 'adamw_masked' : 'adamw');
      const p = g.input('p', 'float32', ['N']);
      let gr = g.input('g', 'float32', ['N']);
      const m = g.input('m', 'float32', ['N']);
      const v = g.input('v', 'float32', ['N']);
      const mask = masked ? g.input('mask', 'float32', ['N']) : null;
      const sc = g.input('scalars', 'float32', [8]); // b1, b2, c1, c2, decay, step, k, eps
      const s = (i: number) => g.squeeze(g.slice(sc, 0, i, i + 1), [0]);
      const [b1, b2, c1, c2, decay, step, k, eps] = [0, 1, 2, 3, 4, 5, 6, 7].map(s);
      if (mask) gr = g.mul(gr, mask);
      const m1 = g.add(g.mul(b1, m), g.mul(c1, gr));
      const v1 = g.add(g.mul(b2, v), g.mul(c2, g.mul(gr, gr)));
      const upd = g.div(g.mul(step, m1), g.add(g.mul(g.unary('Sqrt', v1), k), eps));
      let p1 = g.sub(g.mul(p, decay), upd);
      if (mask) p1 = g.add(p, g.mul(g.sub(p1, p), mask));
      g.output(p1, 'p_out');
      g.output(m1, 'm_out');
      g.output(v1, 'v_out');
      return g.toBytes();
    };
    const [acc, sumsq, adamw, adamwMasked] = await Promise.all([Session.create(ga.toBytes()), Session.create(gs.toBytes()), Session.create(adam(false)), Session.create(adam(true))]);
    return new Kernels(acc, sumsq, adamw, adamwMasked);
  }
}

const f32 = (data: Float32Array): HostTensor => ({ type: 'float32', dims: [data.length], data });

/**
 * Element-wise optimiser work runs over chunks of this many elements: each chunk's 14 passes stay in cache
 * instead of streaming 110M-element arrays through memory 14 times (BERT-base full fine-tuning; see
 * bench/train.ts), and results are written in place into the caller's arrays.
 */
const CHUNK = 1 << 18;

function* chunks(n: number): Generator<[number, number]> {
  for (let i = 0; i < n; i += CHUNK) yield [i, Math.min(n, i + CHUNK)];
}

/** Adds `grad` into the accumulator `into` (same length), in onnxruntime, in place. */
export async function accumulate(into: Float32Array, grad: Float32Array): Promise<void> {
  if (into.length !== grad.length) throw new RangeError(`accumulate: ${into.length} vs ${grad.length} elements`);
  const k = await Kernels.get();
  for (const [a, b] of chunks(into.length)) {
    const acc = f32(into.subarray(a, b));
    await k.acc.run({ a: acc, b: f32(grad.subarray(a, b)) }, ['out'], { out: acc });
  }
}

export interface AdamWOptions {
  /** default 1e-4 */
  lr?: number;
  /** default 0.01 */
  weightDecay?: number;
  /** default 0.9, 0.999 */
  betas?: [number, number];
  /** default 1e-8 */
  eps?: number;
  /** Global-norm clipping threshold (default 1.0; 0 = off). */
  maxGradNorm?: number;
}

/** Linear warmup from 0 to `lr` over `warmup` steps, then linear decay to 0 at `total` (HF `get_linear_schedule_with_warmup`). */
export function linearSchedule(step: number, warmup: number, total: number): number {
  if (step < warmup) return (step + 1) / Math.max(1, warmup);
  return Math.max(0, (total - step) / Math.max(1, total - warmup));
}

export class AdamW {
  t = 0;
  private constructor(
    readonly store: ParamStore,
    readonly opts: Required<AdamWOptions>,
    private readonly k: Kernels,
  ) {}

  static async create(store: ParamStore, opts: AdamWOptions = {}): Promise<AdamW> {
    const o: Required<AdamWOptions> = { lr: opts.lr ?? 1e-4, weightDecay: opts.weightDecay ?? 0.01, betas: opts.betas ?? [0.9, 0.999], eps: opts.eps ?? 1e-8, maxGradNorm: opts.maxGradNorm ?? 1.0 };
    if (!(o.lr > 0)) throw new RangeError(`'lr' must be > 0, got ${o.lr}`);
    return new AdamW(store, o, await Kernels.get());
  }

  /** Global L2 norm of the accumulated gradients (after dividing by `gradDivisor`). */
  async gradNorm(gradDivisor = 1): Promise<number> {
    let s = 0;
    for (const g of this.store.groups) {
      for (const [a, b] of chunks(g.grads.length)) {
        const r = await this.k.sumsq.run({ g: f32(g.grads.subarray(a, b)) }, ['s']);
        s += (r.s.data as Float32Array)[0];
      }
    }
    return Math.sqrt(s) / gradDivisor;
  }

  /**
   * One update from the accumulated gradients, divided by `gradDivisor` (the accumulation steps), clipped to
   * `maxGradNorm`, with learning rate `lr * lrFactor`. Returns the pre-clip gradient norm. Zeroes the gradients.
   */
  async step(lrFactor = 1, gradDivisor = 1): Promise<number> {
    this.t++;
    const norm = await this.gradNorm(gradDivisor);
    const clip = this.opts.maxGradNorm > 0 && norm > this.opts.maxGradNorm ? this.opts.maxGradNorm / (norm + 1e-6) : 1;
    const [b1, b2] = this.opts.betas;
    const lr = this.opts.lr * lrFactor;
    for (const g of this.store.groups) {
      if (!g.params.length) continue;
      const sc = clip / gradDivisor;
      const wd = g.decay ? this.opts.weightDecay : 0;
      const scalars = Float32Array.from([b1, b2, (1 - b1) * sc, (1 - b2) * sc * sc, 1 - lr * wd, lr / (1 - b1 ** this.t), 1 / Math.sqrt(1 - b2 ** this.t), this.opts.eps]);
      const kernel = g.mask ? this.k.adamwMasked : this.k.adamw;
      for (const [a, b] of chunks(g.params.length)) {
        const p = f32(g.params.subarray(a, b));
        const m = f32(g.m.subarray(a, b));
        const v = f32(g.v.subarray(a, b));
        const feeds: Record<string, HostTensor> = { p, g: f32(g.grads.subarray(a, b)), m, v, scalars: { type: 'float32', dims: [8], data: scalars } };
        if (g.mask) feeds.mask = f32(g.mask.subarray(a, b));
        // each output is a function of the same element of the inputs: safe to write over them
        await kernel.run(feeds, ['p_out', 'm_out', 'v_out'], { p_out: p, m_out: m, v_out: v });
      }
    }
    this.store.zeroGrad();
    return norm;
  }
}
