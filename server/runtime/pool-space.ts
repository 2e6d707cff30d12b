/**
 * Resident module pools (S-LoRA's unified pool, on the host): each pool family (a site's adapters, a LoRA target,
 * the invertible adapters, the heads) keeps one set of arrays in which every module that ran in a mixed batch
 * has a slot, written once when the module first runs. A mixed batch then feeds the whole arrays plus per-row
 * slot indices, so building a batch costs only its indices, and the arrays cross to the session worker once per
 * generation; after that only newly written slots follow, as patches (`HostTensor.updates`). (onnxruntime-node
 * refuses typed arrays over a SharedArrayBuffer, "Invalid argument", so the worker keeps its own copy.)
 * Measured on the 4-layer, 256-wide base with Zipf traffic over 1000 modules: building and posting per-batch
 * pools took ~12 ms of a 67 ms batch (bench/serve.ts, README: Performance).
 *
 * Layout: part `name` of a space is [capacity·layers, ...dims]; module slot s, layer l is entry s·layers + l;
 * slot 0 is all zeros (rows without a module there). Capacity doubles as modules arrive (the entries keep their
 * offsets, so the worker extends its copy instead of receiving the whole space again); past the byte budget the
 * least recently used slot that no batch in flight uses is reused. Padded dims (rank, labels) only grow: a module
 * wider than the space moves the family to a new, wider space. `epoch` changes whenever a slot is reused or a
 * family moves, so a cache of built feeds knows when the slots it indexes are stale; after growth a cached
 * batch's indices still hold, and its resident feeds are refreshed (`HostTensor.current`).
 * Where the arrays live: with sessions on the main thread (`hostCopy`), here. With worker sessions (the
 * default) only in the worker: a slot's writes are staged here until the next feed of its part carries them
 * across (moved, not copied), so the pools are held once, not twice (~8 MB per adapter or LoRA module with a
 * 2-layer head at BERT-base: README, Design decisions), and growth allocates nothing on the main thread. Should the worker lose a space's arrays,
 * the family starts over in a new space, and its modules are written again as they run.
 * Example:
 *   const space = spaces.space('lora.query', L, [{ name: 'A', dims: [D, R] }, { name: 'B', dims: [R, D] }]);
 *   const slot = space.slot(set.key, (w) => writeLora(w.part('A'), w.part('B')));
 *   feeds['lora.query.A'] = space.feed('A');
 */
import { Session, type HostTensor } from './session';

export interface PartSpec {
  name: string;
  /** Shape of one entry (one module at one layer). */
  dims: number[];
}

const FIRST_CAPACITY = 4;

/** What a slot's writer gets: the slot's entries of each part, zeroed, to fill. */
export interface SlotWriter {
  readonly slot: number;
  /** Part `name` of this slot: [layers, ...dims] flattened (layer l's entry starts at l · size(dims)). */
  part(name: string): Float32Array;
}

export class PoolSpace {
  private capacity = 0;
  /** Host copy: the arrays themselves (main-thread sessions only). */
  private arrays = new Map<string, Float32Array>();
  /** key → slot, in least-recently-used order (first = oldest). */
  private readonly slots = new Map<string, { slot: number; lastUse: number }>();
  private readonly free: number[] = [];
  private generation = 0;
  /** Host copy, per part: element ranges written since the worker last got them. */
  private pending = new Map<string, { offset: number; length: number }[]>();
  /** Worker-only, per part: slot → its latest writes not yet sent to the worker. */
  private readonly staged = new Map<string, Map<number, Float32Array>>();
  /**
   * Worker-only, per part: the share key (and so the generation) of the copy the worker was sent; it extends that
   * copy on the next feed, and `lost()` checks it is still there.
   */
  private readonly sentKeys = new Map<string, string>();

  constructor(
    readonly id: number,
    readonly family: string,
    readonly layers: number,
    readonly parts: readonly PartSpec[],
    private readonly owner: PoolSpaces,
  ) {
    this.grow(FIRST_CAPACITY);
  }

