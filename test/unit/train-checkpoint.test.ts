/**
 * Training checkpoints (server/train/checkpoint.ts): a crash between writing a file and renaming it into place
 * leaves the previous checkpoint whole and loadable, leftovers of interrupted writes are ignored and cleaned
 * up, a checkpoint of another configuration is refused, the pre-atomic layout still loads, and a training run
 * resumes after such a crash to the same weights as an uninterrupted run.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { readCheckpoint, writeCheckpoint, type Checkpoint, type CheckpointIo } from '../../server/train/checkpoint';
import { serializeSafetensors } from '../../modules-store/safetensors';
import { train } from '../../server/train/trainer';
import { liveTinyBase, clsData } from '../helpers/train-fixtures';

const tmpDirs: string[] = [];
function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'modhub-ckpt-'));
  tmpDirs.push(d);
  return d;
}
afterAll(() => tmpDirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

/** A checkpoint after `step` steps whose every value is `step` (two groups of sizes 3 and 2). */
function ckAt(step: number, withBest = true): Checkpoint {
  const fill = (n: number, v: number) => new Float32Array(n).fill(v);
  return {
    state: { step, t: step, bad: 1, history: [{ step, loss: 1 / step }], best: withBest ? { value: 0.5, metrics: { accuracy: 0.5 }, step } : null },
    groups: [3, 2].map((n) => ({ params: fill(n, step), m: fill(n, step + 0.25), v: fill(n, step + 0.5) })),
    best: withBest ? [fill(3, -step), fill(2, -step)] : undefined,
  };
}

/** Stands for a process that dies after writing and fsync-ing `file`'s temporary, before the rename. */
function crashBeforeRenaming(file: string): CheckpointIo {
  return {
    renameSync: (from, to) => {
      if (path.basename(to) === file) throw new Error(`simulated crash before renaming onto ${file}`);
      fs.renameSync(from, to);
    },
  };
}

