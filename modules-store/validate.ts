/**
 * Package validation: the exact tensor names, shapes and dtypes docs/module-format.md prescribes, as each
 * kind's descriptor (modules-store/kinds) derives them from the manifest's config and base dims, plus the
 * shared head tensors. Reads only the safetensors header (and whatever a kind's structural check needs).
 * Example: `validateWeights(manifest, weightsBuffer)` throws StoreError('INVALID_WEIGHTS', ...) naming the tensor.
 */
import { parseSafetensorsHeader, type SafetensorsHeader } from './safetensors';
import { StoreError } from './errors';
import type { Manifest } from './manifest';
import { expectedHead, isHeadTensor, kindOf, type BaseDims, type Expected } from './kinds';

export { resolveBottleneckConfig, bottleneckSize, type ResolvedBottleneckConfig } from './kinds/bottleneck';

function dimsOf(m: Manifest, ffnSize?: number): BaseDims {
  return { hidden: m.base.hidden_size, layers: m.base.num_layers, vocab: m.base.vocab_size, ffn: m.base.intermediate_size ?? ffnSize };
}

/**
 * The exact tensors a package of this manifest must hold (names → shape and accepted dtypes), head included;
 * for kinds whose names follow the base checkpoint (diff) only the head's. Kinds with FFN-sized tensors need
 * the FFN size: `base.intermediate_size` when given, else `ffnSize`.
 */
export function expectedTensors(m: Manifest, ffnSize?: number): Map<string, Expected> {
  const dims = dimsOf(m, ffnSize);
  const own = kindOf(m.kind).expected(m.config, dims) ?? new Map<string, Expected>();
  for (const [name, e] of expectedHead(m.head, dims)) own.set(name, e);
  return own;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function fmt(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

function listSome(names: string[]): string {
  const shown = names.slice(0, 8).map((n) => `'${n}'`).join(', ');
  return names.length > 8 ? `${shown} and ${names.length - 8} more` : shown;
}

function checkEntry(h: SafetensorsHeader, name: string, want: Expected): void {
  const e = h.entries.get(name)!;
  if (!sameShape(e.shape, want.shape)) throw new StoreError('INVALID_WEIGHTS', `tensor '${name}' has shape ${fmt(e.shape)}, expected ${fmt(want.shape)}`);
  if (!want.dtypes.includes(e.dtype)) throw new StoreError('INVALID_WEIGHTS', `tensor '${name}' has dtype ${e.dtype}, expected one of ${want.dtypes.join('/')}`);
}

/**
 * Validates `weights.safetensors` against the manifest: header well-formed, exactly the expected tensor names
 * (missing and unexpected ones are both named), shapes and dtypes per docs/module-format.md.
 */
export function validateWeights(m: Manifest, buf: Buffer): void {
  let h: SafetensorsHeader;
  try {
    h = parseSafetensorsHeader(buf);
  } catch (e) {
    throw new StoreError('INVALID_WEIGHTS', `weights.safetensors: ${(e as Error).message}`);
  }
  if (m.head?.type === 'classification' || m.head?.type === 'token_classification') {
    if (m.labels.length > 0 && m.labels.length !== m.head.num_labels) {
      throw new StoreError('INVALID_MANIFEST', `labels has ${m.labels.length} entries, but head.num_labels is ${m.head.num_labels}`);
    }
  }
  const kind = kindOf(m.kind);
  const dims = dimsOf(m, m.base.intermediate_size ?? kind.ffnFromTensors?.(m.config, h));
  const own = kind.expected(m.config, dims);
  const head = expectedHead(m.head, dims);
  if (own === null) {
    // Names follow the base checkpoint: check the head exactly, the rest structurally.
    for (const [name, want] of head) {
      if (!h.entries.has(name)) throw new StoreError('INVALID_WEIGHTS', `weights.safetensors lacks head tensor '${name}' ${fmt(want.shape)}`);
      checkEntry(h, name, want);
    }
    for (const name of h.entries.keys()) {
      if (isHeadTensor(name) && !head.has(name)) throw new StoreError('INVALID_WEIGHTS', `unexpected head tensor '${name}' for head ${JSON.stringify(m.head)}`);
    }
    kind.checkWeights?.(m.config, buf, h);
    return;
  }
  const exp = new Map([...own, ...head]);
  const missing = [...exp.keys()].filter((n) => !h.entries.has(n));
  if (missing.length) throw new StoreError('INVALID_WEIGHTS', `weights.safetensors lacks ${missing.length} tensor(s) the ${m.kind} config requires: ${listSome(missing)}`);
  const extra = [...h.entries.keys()].filter((n) => !exp.has(n));
  if (extra.length) throw new StoreError('INVALID_WEIGHTS', `weights.safetensors holds ${extra.length} tensor(s) the ${m.kind} config does not define: ${listSome(extra)}`);
  for (const [name, want] of exp) checkEntry(h, name, want);
  kind.checkWeights?.(m.config, buf, h);
}
