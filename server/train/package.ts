/**
 * Packaging of a training phase: the trained inputs of the graph become a module's tensors — module tensors
 * under their package names (`m{slot}:` dropped), base tensors as their change `<hf name>.dense` = θ − θ₀,
 * other inputs (a method's extra terms) under their own names — and the trained module's manifest gets the
 * run's id, version, metrics and description.
 * Example: `const { manifest, tensors } = packagePhase({ ... })` after the loop restored the best weights.
 */
import type { Base } from '../model/base';
import type { Manifest } from '../../modules-store/manifest';
import { parseManifest } from '../../modules-store/manifest';
import type { Tensor } from '../../modules-store/safetensors';
import type { SlotModule } from './graph';
import type { ParamStore } from './optim';
import type { Metrics } from './types';

/**
 * The `training` field of a trained module's manifest (a documented extension field; manifests are open
 * objects): optimiser steps, which weights were saved ('best' dev evaluation or 'last' step) and at which step,
 * the number of trainable parameters (entries the optimiser changed), dev metrics before training.
 */
export interface TrainingRecord {
  steps: number;
  saved: 'best' | 'last';
  saved_step: number;
  trainable_params: number;
  dev_before?: Metrics;
  /** Two-phase methods: steps of each phase. */
  phase_steps?: number[];
}

export function packagePhase(o: {
  base: Base;
  /** The graph's trainable inputs. */
  params: readonly string[];
  store: ParamStore;
  /** Start value of each trainable input. */
  initial: Map<string, Float32Array>;
  trained: SlotModule;
  id: string;
  version?: string;
  language?: string;
  metrics: Metrics;
  /** `what (trained by modhub for task (n steps))` */
  description: string;
  /** The manifest's `training` record (steps, which weights were saved, trainable parameter count). */
  training: TrainingRecord;
}): { manifest: Manifest; tensors: Map<string, Tensor> } {
  const { base, store, trained } = o;
  const tensors = new Map<string, Tensor>();
  for (const name of o.params) {
    const data = store.get(name).slice();
    const dims = store.views.get(name)!.dims;
    if (name.startsWith('base:')) {
      const canonical = name.slice(5);
      const hf = base.hfNames.get(canonical) ?? canonical;
      const init = o.initial.get(name)!;
      const delta = new Float32Array(data.length);
      // delta = θ - θ₀ once at packaging time (not a training hot path)
      for (let i = 0; i < delta.length; i++) delta[i] = data[i] - init[i];
      tensors.set(`${hf}.dense`, { dtype: 'F32', shape: dims, data: delta });
    } else {
      tensors.set(name.replace(/^m\d+:/, ''), { dtype: 'F32', shape: dims, data });
    }
  }
  // frozen tensors of the trained module that were not graph inputs (none today) keep their values
  for (const [k, t] of trained.tensors) if (!tensors.has(k) && trained.trainable) tensors.set(k, t);
  const manifest = parseManifest({
    ...(trained.manifest as unknown as Record<string, unknown>),
    id: o.id,
    version: o.version ?? trained.manifest.version,
    metrics: Object.fromEntries(Object.entries(o.metrics).filter(([, v]) => Number.isFinite(v))),
    description: o.description,
    training: o.training,
    ...(o.language ? { language: o.language } : {}),
  });
  return { manifest, tensors };
}