describe('writeCheckpoint / readCheckpoint', () => {
  test('round trip', () => {
    const dir = tmp();
    expect(readCheckpoint(dir, [3, 2])).toBeNull();
    writeCheckpoint(dir, ckAt(3));
    const ck = readCheckpoint(dir, [3, 2])!;
    expect(ck.state).toEqual(ckAt(3).state);
    expect(ck.groups.map((g) => [...g.params, ...g.m, ...g.v])).toEqual(ckAt(3).groups.map((g) => [...g.params, ...g.m, ...g.v]));
    expect(ck.best!.map((b) => [...b])).toEqual([[-3, -3, -3], [-3, -3]]);
    const noBest = tmp();
    writeCheckpoint(noBest, ckAt(2, false));
    expect(readCheckpoint(noBest, [3, 2])!.best).toBeUndefined();
  });

  test.each(['state.json', 'optimizer-6.safetensors'])('a crash before renaming onto %s leaves the previous checkpoint whole', (file) => {
    const dir = tmp();
    writeCheckpoint(dir, ckAt(3));
    const stateBefore = fs.readFileSync(path.join(dir, 'state.json'));
    expect(() => writeCheckpoint(dir, ckAt(6), crashBeforeRenaming(file))).toThrow('simulated crash');
    expect(fs.readFileSync(path.join(dir, 'state.json'))).toEqual(stateBefore);
    const ck = readCheckpoint(dir, [3, 2])!;
    expect(ck.state.step).toBe(3);
    // values and moments of step 3, not 6, although step 6's tensor file may already be in the folder
    expect([...ck.groups[0].params, ...ck.groups[1].v]).toEqual([3, 3, 3, 3.5, 3.5]);
    // the next write goes through and replaces it
    writeCheckpoint(dir, ckAt(6));
    expect(readCheckpoint(dir, [3, 2])!.state.step).toBe(6);
    expect(fs.readdirSync(dir).sort()).toEqual(['optimizer-6.safetensors', 'state.json']);
  });

  test('temporaries of a killed writer are ignored on reading and removed by the next write', () => {
    const dir = tmp();
    writeCheckpoint(dir, ckAt(3));
    fs.writeFileSync(path.join(dir, '.state.json.tmp-99999'), '{"step": 6, "t"');
    fs.writeFileSync(path.join(dir, '.optimizer-6.safetensors.tmp-99999'), Buffer.alloc(10));
    expect(readCheckpoint(dir, [3, 2])!.state.step).toBe(3);
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'not ours');
    writeCheckpoint(dir, ckAt(6));
    expect(fs.readdirSync(dir).sort()).toEqual(['notes.txt', 'optimizer-6.safetensors', 'state.json']);
  });

  test('writing the same step twice keeps a whole checkpoint at every moment', () => {
    const dir = tmp();
    writeCheckpoint(dir, ckAt(3));
    expect(() => writeCheckpoint(dir, { ...ckAt(3), state: { ...ckAt(3).state, bad: 2 } }, crashBeforeRenaming('state.json'))).toThrow('simulated crash');
    expect(readCheckpoint(dir, [3, 2])!.state.bad).toBe(1);
    writeCheckpoint(dir, { ...ckAt(3), state: { ...ckAt(3).state, bad: 2 } });
    expect(readCheckpoint(dir, [3, 2])!.state.bad).toBe(2);
    expect(fs.readdirSync(dir).sort()).toEqual(['optimizer-3.1.safetensors', 'state.json']);
  });

  test('a checkpoint of another configuration is refused, saying so', () => {
    const dir = tmp();
    writeCheckpoint(dir, ckAt(3));
    expect(() => readCheckpoint(dir, [3, 4])).toThrow(/sizes \[3,2\], this run trains \[3,4\].*another method or configuration/);
    expect(() => readCheckpoint(dir, [3])).toThrow(RangeError);
  });

  test('a state.json naming a missing tensor file, or not JSON, is reported', () => {
    const dir = tmp();
    writeCheckpoint(dir, ckAt(3));
    fs.rmSync(path.join(dir, 'optimizer-3.safetensors'));
    expect(() => readCheckpoint(dir, [3, 2])).toThrow(/lacks 'optimizer-3.safetensors'/);
    fs.writeFileSync(path.join(dir, 'state.json'), '{"step": 3');
    expect(() => readCheckpoint(dir, [3, 2])).toThrow(/not valid JSON/);
  });

  test('the layout before atomic writes (optimizer.safetensors, state.json without a file name) still loads', () => {
    const dir = tmp();
    const old = ckAt(3);
    const t = new Map();
    old.groups.forEach((g, i) => {
      t.set(`p${i}`, { dtype: 'F32', shape: [g.params.length], data: g.params });
      t.set(`m${i}`, { dtype: 'F32', shape: [g.m.length], data: g.m });
      t.set(`v${i}`, { dtype: 'F32', shape: [g.v.length], data: g.v });
      t.set(`best${i}`, { dtype: 'F32', shape: [old.best![i].length], data: old.best![i] });
    });
    fs.writeFileSync(path.join(dir, 'optimizer.safetensors'), serializeSafetensors(t));
    fs.writeFileSync(path.join(dir, 'state.json'), JSON.stringify(old.state));
    const ck = readCheckpoint(dir, [3, 2])!;
    expect(ck.state).toEqual(old.state);
    expect([...ck.best![1]]).toEqual([-3, -3]);
    writeCheckpoint(dir, ckAt(6));
    expect(fs.readdirSync(dir).sort()).toEqual(['optimizer-6.safetensors', 'state.json']);
  });
});

test('training resumes after a crash during a checkpoint write, to the weights of an uninterrupted run', async () => {
  const base = await liveTinyBase();
  const common = { base, method: 'lora' as const, task: 'classification' as const, train: clsData(96, 1), dev: clsData(16, 2), batchSize: 16, lr: 1e-2, seed: 1, threads: 1, evalEvery: 3, epochs: 1 };
  const full = await train(common);
  // a run stopped after step 3 (checkpoint at 3) ...
  const dir = tmp();
  await (await train({ ...common, stopAtStep: 3, checkpointDir: dir })).release();
  // ... then died writing the checkpoint of step 6: step 6's tensor file is in place, state.json still says 3
  // and a half-written temporary is left behind (the files a run to step 6 writes, taken from another folder)
  const other = tmp();
  fs.cpSync(dir, other, { recursive: true });
  await (await train({ ...common, stopAtStep: 6, checkpointDir: other })).release();
  fs.copyFileSync(path.join(other, 'optimizer-6.safetensors'), path.join(dir, 'optimizer-6.safetensors'));
  fs.writeFileSync(path.join(dir, '.state.json.tmp-99999'), fs.readFileSync(path.join(other, 'state.json')).subarray(0, 20));
  const rest = await train({ ...common, checkpointDir: dir });
  await full.release();
  await rest.release();
  expect(rest.steps).toBe(full.steps);
  expect(rest.history).toEqual(full.history);
  for (const [k, t] of full.tensors) expect(Array.from(rest.tensors.get(k)!.data as Float32Array)).toEqual(Array.from(t.data as Float32Array));
  expect(fs.readdirSync(dir).sort()).toEqual([`optimizer-${full.steps}.safetensors`, 'state.json']);
});