  /** Bytes per slot over all parts and layers. */
  get slotBytes(): number {
    return 4 * this.layers * this.parts.reduce((a, p) => a + size(p.dims), 0);
  }

  get bytes(): number {
    return this.capacity * this.slotBytes;
  }

  /** Whether every part of `parts` fits this space's padded dims. */
  fits(parts: readonly PartSpec[]): boolean {
    return parts.every((p) => {
      const mine = this.parts.find((q) => q.name === p.name);
      return !!mine && mine.dims.length === p.dims.length && p.dims.every((d, i) => d <= mine.dims[i]);
    });
  }

  /** The slot (≥ 1) of `key`; a key new to the space gets a zeroed slot, which `write` fills. */
  slot(key: string, write: (w: SlotWriter) => void): number {
    this.owner.record?.push([this, key]);
    const hit = this.touch(key);
    if (hit !== null) return hit;
    const { slot, reused } = this.take();
    this.slots.set(key, { slot, lastUse: this.owner.seq });
    const views = new Map<string, Float32Array>();
    if (this.owner.hostCopy) {
      for (const p of this.parts) {
        const n = this.partSize(p.name);
        views.set(p.name, this.arrays.get(p.name)!.subarray(slot * n, (slot + 1) * n).fill(0));
      }
    }
    write({
      slot,
      part: (name) => {
        let v = views.get(name);
        if (!v) views.set(name, (v = new Float32Array(this.partSize(name)))); // throws for an unknown part
        return v;
      },
    });
    for (const p of this.parts) {
      const n = this.partSize(p.name);
      if (!this.owner.hostCopy) {
        // a part the writer left alone is zero in the worker's copy, unless the slot held another module before
        const v = views.get(p.name) ?? (reused ? new Float32Array(n) : undefined);
        if (!v) continue;
        let m = this.staged.get(p.name);
        if (!m) this.staged.set(p.name, (m = new Map()));
        m.set(slot, v); // bounded: one entry per slot, the latest write
        continue;
      }
      let list = this.pending.get(p.name);
      if (!list) this.pending.set(p.name, (list = []));
      // a part no batch has fed for a long while: one range over everything instead of an ever longer list
      if (list.length >= this.capacity) list.splice(0, list.length, { offset: 0, length: this.capacity * n });
      else list.push({ offset: slot * n, length: n });
    }
    return slot;
  }

  /** Marks `key` used by the batch being built (pinned while it is in flight); its slot, or null when absent. */
  touch(key: string): number | null {
    const hit = this.slots.get(key);
    if (!hit) return null;
    hit.lastUse = this.owner.seq;
    this.slots.delete(key); // move to the most recent end
    this.slots.set(key, hit);
    return hit.slot;
  }

  /** Entry index of (slot, layer) in a part's first axis. */
  entry(slot: number, layer: number): number {
    return slot * this.layers + layer;
  }

  /** The padded entry shape of a part. */
  dims(part: string): number[] {
    const p = this.parts.find((q) => q.name === part);
    if (!p) throw new RangeError(`pool space '${this.family}' has no part '${part}'`);
    return p.dims;
  }

  /** The host copy of a part (only with `hostCopy`: worker-only spaces hold none). */
  array(part: string): Float32Array {
    const a = this.arrays.get(part);
    if (!a) throw new RangeError(`pool space '${this.family}' has no host copy of part '${part}'`);
    return a;
  }

  /**
   * The whole part as a feed [capacity·layers, ...dims]: sent to the session worker once per generation, then
   * only the slots written since (`updates`).
   */
  feed(part: string): HostTensor {
    const generation = this.generation;
    const dims = [this.capacity * this.layers, ...this.dims(part)];
    const shareKey = this.sharePrefix(generation) + part;
    if (!this.owner.hostCopy) return this.workerFeed(part, dims, shareKey);
    const updates = () => {
      if (generation !== this.generation) return []; // a stale feed: its generation went with the growth
      const list = this.pending.get(part) ?? [];
      this.pending.set(part, []);
      return list;
    };
    return {
      type: 'float32',
      dims,
      data: this.array(part),
      shareKey,
      // growth keeps every entry's offset: a worker holding the previous generation extends its own copy
      ...(generation > 0 ? { grownFrom: this.sharePrefix(generation - 1) + part } : {}),
      updates,
      current: () => this.feed(part),
    };
  }

