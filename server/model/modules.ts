/**
 * Loads a module package (manifest + tensors, docs/module-format.md) into the engine's layout: checks it was
 * made for this base, then hands the tensors to its kind's descriptor (modules-store/kinds) and the shared head
 * loader. Done once per module load; the result is what the module cache holds and what per-batch pools are
 * copied from. The engine-layout types live with the descriptors and are re-exported here.
 */
import type { Manifest } from '../../modules-store/manifest';
import { ModuleError } from '../../modules-store/errors';
import { kindOf, loadHead, TensorReader, type EngineModule } from '../../modules-store/kinds';
import type { Tensor } from '../../modules-store/safetensors';
import type { BaseConfig } from './config';
import { hfToCanonical } from './weights';

export { ModuleError };
export { transpose, type EngineModule, type HeadWeights, type AdapterSiteWeights, type InvertibleWeights } from '../../modules-store/kinds';
export type { AdapterModule, LoraModule, DiffModule, FusionModule, Ia3Module } from '../../modules-store/kinds';
export { LORA_TARGETS } from '../../modules-store/kinds';

/** Checks the module was made for this base (family, dims and weight fingerprint). */
export function checkBase(manifest: Manifest, cfg: BaseConfig, fingerprint: string): void {
  const b = manifest.base;
  const id = `${manifest.id}@${manifest.version}`;
  if (b.family !== cfg.family) throw new ModuleError('INCOMPATIBLE_BASE', `module '${id}' was trained for a ${b.family} base, but this server runs a ${cfg.family} base`);
  if (b.fingerprint !== fingerprint) {
    throw new ModuleError('INCOMPATIBLE_BASE', `module '${id}' was trained for base ${b.fingerprint}, but this server runs base ${fingerprint}`);
  }
  if (b.hidden_size !== cfg.hiddenSize || b.num_layers !== cfg.numLayers) {
    throw new ModuleError('INCOMPATIBLE_BASE', `module '${id}' expects hidden_size ${b.hidden_size} / ${b.num_layers} layers, the base has ${cfg.hiddenSize} / ${cfg.numLayers}`);
  }
}

/** Shape of a canonical parameter in HF layout (for index remapping). */
export type ShapeOf = (canonical: string) => number[];

/** Loads one module package into engine layout. */
export function loadEngineModule(manifest: Manifest, tensors: Map<string, Tensor>, cfg: BaseConfig, fingerprint: string, shapeOf: ShapeOf): EngineModule {
  checkBase(manifest, cfg, fingerprint);
  const id = `${manifest.id}@${manifest.version}`;
  const reader = new TensorReader(id, tensors);
  const dims = { hidden: cfg.hiddenSize, layers: cfg.numLayers, vocab: cfg.vocabSize, ffn: cfg.intermediateSize };
  let bytes = 0;
  for (const x of tensors.values()) bytes += x.data.byteLength;
  const head = loadHead(manifest.head, manifest.labels, reader, dims);
  const layout = kindOf(manifest.kind).load(manifest.config, {
    id,
    dims,
    reader,
    family: cfg.family,
    canonical: (hf) => hfToCanonical(cfg.family, hf),
    shapeOf,
  });
  return { key: id, manifest, head, bytes, ...layout } as EngineModule;
}
