/**
 * The request queue between HTTP and the engine: admission, deadlines and batch formation (TEI's
 * router/queue.rs in spirit). Knows rows and token counts, not models.
 *  - Admission reserves capacity atomically (no await between the check and the reservation), counted in rows
 *    AND tokens, after tokenisation; a full queue refuses with QueueFullError whose `retryAfterSeconds` comes
 *    from the measured drain rate (rows/s and tokens/s of recent batches).
 *  - A job whose signal aborts (client gone, deadline passed) is removed while it waits, so it never runs; its
 *    promise rejects with the abort reason at once, and its capacity is released when it leaves the queue (or
 *    when the batch it is in ends).
 *  - Batches (formBatch): the oldest job and jobs of its group (jobs that need the same engine outputs), within
 *    `maxBatchRows` rows and `maxBatchTokens` padded tokens, taken by the onnxruntime run they join (QueueJob `run`):
 *    the anchor's run, then rows that fit any run or are alone in theirs, then other runs whole; within each,
 *    nearest in token length to the anchor (so rows of one run pad little). Which runs jobs name is the caller's
 *    choice (InferenceService: a sparse-diff set's own run, and with `batchByRun` its adapters' rank classes too).
 *  - A batch's runner may finish jobs before the whole batch is done (`finished(i)`): the engine runs a batch as
 *    row groups one after another, and rows of an early group need not wait for the later ones.
 *  - It may also let the next batch start before it ends (`release()`): once what is left of it leaves a core free
 *    (the engine's single-thread sparse-diff runs), the next batch is formed and prepared beside it, and its runs
 *    queue behind it in the worker. At most two batches are in flight.
 * Example:
 *   const q = new BatchQueue<MyJob>({ maxBatchRows: 32 }, async (jobs, finished) => { ... run them, finished(i) as each is done ... });
 *   q.reserve(rows, tokens); const p = q.push(job);
 */

import { CodedError } from '../../modules-store/errors';

/** Refused at admission: the queue holds as many rows or tokens as it may (429 QUEUE_FULL with Retry-After). */
export class QueueFullError extends CodedError {
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super('QUEUE_FULL', message);
    this.name = 'QueueFullError';
  }
}

/** A request larger than the whole queue may hold: retrying cannot help (413 REQUEST_TOO_LARGE). */
export class RequestTooLargeError extends CodedError {
  constructor(message: string) {
    super('REQUEST_TOO_LARGE', message);
    this.name = 'RequestTooLargeError';
  }
}

/** The request's deadline (`timeout_ms`) passed before its rows finished (504 DEADLINE_EXCEEDED). */
export class DeadlineError extends CodedError {
  constructor(readonly timeoutMs: number) {
    super('DEADLINE_EXCEEDED', `the request did not finish within its deadline of ${timeoutMs} ms (timeout_ms); retry with a larger timeout_ms or fewer inputs`);
    this.name = 'DeadlineError';
  }
}

/** The client went away; its work is dropped (no response is sent). */
export class ClientGoneError extends Error {
  constructor() {
    super('the client closed the connection before its request was answered');
    this.name = 'ClientGoneError';
  }
}

export interface QueueOptions {
  /** Most rows merged into one engine run (default 32). */
  maxBatchRows?: number;
  /** Most padded tokens (rows × longest row) in one engine run (default 8192); a single longer row runs alone. */
  maxBatchTokens?: number;
  /** How long the oldest waiting job waits for company before a lone row runs (default 5 ms). */
  maxWaitMs?: number;
  /** Rows admitted and not finished (default 4096). */
  maxQueueRows?: number;
  /** Tokens of admitted, unfinished rows (default 262144). */
  maxQueueTokens?: number;
}

/** What a job needs from the queue. */
export interface QueueJob {
  /** Real tokens of the row. */
  tokens: number;
  /** Jobs batch only with jobs of the same group (e.g. the engine outputs they need). */
  group: string;
  /** The engine run the job joins (Engine.runKey): jobs of one run are cheaper in one batch; none: it fits any run. */
  run?: string;
  signal?: AbortSignal;
}

