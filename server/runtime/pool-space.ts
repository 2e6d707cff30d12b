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
 * Example:
 *   const space = spaces.space('lora.query', L, [{ name: 'A', dims: [D, R] }, { name: 'B', dims: [R, D] }]);
 *   const slot = space.slot(set.key, (s) => writeLora(space, s));
 *   feeds['lora.query.A'] = space.feed('A');
 */
import { Session, type HostTensor } from './session';

export interface PartSpec {
  name: string;
  /** Shape of one entry (one module at one layer). */
  dims: number[];
}

const FIRST_CAPACITY = 4;

export class PoolSpace {
  private capacity = 0;
  private arrays = new Map<string, Float32Array>();
  /** key → slot, in least-recently-used order (first = oldest). */
  private readonly slots = new Map<string, { slot: number; lastUse: number }>();
  private readonly free: number[] = [];
  private generation = 0;
  /** Per part: element ranges written since the worker last got them. */
  private pending = new Map<string, { offset: number; length: number }[]>();

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

  /**
   * The slot (≥ 1) of `key`; a key new to the space gets a zeroed slot and `write(slot)` fills it (it should read
   * the arrays through `array()` / `entry()`, which stay valid until the next `slot()` call).
   */
  slot(key: string, write: (slot: number) => void): number {
    this.owner.record?.push([this, key]);
    const hit = this.touch(key);
    if (hit !== null) return hit;
    const slot = this.take();
    for (const [name, arr] of this.arrays) {
      const n = this.layers * size(this.parts.find((p) => p.name === name)!.dims);
      arr.fill(0, slot * n, (slot + 1) * n);
    }
    this.slots.set(key, { slot, lastUse: this.owner.seq });
    write(slot);
    for (const p of this.parts) {
      const n = this.layers * size(p.dims);
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

  array(part: string): Float32Array {
    const a = this.arrays.get(part);
    if (!a) throw new RangeError(`pool space '${this.family}' has no part '${part}'`);
    return a;
  }

  /**
   * The whole part as a feed [capacity·layers, ...dims]: sent to the session worker once per generation, then
   * only the slots written since (`updates`).
   */
  feed(part: string): HostTensor {
    const generation = this.generation;
    const updates = () => {
      if (generation !== this.generation) return []; // a stale feed: its generation went with the growth
      const list = this.pending.get(part) ?? [];
      this.pending.set(part, []);
      return list;
    };
    return {
      type: 'float32',
      dims: [this.capacity * this.layers, ...this.dims(part)],
      data: this.array(part),
      shareKey: this.sharePrefix(generation) + part,
      // growth keeps every entry's offset: a worker holding the previous generation extends its own copy
      ...(generation > 0 ? { grownFrom: this.sharePrefix(generation - 1) + part } : {}),
      updates,
      current: () => this.feed(part),
    };
  }

  /** Drops the worker's copy of these arrays' handles (the memory goes once nothing references it). */
  forget(): Promise<void> {
    return Session.forgetShared(`${this.owner.shareId}:space:${this.id}:`);
  }

  private sharePrefix(generation: number): string {
    return `${this.owner.shareId}:space:${this.id}:${generation}:`;
  }

  /** A free slot: an unused one, else one more capacity, else the least recently used slot no batch in flight uses. */
  private take(): number {
    if (this.free.length) return this.free.pop()!;
    const canGrow = this.owner.bytes + this.bytes <= this.owner.maxBytes;
    if (!canGrow) {
      const oldestInFlight = this.owner.oldestInFlight();
      for (const [key, s] of this.slots) {
        if (s.lastUse >= oldestInFlight) break; // LRU order: every later slot was used at least as recently
        this.slots.delete(key);
        this.owner.bumpEpoch();
        return s.slot;
      }
    }
    // Within budget, or every slot is in use by batches in flight: grow (correctness before the budget).
    this.grow(this.capacity * 2);
    return this.free.pop()!;
  }

  private grow(capacity: number): void {
    const old = this.capacity;
    const next = new Map<string, Float32Array>();
    for (const p of this.parts) {
      const n = this.layers * size(p.dims);
      const a = new Float32Array(capacity * n);
      const prev = this.arrays.get(p.name);
      if (prev) a.set(prev);
      next.set(p.name, a);
    }
    this.arrays = next;
    this.capacity = capacity;
    // slot 0 stays the zero entry; hand out low slots first
    for (let s = capacity - 1; s >= Math.max(1, old); s--) this.free.push(s);
    if (old > 0) {
      // The worker's copy of the previous generation becomes the prefix of the next one (sent as `grownFrom`,
      // with the ranges written since as patches: `pending` carries over), so growth does not re-post the whole
      // space (38 MB for 16 heads at BERT-base). The generation before that one is no longer needed.
      if (this.generation > 0) void Session.forgetShared(this.sharePrefix(this.generation - 1));
      this.generation++;
    }
  }
}

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

  constructor(
    readonly shareId: string,
    readonly maxBytes: number,
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
    const cur = this.spaces.get(family);
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