  /**
   * A worker-only part's feed: the key alone when the worker holds this generation, else the generation it holds
   * to extend; the staged slots follow as patches. Sent the first time as a zero array with them written in.
   */
  private workerFeed(part: string, dims: number[], shareKey: string): HostTensor {
    const generation = this.generation;
    const had = this.sentKeys.get(part);
    const fromKey = had !== undefined && had !== shareKey ? had : undefined;
    const staged = this.staged.get(part) ?? new Map<number, Float32Array>();
    this.staged.set(part, staged);
    let data = EMPTY;
    if (had === undefined) {
      const n = this.partSize(part);
      data = new Float32Array(this.capacity * n);
      for (const [slot, v] of staged) data.set(v, slot * n);
      staged.clear();
    }
    this.sentKeys.set(part, shareKey);
    const updates = () => {
      if (generation !== this.generation) return [];
      const n = this.partSize(part);
      const out = [...staged].map(([slot, v]) => ({ offset: slot * n, length: n, data: v }));
      staged.clear();
      return out;
    };
    const reserve = fromKey ? { reserve: this.maxCapacity() * this.partSize(part) } : {};
    return { type: 'float32', dims, data, shareKey, ...(fromKey ? { grownFrom: fromKey } : {}), ...reserve, updates, current: () => this.feed(part), moveToWorker: true };
  }

  /** Worker-only: whether the worker lost a part it was sent (then this space's slots no longer hold). */
  lost(): boolean {
    if (this.owner.hostCopy) return false;
    for (const key of this.sentKeys.values()) if (!Session.workerHolds(key)) return true;
    return false;
  }

  /** Drops the worker's copy of these arrays' handles (the memory goes once nothing references it). */
  forget(): Promise<void> {
    return Session.forgetShared(`${this.owner.shareId}:space:${this.id}:`);
  }

  /**
   * The capacity this space can reach within the budget (`take` grows while the spaces fit it, so one doubling
   * past it): the worker reserves room for it when it grows its copy, so that growth below it never copies. At
   * BERT-base the head space's doubling to 64 slots (144 MB) took 219 ms on the request that caused it.
   */
  private maxCapacity(): number {
    let c = Math.max(this.capacity, FIRST_CAPACITY);
    while (c * this.slotBytes <= this.owner.maxBytes) c *= 2;
    return c;
  }

  private partSize(part: string): number {
    return this.layers * size(this.dims(part));
  }

  private sharePrefix(generation: number): string {
    return `${this.owner.shareId}:space:${this.id}:${generation}:`;
  }

  /**
   * A free slot: an unused one, else one more capacity, else the least recently used slot no batch in flight uses
   * (`reused`: it held another module).
   */
  private take(): { slot: number; reused: boolean } {
    if (this.free.length) return { slot: this.free.pop()!, reused: false };
    const canGrow = this.owner.bytes + this.bytes <= this.owner.maxBytes;
    if (!canGrow) {
      const oldestInFlight = this.owner.oldestInFlight();
      for (const [key, s] of this.slots) {
        if (s.lastUse >= oldestInFlight) break; // LRU order: every later slot was used at least as recently
        this.slots.delete(key);
        this.owner.bumpEpoch();
        return { slot: s.slot, reused: true };
      }
    }
    // Within budget, or every slot is in use by batches in flight: grow (correctness before the budget).
    this.grow(this.capacity * 2);
    return { slot: this.free.pop()!, reused: false };
  }