/** One formed batch, for metrics and tests. */
export interface BatchInfo {
  rows: number;
  tokens: number;
  /** rows × the longest row's tokens: what the engine computes. */
  paddedTokens: number;
  lengths: number[];
}

interface Entry<J extends QueueJob> {
  job: J;
  enqueued: number;
  state: 'queued' | 'running' | 'done';
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** Exponentially weighted throughput of the engine (per second of engine time) and its queue. */
export class DrainRate {
  rowsPerSecond = 0;
  tokensPerSecond = 0;

  constructor(private readonly weight = 0.3) {}

  /** Records one finished batch of `rows` rows / `tokens` tokens that took `seconds`. */
  observe(rows: number, tokens: number, seconds: number): void {
    if (!(seconds > 0)) return;
    const w = this.rowsPerSecond === 0 ? 1 : this.weight;
    this.rowsPerSecond += w * (rows / seconds - this.rowsPerSecond);
    this.tokensPerSecond += w * (tokens / seconds - this.tokensPerSecond);
  }

  /**
   * Seconds until `excessRows` rows and `excessTokens` tokens have drained at the measured rate, rounded up and
   * clamped to [1, 60]; 1 before any batch was measured.
   */
  retryAfter(excessRows: number, excessTokens: number): number {
    if (this.rowsPerSecond <= 0) return 1;
    const s = Math.max(excessRows / this.rowsPerSecond, excessTokens / Math.max(1e-9, this.tokensPerSecond));
    return Math.min(60, Math.max(1, Math.ceil(s)));
  }
}

export class BatchQueue<J extends QueueJob> {
  /** Waiting entries, oldest first. */
  private waiting: Entry<J>[] = [];
  private timer: NodeJS.Timeout | null = null;
  /** Batches running, and those of them that have not released the next one (`release`). */
  private running = 0;
  private holding = 0;
  private reservedRows = 0;
  private reservedTokens = 0;
  private idleWaiters: (() => void)[] = [];
  readonly rate = new DrainRate();
  readonly stats = { batches: 0, rows: 0, dropped: 0, rejected: 0, maxReservedRows: 0, maxReservedTokens: 0 };
  /** Called for every batch formed (metrics). */
  onBatch: ((b: BatchInfo) => void) | null = null;

  constructor(
    private readonly opts: QueueOptions,
    /**
     * Runs a batch; may report jobs done early with `finished(index into jobs)` and let the next batch start with
     * `release()`; must settle nothing itself: the returned promise resolving means every job ran.
     */
    private readonly run: (jobs: J[], finished: (i: number) => void, release: () => void) => Promise<void>,
  ) {}

  get limits(): Required<QueueOptions> {
    return {
      maxBatchRows: this.opts.maxBatchRows ?? 32,
      maxBatchTokens: this.opts.maxBatchTokens ?? 8192,
      maxWaitMs: this.opts.maxWaitMs ?? 5,
      maxQueueRows: this.opts.maxQueueRows ?? 4096,
      maxQueueTokens: this.opts.maxQueueTokens ?? 262_144,
    };
  }

  /** Rows and tokens admitted and not finished. */
  get reserved(): { rows: number; tokens: number } {
    return { rows: this.reservedRows, tokens: this.reservedTokens };
  }

  /**
   * Admits `rows` rows of `tokens` tokens in all, or throws (QueueFullError, RequestTooLargeError). Synchronous:
   * the check and the reservation happen in one step. The caller must push exactly those rows next (each push
   * gives back its row and tokens when it settles) or call `release` for what it does not push.
   */
  reserve(rows: number, tokens: number): void {
    const l = this.limits;
    if (rows > l.maxQueueRows || tokens > l.maxQueueTokens) {
      throw new RequestTooLargeError(`the request has ${rows} rows / ${tokens} tokens, more than the server queues at once (${l.maxQueueRows} rows / ${l.maxQueueTokens} tokens); split it`);
    }
    const excessRows = this.reservedRows + rows - l.maxQueueRows;
    const excessTokens = this.reservedTokens + tokens - l.maxQueueTokens;
    if (excessRows > 0 || excessTokens > 0) {
      this.stats.rejected++;
      const after = this.rate.retryAfter(Math.max(0, excessRows), Math.max(0, excessTokens));
      const rate = this.rate.rowsPerSecond > 0 ? `; it drains about ${this.rate.rowsPerSecond.toFixed(0)} rows/s` : '';
      throw new QueueFullError(`the server has ${this.reservedRows} rows / ${this.reservedTokens} tokens queued (limit ${l.maxQueueRows} / ${l.maxQueueTokens})${rate}; retry after ${after} s`, after);
    }
    this.reservedRows += rows;
    this.reservedTokens += tokens;
    this.stats.maxReservedRows = Math.max(this.stats.maxReservedRows, this.reservedRows);
    this.stats.maxReservedTokens = Math.max(this.stats.maxReservedTokens, this.reservedTokens);
  }

