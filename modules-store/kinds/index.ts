/**
 * The registry of module kinds: one line per kind. The manifest schema (a discriminated union over these),
 * the validator, the engine loader, the initialiser and the trainer all read their rules from here.
 * Adding a kind: write `./<kind>.ts` exporting a KindDescriptor, add its line below (docs/adding-a-module-kind.md).
 */
import { bottleneck } from './bottleneck';
import { diff } from './diff';
import { fusion } from './fusion';
import { ia3 } from './ia3';
import { lora } from './lora';
import type { KindDescriptor, LoadedCommon } from './types';

export const KINDS = {
  bottleneck,
  lora,
  diff,
  fusion,
  ia3,
} as const;

export type KindMap = typeof KINDS;
export type ModuleKind = keyof KindMap;
export const MODULE_KINDS = Object.keys(KINDS) as ModuleKind[];

/** The engine layout of each kind, as its descriptor's `load` returns it. */
export type LayoutOf<K extends ModuleKind> = ReturnType<KindMap[K]['load']>;
/** A loaded module of any kind (what the engine's module cache holds). */
export type EngineModule = { [K in ModuleKind]: LoadedCommon & LayoutOf<K> }[ModuleKind];

/** The descriptor of `kind` (typed loosely, for code that dispatches on a manifest's kind). */
export function kindOf(kind: string): KindDescriptor {
  const d = (KINDS as Record<string, KindDescriptor>)[kind];
  if (!d) throw new RangeError(`unknown module kind '${kind}': expected one of ${MODULE_KINDS.join(', ')}`);
  return d;
}

export * from './types';
export * from './heads';
export * from './bottleneck';
export * from './lora';
export * from './diff';
export * from './fusion';
export * from './ia3';
