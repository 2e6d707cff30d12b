/**
 * Pools of the output heads: per row an index into a zero entry plus each distinct module head (classification
 * with or without its dense layer, token classification, masked-LM), labels padded to the widest head. The
 * masked-LM pool's entry 0 is the base checkpoint's own MLM head with the row group's sparse diffs applied, for
 * rows whose modules bring none.
 */
import type { Base } from '../model/base';
import type { RowPlan } from '../model/composition';
import type { BaseConfig } from '../model/config';
import { POOL, type Variant } from '../model/encoder-graph';
import { ModuleError, type HeadWeights } from '../model/modules';
import type { DiffSet } from './diff-weights';
import type { EffectiveParam, Pools } from './pools';
import type { PoolSpaces } from './pool-space';
import type { HostTensor } from './session';

/** Stands in for a row that has only a masked-LM head (no prediction parts). */
const ZERO_HEAD = { config: { type: 'masked_lm' }, labels: [] } as unknown as HeadWeights;

/** An MLM head in engine layout (dense weight [in, out]). */
export type MlmHead = NonNullable<HeadWeights['mlm']>;

/**
 * The base checkpoint's MLM head for a row group, as its sparse diffs change it (θ₀+Σδ, like the encoder's
 * parameters): `train --method full --task mlm` writes diffs on these. The undiffed head is built once.
 */
export class BaseMlmHead {
  private plain: MlmHead | null = null;

  constructor(
    private readonly base: Base,
    private readonly effective: EffectiveParam,
  ) {}

  get(diffs: DiffSet): MlmHead {
    if (!diffs.length && this.plain) return this.plain;
    const param = (n: string) => {
      if (!this.base.weights.has(n)) throw new ModuleError('INVALID_HEAD', `masked-LM output needs an MLM head: the base checkpoint has none (no '${n}') and the composition brings no module with a masked_lm head; add one (e.g. a language adapter trained with --task mlm)`);
      return this.effective(n, diffs);
    };
    const head = {
      denseT: param('mlm.dense.weight'), // engine layout: [in, out] (isTransposedLinear)
      denseB: param('mlm.dense.bias'),
      lnG: param('mlm.ln.weight'),
      lnB: param('mlm.ln.bias'),
      bias: param('mlm.decoder.bias'),
    };
    if (!diffs.length) this.plain = head;
    return head;
  }
}

/**
 * Head pools for the heads the variant has. Without masked-LM output the heads sit in the resident 'head' space
 * (pool-space.ts), one slot per (head, masked-LM head) pair, written once; with it (its entry 0 depends on the
 * row group's diffs) they are built for the batch.
 */
