/**
 * Resumable training checkpoints: the optimiser's parameter groups (values, Adam moments, best snapshot) in a
 * safetensors file and the loop's state (step, Adam's t, patience count, history, best metrics) in state.json.
 *
 * A crash at any point leaves a checkpoint that loads: each file is written to a temporary name in the same
 * folder, fsync'ed and renamed over the old one (rename is atomic within a file system), and state.json names
 * the tensor file it belongs to (`optimizer-<step>.safetensors`), so a new tensor file only counts once the
 * new state.json is in place. Files of older checkpoints and temporaries of an interrupted write are removed
 * after the next successful write.
 * Example:
 *   writeCheckpoint(dir, { state: { step, t, bad, history, best: null }, groups: store.groups });
 *   const ck = readCheckpoint(dir, store.groups.map((g) => g.params.length));   // null when dir holds none
 */
import * as fs from 'fs';
import * as path from 'path';
import type { Tensor } from '../../modules-store/safetensors';
import { parseSafetensors, serializeSafetensors } from '../../modules-store/safetensors';
import type { Metrics, TrainResult } from './types';

export interface CheckpointState {
  /** Optimiser steps done. */
  step: number;
  /** AdamW's step counter (bias correction). */
  t: number;
  /** Evaluations without improvement (early stopping). */
  bad: number;
  history: TrainResult['history'];
  best: { value: number; metrics: Metrics; step: number } | null;
  /** Dev metrics before the first step (absent in checkpoints written before they were recorded). */
  before?: Metrics;
}

/** One parameter group of the optimiser (server/train/optim.ts `ParamStore.groups`). */
export interface GroupState {
  params: Float32Array;
  m: Float32Array;
  v: Float32Array;
}

export interface Checkpoint {
  state: CheckpointState;
  groups: GroupState[];
  /** Parameter values of the best evaluation so far, per group (with `state.best`). */
  best?: Float32Array[];
}

/** The file-system calls a write makes; tests pass one whose rename fails, to stand for a crash. */
export interface CheckpointIo {
  renameSync(from: string, to: string): void;
}

const STATE = 'state.json';
/** Before atomic writes the tensors were always in this file; such checkpoints still load. */
const LEGACY_TENSORS = 'optimizer.safetensors';
const OURS = /^(optimizer(-\d+(\.\d+)?)?\.safetensors|\..*\.tmp-\d+)$/;

/** Writes `data` to `file` so that readers see the old or the new content, never a mix: temp, fsync, rename. */
export function atomicWriteFile(file: string, data: Uint8Array | string, io: CheckpointIo = fs): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.tmp-${process.pid}`);
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  try {
    io.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  syncDir(dir);
}

/** Makes a rename durable (the directory entry); not supported on every platform, where rename alone must do. */
function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // e.g. Windows cannot open a directory; the rename is still atomic there
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

function readState(dir: string): (CheckpointState & { tensors?: string; sizes?: number[] }) | null {
  const file = path.join(dir, STATE);
  if (!fs.existsSync(file)) return null;
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new RangeError(`checkpoint '${file}' is not valid JSON (${(e as Error).message}); delete the folder to start over`);
  }
}

/** Saves a checkpoint in `dir` (created if needed), replacing the one there. */
export function writeCheckpoint(dir: string, ck: Checkpoint, io: CheckpointIo = fs): void {
  fs.mkdirSync(dir, { recursive: true });
  const previous = readState(dir)?.tensors ?? LEGACY_TENSORS;
  // a name the current state.json does not use, so that file stays whole until state.json moves on
  let tensorsFile = `optimizer-${ck.state.step}.safetensors`;
  if (tensorsFile === previous) tensorsFile = `optimizer-${ck.state.step}.1.safetensors`;
  const t = new Map<string, Tensor>();
  ck.groups.forEach((g, i) => {
    t.set(`p${i}`, { dtype: 'F32', shape: [g.params.length], data: g.params });
    t.set(`m${i}`, { dtype: 'F32', shape: [g.m.length], data: g.m });
    t.set(`v${i}`, { dtype: 'F32', shape: [g.v.length], data: g.v });
    if (ck.best) t.set(`best${i}`, { dtype: 'F32', shape: [ck.best[i].length], data: ck.best[i] });
  });
  atomicWriteFile(path.join(dir, tensorsFile), serializeSafetensors(t), io);
  const state = { ...ck.state, tensors: tensorsFile, sizes: ck.groups.map((g) => g.params.length) };
  atomicWriteFile(path.join(dir, STATE), JSON.stringify(state), io);
  // the new checkpoint is complete: drop older tensor files and leftovers of interrupted writes
  for (const f of fs.readdirSync(dir)) if (f !== tensorsFile && OURS.test(f)) fs.rmSync(path.join(dir, f), { force: true });
}

/**
 * The checkpoint in `dir`, or null when it holds none. `sizes` are this run's parameter group sizes; a
 * checkpoint of another method or configuration does not fit and is refused.
 */
export function readCheckpoint(dir: string, sizes: number[]): Checkpoint | null {
  const st = readState(dir);
  if (!st) return null;
  const file = path.join(dir, st.tensors ?? LEGACY_TENSORS);
  if (!fs.existsSync(file)) throw new RangeError(`checkpoint '${dir}' lacks '${path.basename(file)}' that its state.json names; delete the folder to start over`);
  const t = parseSafetensors(fs.readFileSync(file)).tensors;
  const got = sizes.map((_, i) => t.get(`p${i}`)?.data.length ?? -1);
  if (t.has(`p${sizes.length}`) || got.some((n, i) => n !== sizes[i])) {
    throw new RangeError(`checkpoint '${dir}' holds parameter groups of sizes [${st.sizes ?? got}], this run trains [${sizes}]: it was written by another method or configuration; use an empty checkpoint folder`);
  }
  const f32 = (name: string) => t.get(name)!.data as Float32Array;
  return {
    state: { step: st.step, t: st.t, bad: st.bad ?? 0, history: st.history, best: st.best ?? null },
    groups: sizes.map((_, i) => ({ params: f32(`p${i}`), m: f32(`m${i}`), v: f32(`v${i}`) })),
    best: st.best ? sizes.map((_, i) => f32(`best${i}`)) : undefined,
  };
}