  private grow(capacity: number): void {
    const old = this.capacity;
    if (this.owner.hostCopy) {
      const next = new Map<string, Float32Array>();
      for (const p of this.parts) {
        const a = new Float32Array(capacity * this.partSize(p.name));
        const prev = this.arrays.get(p.name);
        if (prev) a.set(prev);
        next.set(p.name, a);
      }
      this.arrays = next;
    }
    this.capacity = capacity;
    // slot 0 stays the zero entry; hand out low slots first
    for (let s = capacity - 1; s >= Math.max(1, old); s--) this.free.push(s);
    if (old > 0) {
      // The worker's copy of an earlier generation becomes the prefix of the next one (sent as `grownFrom`, with
      // the ranges written since as patches), so growth does not re-post the whole space (38 MB for 16 heads at
      // BERT-base). A host copy re-sends whole past the previous generation, so the one before it can go; a
      // worker-only part keeps whichever generation the worker last got until its next feed extends it.
      if (this.owner.hostCopy && this.generation > 0) void Session.forgetShared(this.sharePrefix(this.generation - 1));
      this.generation++;
    }
  }
}

const EMPTY = new Float32Array(0);

/** A (space, key) a batch's feeds use: touched again when cached feeds are reused. */
export type Touch = [PoolSpace, string];

/** The resident spaces of one engine, under one byte budget. */
export class PoolSpaces {
  /** While set, every slot() call is recorded here (BatchPools caches the list with the feeds). */
  record: Touch[] | null = null;
  private readonly spaces = new Map<string, PoolSpace>();
  private nextId = 0;
  private inFlight = new Set<number>();
  /** Sequence number of the batch being built (slots record it as their last use). */
  seq = 0;
  /** Changes when any slot is reused or a family moves to a wider space (built feeds' slot indices are stale then). */
  epoch = 0;

  /**
   * `hostCopy`: keep the arrays on this thread too (sessions that run here read them; default true). Off for
   * worker sessions: the worker holds the only copy.
   */
  constructor(
    readonly shareId: string,
    readonly maxBytes: number,
    readonly hostCopy = true,
  ) {}

  /** Total bytes of all spaces. */
  get bytes(): number {
    let b = 0;
    for (const s of this.spaces.values()) b += s.bytes;
    return b;
  }

  /**
   * The family's space, wide enough for `parts` (a narrower one is replaced by one with the larger dims of both,
   * whose slots fill again as modules run).
   */
  space(family: string, layers: number, parts: PartSpec[]): PoolSpace {
    let cur = this.spaces.get(family);
    if (cur?.lost()) {
      // the worker no longer holds what was written (it restarted): start the family over, written as modules run
      void cur.forget();
      this.spaces.delete(family);
      this.epoch++;
      cur = undefined;
    }
    if (cur && cur.layers === layers && cur.fits(parts)) return cur;
    const merged = parts.map((p) => {
      const old = cur?.parts.find((q) => q.name === p.name);
      return old && old.dims.length === p.dims.length ? { name: p.name, dims: p.dims.map((d, i) => Math.max(d, old.dims[i])) } : p;
    });
    if (cur) {
      void cur.forget();
      this.epoch++;
    }
    const s = new PoolSpace(this.nextId++, family, layers, merged, this);
    this.spaces.set(family, s);
    return s;
  }

  /** Marks the start of building a batch; its slots stay pinned until `end(seq)`. */
  begin(): number {
    const seq = ++this.seq;
    this.inFlight.add(seq);
    return seq;
  }

  end(seq: number): void {
    this.inFlight.delete(seq);
  }

  /** The oldest batch sequence in flight (slots last used before it may be reused). */
  oldestInFlight(): number {
    let min = this.seq + 1;
    for (const s of this.inFlight) min = Math.min(min, s);
    return min;
  }

  bumpEpoch(): void {
    this.epoch++;
  }

  /** Drops every space (engine close). */
  async close(): Promise<void> {
    for (const s of this.spaces.values()) await s.forget();
    this.spaces.clear();
    this.inFlight = new Set();
  }
}

function size(dims: readonly number[]): number {
  return dims.reduce((a, d) => a * d, 1);
}