  /** Gives back reserved capacity that will not be pushed. */
  release(rows: number, tokens: number): void {
    this.reservedRows -= rows;
    this.reservedTokens -= tokens;
    this.notifyIdle();
  }

  /** Queues one reserved row; resolves when its batch ran, rejects with the abort reason if its signal aborts first. */
  push(job: J): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const e: Entry<J> = { job, enqueued: performance.now(), state: 'queued', resolve, reject };
      const settleEarly = () => {
        if (e.state === 'queued') {
          const i = this.waiting.indexOf(e);
          if (i >= 0) this.waiting.splice(i, 1);
          this.stats.dropped++;
          this.finish(e);
        }
        // A running row's capacity comes back when its batch ends; the caller is answered now.
        reject(job.signal!.reason);
      };
      if (job.signal?.aborted) {
        e.state = 'done';
        this.stats.dropped++;
        this.release(1, job.tokens);
        reject(job.signal.reason);
        return;
      }
      job.signal?.addEventListener('abort', settleEarly, { once: true });
      e.resolve = () => {
        job.signal?.removeEventListener('abort', settleEarly);
        resolve();
      };
      e.reject = (err) => {
        job.signal?.removeEventListener('abort', settleEarly);
        reject(err);
      };
      this.waiting.push(e);
      this.schedule();
    });
  }

  /** Resolves once nothing is reserved, waiting or running. */
  idle(): Promise<void> {
    if (this.reservedRows === 0 && !this.running && !this.waiting.length) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private finish(e: Entry<J>): void {
    if (e.state === 'done') return;
    e.state = 'done';
    this.release(1, e.job.tokens);
  }

  private notifyIdle(): void {
    if (this.reservedRows !== 0 || this.running || this.waiting.length) return;
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const r of w) r();
  }

  /**
   * While the engine runs, arrivals wait and the next batch forms the moment it is free; an idle engine waits
   * maxWaitMs for company unless a full batch (rows or padded tokens) is already waiting.
   */
  private schedule(): void {
    if (this.busy()) return;
    const l = this.limits;
    const tokens = this.waiting.reduce((a, e) => a + e.job.tokens, 0);
    if (this.waiting.length >= l.maxBatchRows || tokens >= l.maxBatchTokens) return this.runNext();
    if (!this.timer) this.timer = setTimeout(() => this.runNext(), l.maxWaitMs);
  }

  /** The next batch (formBatch), taken out of the waiting list. */
  private form(): Entry<J>[] {
    const picked = formBatch(this.waiting, this.limits);
    const set = new Set(picked);
    this.waiting = this.waiting.filter((e) => !set.has(e));
    return picked;
  }

  /** Whatever arrived meanwhile goes next, at once (after pending I/O callbacks). */
  private runSoon(): void {
    if (this.waiting.length) setImmediate(() => this.runNext());
  }

  /** Whether a new batch must wait: one running has not released it, or two are in flight. */
  private busy(): boolean {
    return this.holding > 0 || this.running >= 2;
  }

  private runNext(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.busy() || !this.waiting.length) return;
    const batch = this.form();
    for (const e of batch) e.state = 'running';
    this.running++;
    this.holding++;
    let holds = true;
    const letGo = () => {
      if (!holds) return;
      holds = false;
      this.holding--;
    };
    const release = () => {
      letGo();
      this.runSoon();
    };
    const tokens = batch.reduce((a, e) => a + e.job.tokens, 0);
    const lengths = batch.map((e) => e.job.tokens);
    this.onBatch?.({ rows: batch.length, tokens, paddedTokens: batch.length * Math.max(...lengths), lengths });
    const started = performance.now();
    // a job answered before its batch ends gives its capacity back then; the batch's rate counts the whole run
    const finished = (i: number) => {
      const e = batch[i];
      if (!e || e.state !== 'running') return;
      e.resolve();
      this.finish(e);
    };
    void this.run(batch.map((e) => e.job), finished, release)
      .then(
        () => {
          this.stats.batches++;
          this.stats.rows += batch.length;
          this.rate.observe(batch.length, tokens, (performance.now() - started) / 1000);
          for (const e of batch) if (e.state === 'running') e.resolve();
        },
        (err) => {
          for (const e of batch) if (e.state === 'running') e.reject(err);
        },
      )
      .finally(() => {
        for (const e of batch) this.finish(e);
        this.running--;
        letGo();
        this.runSoon();
        this.notifyIdle();
      });
  }
}

