/**
 * The one door to onnxruntime-node: everything else sees `Session` and `HostTensor`, never ort types.
 * Device, threading and the worker-thread choice live here.
 *
 * onnxruntime-node runs a session synchronously on the calling JS thread, so a server that runs a long batch on
 * its main thread stops answering (health checks, catalog lookups, uploads) for the whole run. With
 * `{ worker: true }` sessions live in one shared worker thread and the main thread only posts feeds and receives
 * outputs (transferred, not copied). Large feeds that repeat across runs (base weights, cached pools) carry a
 * `shareKey`: they cross to the worker once and are reused there until `Session.forgetShared(prefix)`.
 * Example:
 *   const s = await Session.create(graph.toBytes(), { device: 'cpu', worker: true });
 *   const { y } = await s.run({ x: { type: 'float32', dims: [1, 4], data } }, ['y']);
 */
import * as os from 'os';
import { Worker } from 'worker_threads';
import * as ort from 'onnxruntime-node';

export type Device = 'cpu' | 'cuda';
export type HostData = Float32Array | BigInt64Array | Int32Array | Uint8Array;
export interface HostTensor {
  type: 'float32' | 'int64' | 'int32' | 'bool' | 'uint8';
  dims: readonly number[];
  data: HostData;
  /** Worker sessions: a stable identity of `data`; it is sent to the worker once and reused after that. */
  shareKey?: string;
  /**
   * With `shareKey`: takes the element ranges of `data` changed since the last call; a worker that already holds
   * the key gets just those ranges, written into its copy in place (resident pools, pool-space.ts). A range with
   * its own `data` (a worker-only pool's staged slot) is sent as that array, moved rather than copied.
   */
  updates?: () => { offset: number; length: number; data?: Float32Array }[];
  /**
   * With `shareKey`: the key of an earlier, shorter generation of this feed whose data is a prefix of `data`. A
   * worker holding it extends that copy (plus `updates`) instead of receiving the whole array.
   */
  grownFrom?: string;
  /**
   * With `grownFrom`, worker sessions: elements to reserve when the worker allocates the grown copy (at least
   * `data`'s). Pages never written cost no memory, and later generations that fit extend a view of that buffer
   * instead of allocating and copying the whole array again.
   */
  reserve?: number;
  /** Resident feeds: the feed as it is now (a later generation after growth); cached batch feeds refresh through it. */
  current?: () => HostTensor;
  /**
   * With `shareKey`: the owner never reads `data` again once a worker holds it, so its buffer is moved to the
   * worker (no copy; `data` is detached after) instead of cloned. Main-thread sessions read it as usual.
   */
  moveToWorker?: boolean;
  /**
   * Sparse diffs: for this run only, `data[indices[i]] += deltas[i]` in order (θ₀+Σδ at the entries a diff set
   * touches; an index may repeat). A worker adds them to its shared copy in place and puts the saved values back
   * after the run, so a diff set costs its non-zeros instead of a dense copy of every matrix it touches (340 MB at
   * BERT-base for LT-SFT at 1%); a main-thread session runs on a patched copy. `key` names the pair for the worker
   * (sent once, forgotten with `Session.forgetShared` like a share key).
   */
  overwrite?: SparseOverwrite;
}

/**
 * An array the worker makes itself (Session.deriveShared): a copy of its shared array `from` with the sparse
 * overwrite `overwrite` (a key it holds) added, kept under `key`. A diff set's copy θ₀+Σδ is made this way, where
 * both halves already are (diff-weights.ts).
 */
export interface DerivedFeed {
  key: string;
  from: string;
  overwrite: string;
  dims: readonly number[];
}

export interface SparseOverwrite {
  key: string;
  indices: Int32Array;
  deltas: Float32Array;
}

/** `data` with an overwrite's non-zeros added (a copy; the caller's array is left as it is). */
export function overwritten(data: Float32Array, o: Pick<SparseOverwrite, 'indices' | 'deltas'>): Float32Array {
  const out = data.slice();
  scatterAdd(out, o.indices, o.deltas);
  return out;
}

