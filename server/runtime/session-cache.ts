/**
 * The sessions of one engine, one per graph variant (and per "weights as inputs" or prepacked base weights),
 * built on first use and bounded by `maxSessions`: each holds its own copy of the base weights, so the least
 * recently used idle session is released first, never one a running batch still uses (`inUse` > 0).
 * Example:
 *   const entry = sessions.acquire(variant, false);
 *   try { await (await entry.session).run(feeds, outputs); } finally { sessions.done(entry); }
 */
import type { BaseConfig } from '../model/config';
import { buildEncoderGraph, variantKey, type Variant } from '../model/encoder-graph';
import type { BaseParams } from './base-params';
import { Session, type Device } from './session';

export interface SessionEntry {
  session: Promise<Session>;
  lastUsed: number;
  inUse: number;
}

export interface SessionCacheOptions {
  device?: Device;
  threads?: number;
  /** Run onnxruntime in the shared worker thread (default true). */
  worker?: boolean;
  /** Most sessions kept (default 8). */
  maxSessions?: number;
}

export class SessionCache {
  private readonly sessions = new Map<string, SessionEntry>();
  private useClock = 0;

  constructor(
    private readonly config: BaseConfig,
    private readonly params: BaseParams,
    private readonly options: SessionCacheOptions,
    private readonly stats: { sessionsBuilt: number; sessionsReleased: number },
  ) {}

  /** The session of a variant, marked in use: call `done(entry)` when the run is over. */
  acquire(variant: Variant, weightsAsInputs: boolean): SessionEntry {
    const key = `${weightsAsInputs ? 'inputs' : 'init'}:${variantKey(variant)}`;
    let entry = this.sessions.get(key);
    if (!entry) {
      this.evict();
      const { graph } = buildEncoderGraph(this.config, variant, (g) => this.params.provider(g, weightsAsInputs));
      const session = Session.create(graph.toBytes(), { device: this.options.device, threads: this.options.threads, worker: this.options.worker ?? true });
      session.then(() => this.stats.sessionsBuilt++).catch(() => this.sessions.delete(key));
      entry = { session, lastUsed: 0, inUse: 0 };
      this.sessions.set(key, entry);
    }
    entry.lastUsed = ++this.useClock;
    entry.inUse++;
    return entry;
  }

  /** Marks one use of `entry` (from `acquire`) as over. */
  done(entry: SessionEntry): void {
    entry.inUse--;
  }

  /** Releases every session. */
  async close(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const e of all) await (await e.session.catch(() => null))?.release().catch(() => undefined);
  }

  /** Releases least recently used idle sessions until a new one fits under `maxSessions`. */
  private evict(): void {
    const max = Math.max(1, this.options.maxSessions ?? 8);
    while (this.sessions.size >= max) {
      const idle = [...this.sessions.entries()].filter(([, e]) => e.inUse === 0).sort((a, b) => a[1].lastUsed - b[1].lastUsed);
      if (!idle.length) return; // all busy: go over the limit rather than free memory a batch still uses
      const [key, e] = idle[0];
      this.sessions.delete(key);
      this.stats.sessionsReleased++;
      void e.session.then((s) => s.release()).catch(() => undefined);
    }
  }
}