/**
 * The next batch out of `waiting` (oldest first), within `maxBatchRows` rows and `maxBatchTokens` padded tokens, by
 * the run its jobs join (QueueJob `run`; the engine runs a batch as one run per run key, plus one shared by the jobs
 * without a key, each split into length ranges):
 *  1. the oldest job (the anchor; it goes even if longer than the token budget), then the jobs of its run;
 *  2. jobs that fit any run and jobs alone in their run among those waiting: either costs the same in this batch
 *     as in a later one (waiting would not give a lone job company), so they come by length like any neighbour;
 *  3. other runs whole, most jobs first: a run cut in two costs a second run, so it waits for a batch with room.
 * Within each step, jobs of the anchor's group only, nearest in length to the anchor first. Step 2 must not put
 * lone jobs last: behind a steady supply of jobs that fit any run they would wait until they are the oldest (an
 * LT-SFT set's rows at BERT-base: 5–11 s), and a closed loop would count the cheaper mix served meanwhile as
 * throughput.
 */
export function formBatch<E extends { job: QueueJob; enqueued: number }>(waiting: readonly E[], limits: Pick<Required<QueueOptions>, 'maxBatchRows' | 'maxBatchTokens'>): E[] {
  const anchor = waiting[0];
  if (!anchor) return [];
  const same = waiting.filter((e) => e.job.group === anchor.job.group);
  const rowsOf = new Map<string, number>();
  for (const e of same) if (e.job.run !== undefined) rowsOf.set(e.job.run, (rowsOf.get(e.job.run) ?? 0) + 1);
  const ranked = same.map((e) => {
    const run = e.job.run;
    const rows = run === undefined ? 0 : rowsOf.get(run)!;
    const step = e === anchor ? 0 : run !== undefined && run === anchor.job.run ? 1 : run === undefined || rows === 1 ? 2 : 3;
    return { e, step, rows: step === 3 ? rows : 0, run: step === 3 ? run! : '', dist: Math.abs(e.job.tokens - anchor.job.tokens) };
  });
  ranked.sort((a, b) => a.step - b.step || b.rows - a.rows || (a.run < b.run ? -1 : a.run > b.run ? 1 : 0) || a.dist - b.dist || a.e.enqueued - b.e.enqueued);
  const picked: E[] = [];
  let longest = 0;
  const fits = (n: number, tokens: number) => n <= limits.maxBatchRows && n * Math.max(longest, tokens) <= limits.maxBatchTokens;
  for (let k = 0; k < ranked.length && picked.length < limits.maxBatchRows; ) {
    const { e, step, run } = ranked[k];
    if (step < 3) {
      if (!picked.length || fits(picked.length + 1, e.job.tokens)) {
        picked.push(e);
        longest = Math.max(longest, e.job.tokens);
      }
      k++;
      continue;
    }
    let end = k;
    while (end < ranked.length && ranked[end].run === run) end++;
    const whole = ranked.slice(k, end).map((x) => x.e);
    if (fits(picked.length + whole.length, Math.max(...whole.map((x) => x.job.tokens)))) {
      picked.push(...whole);
      longest = Math.max(longest, ...whole.map((x) => x.job.tokens));
    }
    k = end;
  }
  return picked;
}