/**
 * `dst[indices[i]] += values[i]` in order (an index may repeat). Every sparse add on this thread goes through this
 * one function on purpose: V8 compiles a function once it is hot, while a loop written inline in code that runs
 * once per module (a slot writer, a diff set's first build) stays in the interpreter. A BitFit set's first request
 * at BERT-base spent 6–28 ms adding its 102k biases inline, against 0.5 ms in a compiled loop.
 */
export function scatterAdd(dst: Float32Array, indices: Int32Array, values: Float32Array): void {
  for (let i = 0; i < indices.length; i++) dst[indices[i]] += values[i];
}

export interface SessionOptions {
  /** 'cpu' (default) or 'cuda' (needs onnxruntime-node's CUDA files: `npm run install:cuda`). */
  device?: Device;
  /** Intra-op threads; 0 or unset: one per CPU the process may use. */
  threads?: number;
  /** Run in the shared worker thread, keeping the caller's event loop free (default false). */
  worker?: boolean;
  /** Intra-op threads spin between ops during a run (default true; they park when the run returns either way). */
  spin?: boolean;
}

export function float32(dims: readonly number[], data: Float32Array): HostTensor {
  return { type: 'float32', dims, data };
}
export function int64(dims: readonly number[], data: BigInt64Array | ArrayLike<number>): HostTensor {
  return { type: 'int64', dims, data: data instanceof BigInt64Array ? data : BigInt64Array.from(Array.from(data, (x) => BigInt(x))) };
}

/** Clear message when the CUDA provider is asked for but not installed. */
function cudaHint(message: string): Error {
  return new Error(
    `device 'cuda' is not available (${message.split('\n')[0]}). ` +
      `Fetch onnxruntime-node's CUDA files on a CUDA host with 'npm run install:cuda', ` +
      `or run with --device cpu.`,
  );
}

function sessionOptions(device: Device, threads: number | undefined, spin = true): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: device === 'cuda' ? ['cuda'] : ['cpu'],
    graphOptimizationLevel: 'all',
    // Counted here rather than left to onnxruntime (0), whose own pick was ONE thread on the 2-vCPU VMs we measure
    // on: BERT-base forward at batch 8 took 1286 ms with it and 696 ms with 2 threads (batch 1: 138 -> 92 ms).
    intraOpNumThreads: threads && threads > 0 ? threads : os.availableParallelism(),
    enableCpuMemArena: true,
    // Intra-op threads spin between the ops of a run (waking a parked thread on this VM costs tens of µs, more
    // than many adapter ops take) and park when the run returns (force_spinning_stop): the engine keeps one
    // session per graph variant, and idle sessions' spinning threads took the cores from the one that ran next
    // (spinning without the stop: batch-1 median 6.7 -> 15.6 ms; with it, forwards ran 7-11% faster).
    extra: { session: { intra_op: { allow_spinning: spin ? '1' : '0' }, inter_op: { allow_spinning: '0' }, force_spinning_stop: '1' } },
  };
}

/** Caller-owned buffers that named outputs are written into (shape and type must match the output). */
export type OutputBuffers = Record<string, HostTensor>;

/**
 * Where one run's time went on the thread that ran it (`Session.run` fills it when given): setting up its feeds (a
 * sparse overwrite applied included) and onnxruntime's run.
 */
export interface RunTiming {
  feedsMs: number;
  runMs: number;
  /**
   * A worker run that applied a sparse overwrite: the ms the worker has spent so far undoing the overwrites whose
   * keys share this one's prefix (one engine's, `<shareId>:`). It undoes each after posting the run's outputs, so a
   * run's own undo is counted in the next one's total.
   */
  undoMsTotal?: number;
}

interface SessionImpl {
  inputNames: readonly string[];
  outputNames: readonly string[];
  run(feeds: Record<string, HostTensor>, outputs: readonly string[], into?: OutputBuffers, timing?: RunTiming): Promise<Record<string, HostTensor>>;
  release(): Promise<void>;
}