export function headPools(cfg: BaseConfig, v: Variant, plans: RowPlan[], baseMlm: BaseMlmHead, spaces: PoolSpaces): Pools {
  const D = cfg.hiddenSize;
  const V = cfg.vocabSize;
  const pools: Pools = {};
  // Entry 0 is the zero head (with the base's own MLM head); then each distinct (head, masked-LM head) pair of the
  // rows, the prediction parts from the row's head and the masked-LM parts from its MLM head (or the base's).
  const entryKey = (p: RowPlan) => `${p.head?.key ?? ''}|${p.mlmHead?.key ?? ''}`;
  const distinct = [...new Map(plans.filter((p) => p.head || p.mlmHead).map((p) => [entryKey(p), p])).entries()];
  const heads = distinct.map(([k, p]) => [k, p.head?.weights ?? ZERO_HEAD] as const);
  const labels = (type: string) => Math.max(1, ...heads.map(([, h]) => (h.config.type === type && 'num_labels' in h.config ? h.config.num_labels : 0)));
  if (!v.heads.mlm) {
    const space = spaces.space('head', 1, [
      { name: 'cls_dense_w', dims: [D, D] },
      { name: 'cls_dense_b', dims: [1, D] },
      { name: 'cls_out_w', dims: [D, labels('classification')] },
      { name: 'cls_out_b', dims: [1, labels('classification')] },
      { name: 'tok_out_w', dims: [D, labels('token_classification')] },
      { name: 'tok_out_b', dims: [1, labels('token_classification')] },
    ]);
    const slotOf = new Map<string, number>();
    for (const [k, h] of heads)
      slotOf.set(
        k,
        space.slot(k, (slot) => {
          const type = h.config.type;
          if (type !== 'classification' && type !== 'token_classification') return;
          const pre = type === 'classification' ? 'cls' : 'tok';
          const C = space.dims(`${pre}_out_b`)[1];
          const c = h.config.num_labels;
          if (type === 'classification' && h.clsDenseT) {
            slot.part('cls_dense_w').set(h.clsDenseT);
            slot.part('cls_dense_b').set(h.clsDenseB!);
          }
          const outW = slot.part(`${pre}_out_w`);
          for (let d = 0; d < D; d++) outW.set(h.outT!.subarray(d * c, (d + 1) * c), d * C);
          slot.part(`${pre}_out_b`).set(h.outB!);
        }),
      );
    pools[POOL.head('idx')] = { type: 'int64', dims: [plans.length], data: BigInt64Array.from(plans.map((p) => BigInt(p.head || p.mlmHead ? slotOf.get(entryKey(p))! : 0))) };
    const parts = [...(v.heads.cls ? ['cls_dense_w', 'cls_dense_b', 'cls_out_w', 'cls_out_b'] : []), ...(v.heads.tok ? ['tok_out_w', 'tok_out_b'] : [])];
    for (const part of parts) pools[POOL.head(part)] = space.feed(part);
    if (v.heads.cls && v.clsDense === 'mixed') pools[POOL.head('cls_dense')] = clsDenseFlags(plans);
    return pools;
  }
  const P = heads.length + 1;
  const entryOf = plans.map((p) => (p.head || p.mlmHead ? distinct.findIndex(([k]) => k === entryKey(p)) + 1 : 0));
  pools[POOL.head('idx')] = { type: 'int64', dims: [plans.length], data: BigInt64Array.from(entryOf.map(BigInt)) };
  if (v.heads.cls) {
    const C = labels('classification');
    const dW = new Float32Array(P * D * D);
    const dB = new Float32Array(P * D);
    const oW = new Float32Array(P * D * C);
    const oB = new Float32Array(P * C);
    heads.forEach(([, h], i) => {
      if (h.config.type !== 'classification') return;
      const e = i + 1;
      const c = h.config.num_labels;
      if (h.clsDenseT) {
        dW.set(h.clsDenseT, e * D * D);
        dB.set(h.clsDenseB!, e * D);
      }
      for (let d = 0; d < D; d++) oW.set(h.outT!.subarray(d * c, (d + 1) * c), (e * D + d) * C);
      oB.set(h.outB!, e * C);
    });
    pools[POOL.head('cls_dense_w')] = { type: 'float32', dims: [P, D, D], data: dW };
    pools[POOL.head('cls_dense_b')] = { type: 'float32', dims: [P, 1, D], data: dB };
    pools[POOL.head('cls_out_w')] = { type: 'float32', dims: [P, D, C], data: oW };
    pools[POOL.head('cls_out_b')] = { type: 'float32', dims: [P, 1, C], data: oB };
    if (v.clsDense === 'mixed') pools[POOL.head('cls_dense')] = clsDenseFlags(plans);
  }
  if (v.heads.tok) {
    const C = labels('token_classification');
    const oW = new Float32Array(P * D * C);
    const oB = new Float32Array(P * C);
    heads.forEach(([, h], i) => {
      if (h.config.type !== 'token_classification') return;
      const e = i + 1;
      const c = h.config.num_labels;
      for (let d = 0; d < D; d++) oW.set(h.outT!.subarray(d * c, (d + 1) * c), (e * D + d) * C);
      oB.set(h.outB!, e * C);
    });
    pools[POOL.head('tok_out_w')] = { type: 'float32', dims: [P, D, C], data: oW };
    pools[POOL.head('tok_out_b')] = { type: 'float32', dims: [P, 1, C], data: oB };
  }
  if (v.heads.mlm) {
    const dW = new Float32Array(P * D * D);
    const dB = new Float32Array(P * D);
    const lg = new Float32Array(P * D);
    const lb = new Float32Array(P * D);
    const bias = new Float32Array(P * V);
    // The base's own head only where some row has no MLM head of its own: a base without one serves modules that bring theirs.
    const needsBase = plans.some((p) => !p.mlmHead);
    const baseHead = needsBase ? baseMlm.get(plans[0].diffs) : null; // every row of a group has the same diffs
    for (let e = 0; e < P; e++) {
      const src = e === 0 ? baseHead : (distinct[e - 1][1].mlmHead?.weights.mlm ?? baseHead);
      if (!src) continue; // an entry no row uses stays zero
      dW.set(src.denseT, e * D * D);
      dB.set(src.denseB, e * D);
      lg.set(src.lnG, e * D);
      lb.set(src.lnB, e * D);
      bias.set(src.bias, e * V);
    }
    pools[POOL.head('mlm_dense_w')] = { type: 'float32', dims: [P, D, D], data: dW };
    pools[POOL.head('mlm_dense_b')] = { type: 'float32', dims: [P, 1, D], data: dB };
    pools[POOL.head('mlm_ln_g')] = { type: 'float32', dims: [P, 1, D], data: lg };
    pools[POOL.head('mlm_ln_b')] = { type: 'float32', dims: [P, 1, D], data: lb };
    pools[POOL.head('mlm_bias')] = { type: 'float32', dims: [P, 1, V], data: bias };
  }
  return pools;
}

/** Per row: 1 where the row's classification head has its dense layer. */
function clsDenseFlags(plans: RowPlan[]): HostTensor {
  return { type: 'float32', dims: [plans.length], data: Float32Array.from(plans.map((p) => +!!p.head?.weights.clsDenseT)) };
}
