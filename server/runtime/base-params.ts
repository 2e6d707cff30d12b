/**
 * The frozen base's parameters in engine layout, and how a session graph reads them.
 *
 * Engine layout: the weights `isTransposedLinear` names are transposed once to [in, out]; everything else keeps
 * the checkpoint's shape. A graph takes them as prepacked initializers (the plain sessions) or as graph inputs
 * `w.<name>` (the "weights as inputs" sessions that rows with sparse diffs run on, see diff-weights.ts).
 * Example:
 *   const params = new BaseParams(base);
 *   buildEncoderGraph(base.config, variant, (g) => params.provider(g, 'init'));
 */
import type { Base } from '../model/base';
import type { ParamProvider } from '../model/encoder-graph';
import type { GraphBuilder, Value } from '../model/graph/builder';
import { transpose } from '../model/modules';
import { isTransposedLinear, type F32Tensor } from '../model/weights';

/**
 * How a session takes the base's weights: prepacked initializers ('init'), or graph inputs `w.<name>` for diff
 * groups, whose sets change them. MLAS repacks an input weight on every call; 'inputs-left' multiplies each encoder
 * Linear the other way round, (W · xᵀ)ᵀ, so that what gets packed is the group's few tokens. The engine picks by
 * the group's token count (Engine.runGroup; figures in the README, Design decisions: sparse diffs).
 */
export type BaseWeights = 'init' | 'inputs' | 'inputs-left';

export interface BaseParam {
  dims: number[];
  data: Float32Array;
}

export class BaseParams {
  /** Names stored transposed here (a Set: looked up per parameter on every diff-group run). */
  private readonly transposed = new Set<string>();
  private readonly params = new Map<string, BaseParam>();

  constructor(private readonly base: Base) {
    for (const [name, t] of base.weights) {
      if (isTransposedLinear(name)) {
        this.transposed.add(name);
        this.params.set(name, { dims: [t.shape[1], t.shape[0]], data: transpose(t.data, t.shape[0], t.shape[1]) });
      } else this.params.set(name, { dims: t.shape, data: t.data });
    }
  }

  /** A parameter in engine layout, or undefined when the base has none of that name. */
  get(name: string): BaseParam | undefined {
    return this.params.get(name);
  }

  has(name: string): boolean {
    return this.params.has(name);
  }

  /** Whether `name` is kept transposed ([in, out]) here, its checkpoint tensor being [out, in]. */
  isTransposed(name: string): boolean {
    return this.transposed.has(name);
  }

  /** The checkpoint's own tensor ([out, in] for transposed weights) of a parameter the base has. */
  checkpoint(name: string): F32Tensor {
    return this.base.weights.get(name)!;
  }

  /** Every parameter in engine layout, in the checkpoint's order. */
  entries(): IterableIterator<[string, BaseParam]> {
    return this.params.entries();
  }

  /**
   * Base parameters as initializers (prepacked once: 'init') or as graph inputs `w.<name>` (diff groups: 'inputs',
   * or 'inputs-left' for groups of few tokens, see BaseWeights).
   */
  provider(g: GraphBuilder, weights: BaseWeights): ParamProvider {
    const made = new Map<string, Value>();
    /** The graph input `w.<name>`, once; a transposed weight keeps the checkpoint's [out, in] layout there. */
    const input = (name: string, p: BaseParam): Value => {
      const key = `in:${name}`;
      const v = made.get(key) ?? g.input(`w.${name}`, 'float32', this.transposed.has(name) ? [p.dims[1], p.dims[0]] : p.dims);
      made.set(key, v);
      return v;
    };
    const param = (name: string): BaseParam => {
      const p = this.params.get(name);
      if (!p) throw new RangeError(`base has no parameter '${name}'`);
      return p;
    };
    const get = (name: string): Value => {
      const hit = made.get(name);
      if (hit) return hit;
      const p = param(name);
      let v: Value;
      if (weights === 'init') v = g.initializer(name, { type: 'float32', dims: p.dims, data: p.data });
      // Linear weights fed as inputs keep the checkpoint's [out, in] layout: onnxruntime fuses the Transpose into
      // the MatMul (transB), whose per-call packing of an input weight costs half the [in, out] one's (measured
      // 128x768x3072: +9% vs +19% over a prepacked initializer).
      else if (this.transposed.has(name)) v = g.transpose(input(name, p), [1, 0]);
      else v = input(name, p);
      made.set(name, v);
      return v;
    };
    let rows: Value | null = null;
    const outShapes = new Map<number, Value>();
    const product =
      weights === 'inputs-left'
        ? (x: Value, stem: string): Value => {
            // (W · xᵀ)ᵀ: MLAS packs the right operand on every call; here that is the group's few tokens
            const name = `${stem}.weight`;
            const p = param(name);
            if (!this.transposed.has(name)) throw new RangeError(`'${name}' is not a Linear weight`);
            const out = p.dims[1];
            const yT = g.matmul(input(name, p), g.transpose(g.flatten(x, 2), [1, 0])); // [out, B·T]
            rows ??= g.slice(g.shapeOf(x), 0, 0, 2); // [B, T]
            const shape = outShapes.get(out) ?? g.concat([rows, g.constInt64([out], [1])], 0);
            outShapes.set(out, shape);
            return g.node('Reshape', [g.transpose(yT, [1, 0]), shape], {}, [{ type: 'float32', shape: [x.shape[0], x.shape[1], out] }])[0];
          }
        : undefined;
    return {
      ...(product ? { product } : {}),
      linearT: (stem) => {
        if (stem === 'mlm.decoder') {
          const untied = this.params.has('mlm.decoder.weight');
          const key = untied ? 'mlm.decoder.weight' : 'embeddings.word';
          const t = made.get(`T:${key}`) ?? g.transpose(get(key), [1, 0]);
          made.set(`T:${key}`, t);
          return t;
        }
        return get(`${stem}.weight`);
      },
      tensor: get,
    };
  }
}