/** A session on the calling thread. */
class MainThreadSession implements SessionImpl {
  constructor(private readonly inner: ort.InferenceSession) {}
  get inputNames() {
    return this.inner.inputNames;
  }
  get outputNames() {
    return this.inner.outputNames;
  }
  async run(feeds: Record<string, HostTensor>, outputs: readonly string[], into?: OutputBuffers, timing?: RunTiming): Promise<Record<string, HostTensor>> {
    const t0 = performance.now();
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(feeds)) {
      v.updates?.(); // this thread reads `data` itself: nothing to patch
      const data = v.overwrite ? overwritten(v.data as Float32Array, v.overwrite) : v.data;
      ortFeeds[k] = new ort.Tensor(v.type, data as never, v.dims as number[]);
    }
    // onnxruntime writes pre-allocated fetches in place: no output copy (the trainer's gradients and AdamW state)
    const fetches: Record<string, ort.Tensor | null> = {};
    for (const name of outputs) {
      const b = into?.[name];
      fetches[name] = b ? new ort.Tensor(b.type, b.data as never, b.dims as number[]) : null;
    }
    const t1 = performance.now();
    const res = await this.inner.run(ortFeeds, fetches);
    if (timing) Object.assign(timing, { feedsMs: t1 - t0, runMs: performance.now() - t1 });
    const out: Record<string, HostTensor> = {};
    for (const name of outputs) {
      const b = into?.[name];
      const t = res[name];
      out[name] = b ?? { type: t.type as HostTensor['type'], dims: t.dims, data: t.data as HostData };
    }
    return out;
  }
  release(): Promise<void> {
    return this.inner.release();
  }
}

/** The worker's side, as source text (runs from sources under ts-jest and from dist/ alike). */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('worker_threads');
const ort = require(workerData.ortPath);
const sessions = new Map();
const shared = new Map();
function tensor(f) {
  if (f.data === undefined) {
    const t = shared.get(f.key);
    if (!t) throw new Error('shared feed ' + f.key + ' is not in the worker');
    return t;
  }
  const t = new ort.Tensor(f.type, f.data, f.dims);
  if (f.key !== undefined) shared.set(f.key, t);
  return t;
}
function patch(f) {
  const t = f.from === undefined ? tensor(f) : grow(f);
  for (const p of f.patches) t.data.set(p.data, p.offset);
  return t;
}
// Room is reserved only for arrays this large: each reservation counts in full as V8 external memory in this
// thread and may start a collection (about 35 ms apiece for the ~100 small bias parts of a BERT-base row-bias
// space), while copying a small array is cheap anyway.
const RESERVE_FROM_BYTES = 16 * 2 ** 20;
function grow(f) {
  const old = shared.get(f.from);
  if (!old) throw new Error('shared feed ' + f.from + ' is not in the worker');
  let data;
  if (old.data.byteOffset === 0 && old.data.buffer.byteLength >= f.length * 4) {
    // within the room reserved earlier: the entries past the old length were never written, so they are zeros
    data = new Float32Array(old.data.buffer, 0, f.length);
  } else {
    let buf;
    try {
      buf = new ArrayBuffer((f.length * 4 >= RESERVE_FROM_BYTES ? Math.max(f.length, f.reserve || 0) : f.length) * 4);
    } catch {
      buf = new ArrayBuffer(f.length * 4); // the system would not reserve that much: what is needed now
    }
    data = new Float32Array(buf, 0, f.length);
    data.set(old.data);
  }
  shared.delete(f.from);
  const t = new ort.Tensor(f.type, data, f.dims);
  shared.set(f.key, t);
  return t;
}
// Sparse overwrites are written into shared arrays in place for one run and undone after it; runs are chained, so
// no other run (nor a copy being derived) sees a patched array. A set's first run adds its deltas in order and keeps
// what it read and wrote at every index (orig, values: a repeated index's last write holds the sum, and undoing in
// reverse leaves its first read); its later runs only write. Reading scattered non-zeros is the slow part: at
// BERT-base (850k non-zeros over 340 MB) a pass that reads took 35-50 ms, one that only writes 10-14 ms.
function overwrite(t, o) {
  const ow = shared.get(o.key);
  if (!ow) throw new Error('sparse overwrite ' + o.key + ' is not in the worker');
  const d = t.data;
  const idx = ow.indices;
  if (!ow.values) {
    const orig = new Float32Array(idx.length);
    const values = new Float32Array(idx.length);
    const delta = ow.deltas;
    for (let i = 0; i < idx.length; i++) {
      const j = idx[i];
      const old = d[j];
      orig[i] = old;
      d[j] = values[i] = old + delta[i];
    }
    ow.orig = orig;
    ow.values = values;
    ow.deltas = undefined; // the values say it all from now on (a derived copy writes them too)
  } else {
    const values = ow.values;
    for (let i = 0; i < idx.length; i++) d[idx[i]] = values[i];
  }
  const orig = ow.orig;
  return () => {
    for (let i = idx.length - 1; i >= 0; i--) d[idx[i]] = orig[i];
  };
}
// Derived arrays (a diff set's copy θ₀+Σδ: a shared array with a sparse overwrite added) are made in the
// background, a step of STEP elements (256 KB) at a time, only while no run or session build is in flight
// (onnxruntime-node runs on this thread, so a step never overlaps one): a run that arrives waits for one step at
// most, and the copying fills the gaps in which the main thread prepares the next batch. Made inside a run, a copy
// held that run up: at N=1000 on the small base 9% of a closed loop's time went there, most of it first-touch page
// faults of the new arrays (~17 µs a page on the VM we measure on).
const STEP = 65536;
const jobs = [];
let inFlight = 0;
let stepping = false;
function pump() {
  if (stepping || inFlight > 0 || !jobs.length) return;
  stepping = true;
  setImmediate(step);
}
function step() {
  stepping = false;
  if (inFlight > 0 || !jobs.length) return;
  const job = jobs[0];
  try {
    if (advance(job)) {
      jobs.shift();
      for (const it of job.items) shared.set(it.key, new ort.Tensor(it.type, it.data, it.dims));
      parentPort.postMessage({ seq: job.seq });
    }
  } catch (e) {
    jobs.shift();
    parentPort.postMessage({ seq: job.seq, error: String(e && e.message ? e.message : e) });
  }
  pump();
}
/** One step of a derive job; true when every item is made. */
function advance(job) {
  const it = job.items[job.at];
  const from = shared.get(it.from);
  const ow = shared.get(it.overwrite);
  if (!from || !ow) throw new Error('derived feed ' + it.key + ': ' + (from ? it.overwrite : it.from) + ' is not in the worker');
  if (!it.data) {
    it.data = new Float32Array(from.data.length);
    it.pos = 0;
  }
  const n = from.data.length;
  if (it.pos < n) {
    // the base array (no overwrite is applied between runs)
    const end = Math.min(n, it.pos + STEP);
    it.data.set(from.data.subarray(it.pos, end), it.pos);
    it.pos = end;
  } else {
    // then the non-zeros, in order (an index may repeat): the values a run wrote, or the deltas before any run did
    const k = it.pos - n;
    const end = Math.min(ow.indices.length, k + STEP);
    if (ow.values) for (let i = k; i < end; i++) it.data[ow.indices[i]] = ow.values[i];
    else for (let i = k; i < end; i++) it.data[ow.indices[i]] += ow.deltas[i];
    it.pos = n + end;
    if (end === ow.indices.length) job.at++;
  }
  return job.at === job.items.length;
}
let runs = Promise.resolve();
/** Sparse overwrites undone so far, ms, by the prefix of their keys (RunTiming.undoMsTotal). */
const undoMs = new Map();
/** Runs m and posts its outputs; a sparse overwrite is undone after the posting (the caller need not wait for it). */
async function runAndPost(m) {
  const feeds = {};
  const undo = [];
  let owPrefix;
  const t0 = performance.now();
  // kept first: the caller counts them as held from now on, even if this run fails
  for (const f of Object.values(m.feeds)) if (f.ow && f.ow.indices !== undefined) shared.set(f.ow.key, { indices: f.ow.indices, deltas: f.ow.deltas });
  try {
    for (const name of Object.keys(m.feeds)) {
      const f = m.feeds[name];
      feeds[name] = f.patches ? patch(f) : tensor(f);
      if (f.ow) {
        undo.push(overwrite(feeds[name], f.ow));
        owPrefix = f.ow.key.slice(0, f.ow.key.indexOf(':') + 1);
      }
    }
    const t1 = performance.now();
    const res = await sessions.get(m.id).run(feeds, m.outputs);
    const timing = { feedsMs: t1 - t0, runMs: performance.now() - t1 };
    if (owPrefix !== undefined) timing.undoMsTotal = undoMs.get(owPrefix) || 0;
    const outputs = {};
    const transfer = [];
    for (const name of m.outputs) {
      const t = res[name];
      outputs[name] = { type: t.type, dims: t.dims, data: t.data };
      transfer.push(t.data.buffer);
    }
    parentPort.postMessage({ seq: m.seq, outputs, timing }, transfer);
  } finally {
    const t2 = performance.now();
    for (const u of undo.reverse()) u();
    if (owPrefix !== undefined) undoMs.set(owPrefix, (undoMs.get(owPrefix) || 0) + performance.now() - t2);
  }
}
parentPort.on('message', async (m) => {
  const busy = m.type === 'create' || m.type === 'run';
  if (busy) inFlight++;
  try {
    if (m.type === 'create') {
      const s = await ort.InferenceSession.create(m.bytes, m.options);
      sessions.set(m.id, s);
      parentPort.postMessage({ seq: m.seq, inputNames: s.inputNames, outputNames: s.outputNames });
    } else if (m.type === 'run') {
      await (runs = runs.catch(() => undefined).then(() => runAndPost(m)));
    } else if (m.type === 'derive') {
      jobs.push({ seq: m.seq, items: m.items, at: 0 });
    } else if (m.type === 'release') {
      const s = sessions.get(m.id);
      sessions.delete(m.id);
      if (s) await s.release();
      parentPort.postMessage({ seq: m.seq });
    } else if (m.type === 'forget') {
      // behind the runs already posted: the caller may post a batch's run and then evict what that run reads
      await (runs = runs.catch(() => undefined).then(() => {
        for (const k of [...shared.keys()]) if (k.startsWith(m.prefix)) shared.delete(k);
        for (const job of jobs.filter((j) => j.items.some((it) => it.key.startsWith(m.prefix)))) {
          jobs.splice(jobs.indexOf(job), 1);
          parentPort.postMessage({ seq: job.seq, error: 'derived feeds forgotten before they were made' });
        }
      }));
      parentPort.postMessage({ seq: m.seq });
    }
  } catch (e) {
    parentPort.postMessage({ seq: m.seq, error: String(e && e.message ? e.message : e) });
  } finally {
    if (busy) inFlight--;
    pump();
  }
});
`;

/** The one worker thread hosting every worker session (one onnxruntime environment, one set of cores). */
class OrtWorker {
  private static current: OrtWorker | null = null;
  private readonly worker: Worker;
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (m: Record<string, unknown>) => void; reject: (e: Error) => void }>();
  /** Shared feed keys the worker holds. */
  readonly sent = new Set<string>();
  /** Keys of feeds the worker is deriving, to the call deriving them (held once made, unless forgotten meanwhile). */
  readonly deriving = new Map<string, number>();
  derives = 0;
  sessions = 0;
  private nextId = 0;

  private constructor() {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { ortPath: require.resolve('onnxruntime-node') } });
    this.worker.unref();
    this.worker.on('message', (m: { seq: number; error?: string }) => {
      const p = this.pending.get(m.seq);
      if (!p) return;
      this.pending.delete(m.seq);
      if (m.error !== undefined) p.reject(new Error(m.error));
      else p.resolve(m as unknown as Record<string, unknown>);
    });
    this.worker.on('error', (e) => this.failAll(e));
    this.worker.on('exit', (code) => this.failAll(new Error(`onnxruntime worker exited (code ${code})`)));
  }

  static get(): OrtWorker {
    return (OrtWorker.current ??= new OrtWorker());
  }

  static peek(): OrtWorker | null {
    return OrtWorker.current;
  }

  newId(): number {
    return this.nextId++;
  }

  private failAll(e: Error): void {
    if (OrtWorker.current === this) OrtWorker.current = null;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  call(msg: Record<string, unknown>, transfer: ArrayBuffer[] = []): Promise<Record<string, unknown>> {
    const seq = this.seq++;
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      this.worker.postMessage({ ...msg, seq }, transfer);
    });
  }

  /** Ends the thread once no session uses it. */
  async retire(): Promise<void> {
    if (this.sessions > 0) return;
    if (OrtWorker.current === this) OrtWorker.current = null;
    await this.worker.terminate();
  }
}

class WorkerSession implements SessionImpl {
  private constructor(
    private readonly w: OrtWorker,
    private readonly id: number,
    readonly inputNames: readonly string[],
    readonly outputNames: readonly string[],
  ) {}

  static async create(model: Uint8Array, options: ort.InferenceSession.SessionOptions): Promise<WorkerSession> {
    const w = OrtWorker.get();
    const id = w.newId();
    const bytes = model.slice(); // an own buffer, transferred to the worker
    w.sessions++;
    try {
      const r = await w.call({ type: 'create', id, bytes, options }, [bytes.buffer as ArrayBuffer]);
      return new WorkerSession(w, id, r.inputNames as string[], r.outputNames as string[]);
    } catch (e) {
      w.sessions--;
      await w.retire();
      throw e;
    }
  }

  async run(feeds: Record<string, HostTensor>, outputs: readonly string[], into?: OutputBuffers, timing?: RunTiming): Promise<Record<string, HostTensor>> {
    const msg: Record<string, { type: string; dims: readonly number[]; data?: HostData; key?: string; from?: string; length?: number; reserve?: number; patches?: { offset: number; data: HostData }[]; ow?: Partial<SparseOverwrite> }> = {};
    const transfer = new Set<ArrayBuffer>();
    // Refusals first: past this point feeds' pending updates are taken and keys marked as held, so a throw half
    // way would leave the worker's copies behind what this thread believes they are.
    for (const [name, f] of Object.entries(feeds)) {
      const held = f.shareKey !== undefined && (this.w.sent.has(f.shareKey) || (f.grownFrom !== undefined && this.w.sent.has(f.grownFrom)));
      if (!held && f.data.byteLength === 0 && f.dims.every((d) => d > 0)) throw new Error(`feed '${name}' was moved to an onnxruntime worker that no longer holds it; its owner must rebuild it`);
      if (f.overwrite && f.shareKey === undefined) throw new RangeError(`feed '${name}' has a sparse overwrite but no share key`);
    }
    for (const [name, f] of Object.entries(feeds)) {
      const ups = f.updates?.() ?? [];
      const patches = () =>
        ups.map((u) => {
          if (!u.data) return { offset: u.offset, data: f.data.slice(u.offset, u.offset + u.length) };
          if (u.data.byteOffset === 0 && u.data.byteLength === u.data.buffer.byteLength) transfer.add(u.data.buffer as ArrayBuffer);
          return { offset: u.offset, data: u.data };
        });
      if (f.shareKey !== undefined && this.w.sent.has(f.shareKey)) {
        msg[name] = { type: f.type, dims: f.dims, key: f.shareKey };
        if (ups.length) msg[name].patches = patches();
      } else if (f.shareKey !== undefined && f.grownFrom !== undefined && this.w.sent.has(f.grownFrom)) {
        // the worker's copy of the previous generation is this one's prefix: it grows that copy in place
        msg[name] = { type: f.type, dims: f.dims, key: f.shareKey, from: f.grownFrom, length: f.dims.reduce((a, d) => a * d, 1), reserve: f.reserve, patches: patches() };
        this.w.sent.delete(f.grownFrom);
        this.w.sent.add(f.shareKey);
      } else {
        msg[name] = { type: f.type, dims: f.dims, data: f.data, key: f.shareKey };
        if (f.shareKey !== undefined) {
          this.w.sent.add(f.shareKey);
          // only a buffer the feed owns whole (a view would detach its neighbours)
          if (f.moveToWorker && f.data.byteOffset === 0 && f.data.byteLength === f.data.buffer.byteLength) transfer.add(f.data.buffer as ArrayBuffer);
        }
      }
      if (f.overwrite) {
        const o = f.overwrite;
        msg[name].ow = this.w.sent.has(o.key) ? { key: o.key } : { key: o.key, indices: o.indices, deltas: o.deltas };
        this.w.sent.add(o.key);
      }
    }
    const r = await this.w.call({ type: 'run', id: this.id, feeds: msg, outputs }, [...transfer]);
    const out = r.outputs as Record<string, HostTensor>;
    if (timing) Object.assign(timing, r.timing);
    // another thread's outputs arrive as their own buffers: copy into the caller's
    for (const [name, b] of Object.entries(into ?? {})) {
      if (!out[name]) continue;
      (b.data as Float32Array).set(out[name].data as Float32Array);
      out[name] = b;
    }
    return out;
  }

  async release(): Promise<void> {
    await this.w.call({ type: 'release', id: this.id }).catch(() => undefined);
    this.w.sessions--;
    await this.w.retire();
  }
}

export class Session {
  private constructor(
    private readonly impl: SessionImpl,
    readonly device: Device,
  ) {}

  get inputNames(): readonly string[] {
    return this.impl.inputNames;
  }
  get outputNames(): readonly string[] {
    return this.impl.outputNames;
  }

  /** Builds a session from ONNX model bytes (base weights as initializers are loaded and prepacked here, once). */
  static async create(model: Uint8Array, options: SessionOptions = {}): Promise<Session> {
    const device = options.device ?? 'cpu';
    if (device !== 'cpu' && device !== 'cuda') throw new RangeError(`'device' must be 'cpu' or 'cuda', got '${String(device)}'`);
    const opts = sessionOptions(device, options.threads, options.spin);
    try {
      const impl = options.worker ? await WorkerSession.create(model, opts) : new MainThreadSession(await ort.InferenceSession.create(model, opts));
      return new Session(impl, device);
    } catch (err) {
      if (device === 'cuda') throw cudaHint(err instanceof Error ? err.message : String(err));
      throw err;
    }
  }

  /** Whether the onnxruntime worker holds the shared feed `key` (a feed moved there must be rebuilt when it does not). */
  static workerHolds(key: string): boolean {
    return OrtWorker.peek()?.sent.has(key) ?? false;
  }

  /**
   * Has the onnxruntime worker make `feeds` (DerivedFeed) from arrays it holds, in the background: between runs,
   * never inside one. Resolves once it holds them all (runs may name them by key from then on); rejects when the
   * worker does not hold a source, or the feeds were forgotten (`forgetShared`) before they were made.
   */
  static async deriveShared(feeds: readonly DerivedFeed[]): Promise<void> {
    const w = OrtWorker.peek();
    const missing = feeds.flatMap((f) => [f.from, f.overwrite]).find((k) => !w?.sent.has(k));
    if (missing !== undefined) throw new Error(`cannot derive from '${missing}': the onnxruntime worker does not hold it`);
    if (!w) return; // no feeds
    const call = ++w.derives;
    for (const f of feeds) w.deriving.set(f.key, call);
    const mine = (f: DerivedFeed) => w.deriving.get(f.key) === call;
    try {
      await w.call({ type: 'derive', items: feeds.map((f) => ({ key: f.key, from: f.from, overwrite: f.overwrite, type: 'float32', dims: f.dims })) });
      if (!feeds.every(mine)) throw new Error('derived feeds forgotten before they were made');
      for (const f of feeds) w.sent.add(f.key);
    } finally {
      for (const f of feeds) if (mine(f)) w.deriving.delete(f.key);
    }
  }

  /** Worker sessions: drops shared feeds whose key starts with `prefix` from the worker (their owner evicted them). */
  static async forgetShared(prefix: string): Promise<void> {
    const w = OrtWorker.peek();
    if (!w) return;
    for (const k of [...w.sent]) if (k.startsWith(prefix)) w.sent.delete(k);
    for (const k of [...w.deriving.keys()]) if (k.startsWith(prefix)) w.deriving.delete(k);
    await w.call({ type: 'forget', prefix }).catch(() => undefined);
  }

  /**
   * Runs the graph; returns host copies of the requested outputs, except those named in `into`, which are
   * written into the caller's buffers (in place on a main-thread session; an input's own buffer may be given).
   */
  run(feeds: Record<string, HostTensor>, outputs: readonly string[], into?: OutputBuffers, timing?: RunTiming): Promise<Record<string, HostTensor>> {
    return this.impl.run(feeds, outputs, into, timing);
  }

  async release(): Promise<void> {
    await this.impl.release();
  }
}
