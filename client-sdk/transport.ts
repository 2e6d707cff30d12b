/**
 * The SDK's HTTP transport over `fetch`: the bearer token, a timeout and the caller's AbortSignal on every
 * request, retries with backoff on 429 / 503 (honouring Retry-After, capped), and one error type: non-2xx
 * answers become ModhubError with the server's `code` and request id; an abort is `ABORTED`, a timeout
 * `TIMEOUT`, an unreachable server `NETWORK_ERROR` (status 0). Nothing here is Node-specific.
 * Example: `await transport.send('GET', '/v1/base', {}, (res) => res.json())`.
 */
import { ModhubError } from './errors';

/** Options every SDK call takes. */
export interface CallOptions {
  /** Cancels the call (an abort while waiting to retry also ends it); the error is ModhubError `ABORTED`. */
  signal?: AbortSignal;
  /** Milliseconds one attempt may take, body included (default: the client's `timeoutMs`); then `TIMEOUT`. */
  timeoutMs?: number;
}

export interface RetryOptions {
  /** Retries after a 429 or 503 answer (default 3; 0 = none). */
  retries?: number;
  /** First backoff in ms when the answer has no Retry-After, doubled per retry with jitter (default 250). */
  baseDelayMs?: number;
  /** The longest wait between attempts, Retry-After included (default 30000). */
  maxDelayMs?: number;
}

export interface TransportOptions {
  baseUrl: string;
  token?: string;
  fetch?: typeof fetch;
  timeoutMs?: number;
  retry?: RetryOptions;
}

/** A request body (named here: Node's types have no global BodyInit). */
export type RequestBody = NonNullable<RequestInit['body']>;

export interface SendInit extends CallOptions {
  /** Made anew for each attempt (a stream body cannot be sent twice). */
  body?: () => RequestBody;
  headers?: Record<string, string>;
  /** Request bodies that are streams need `duplex: 'half'` (Node's fetch, Chromium). */
  duplex?: 'half';
}

const RETRY_STATUS = new Set([429, 503]);

/** The wait Retry-After asks for (seconds or an HTTP date), in ms; undefined when absent or unreadable. */
export function retryAfterMs(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const t = Date.parse(value);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new ModhubError(0, 'ABORTED', 'the request was aborted'));
    const onAbort = () => {
      clearTimeout(t);
      reject(new ModhubError(0, 'ABORTED', 'the request was aborted while waiting to retry'));
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Reads a modhub error body (`{error: {code, message, request_id}}`) into a ModhubError. */
export async function errorOf(res: Response, what: string): Promise<ModhubError> {
  let code = `HTTP_${res.status}`;
  let message = `${what} failed with HTTP ${res.status}`;
  let requestId = res.headers.get('x-request-id') ?? undefined;
  const text = await res.text().catch(() => '');
  try {
    const body = JSON.parse(text) as { error?: unknown; code?: unknown };
    if (body.error && typeof body.error === 'object') {
      const e = body.error as { code?: unknown; message?: unknown; request_id?: unknown };
      if (typeof e.code === 'string') code = e.code;
      if (typeof e.message === 'string') message = e.message;
      if (typeof e.request_id === 'string') requestId ??= e.request_id;
    } else if (typeof body.error === 'string') {
      message = body.error;
      if (typeof body.code === 'string') code = body.code;
    }
  } catch {
    if (text) message += `: ${text.slice(0, 200)}`;
  }
  return new ModhubError(res.status, code, message, requestId);
}

export class Transport {
  readonly baseUrl: string;
  private readonly token?: string;
  private readonly fetchImpl: typeof fetch;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;

  constructor(o: TransportOptions) {
    if (!o.baseUrl) throw new TypeError("'baseUrl' is required, e.g. http://localhost:8080");
    this.baseUrl = o.baseUrl.replace(/\/+$/, '');
    this.token = o.token;
    // Bound: a bare `fetch` reference called as a method of another object throws "Illegal invocation" in browsers.
    this.fetchImpl = o.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.timeoutMs = o.timeoutMs ?? 60_000;
    this.retries = o.retry?.retries ?? 3;
    this.baseDelayMs = o.retry?.baseDelayMs ?? 250;
    this.maxDelayMs = o.retry?.maxDelayMs ?? 30_000;
    for (const [k, v] of Object.entries({ timeoutMs: this.timeoutMs, retries: this.retries, baseDelayMs: this.baseDelayMs, maxDelayMs: this.maxDelayMs })) {
      if (!Number.isFinite(v) || v < 0) throw new RangeError(`'${k}' must be a non-negative number, got ${v}`);
    }
  }

  /**
   * Sends `method path`, retrying on 429 / 503, and hands a 2xx (or 304) answer to `read` while the attempt's
   * timeout still runs (so reading the body is bounded too). Throws ModhubError for everything else.
   */
  async send<T>(method: string, urlPath: string, init: SendInit, read: (res: Response) => Promise<T>): Promise<T> {
    const what = `${method} ${urlPath}`;
    const timeoutMs = init.timeoutMs ?? this.timeoutMs;
    for (let attempt = 0; ; attempt++) {
      if (init.signal?.aborted) throw new ModhubError(0, 'ABORTED', `${what} was aborted`);
      const ctl = new AbortController();
      let timedOut = false;
      const timer = timeoutMs > 0 ? setTimeout(() => { timedOut = true; ctl.abort(); }, timeoutMs) : undefined;
      const onAbort = () => ctl.abort();
      init.signal?.addEventListener('abort', onAbort, { once: true });
      const fail = (e: unknown): ModhubError => {
        if (e instanceof ModhubError) return e;
        if (timedOut) return new ModhubError(0, 'TIMEOUT', `${what} took longer than ${timeoutMs} ms (raise 'timeoutMs')`);
        if (init.signal?.aborted) return new ModhubError(0, 'ABORTED', `${what} was aborted`);
        return new ModhubError(0, 'NETWORK_ERROR', `cannot reach ${this.baseUrl} (${what}): ${(e as Error).message}`);
      };
      try {
        const headers: Record<string, string> = { ...init.headers };
        if (this.token) headers.Authorization = `Bearer ${this.token}`;
        const req: RequestInit & { duplex?: 'half' } = { method, headers, body: init.body?.(), signal: ctl.signal };
        if (init.duplex) req.duplex = init.duplex;
        let res: Response;
        try {
          res = await this.fetchImpl(`${this.baseUrl}${urlPath}`, req);
        } catch (e) {
          throw fail(e);
        }
        if (res.ok || res.status === 304) {
          try {
            return await read(res);
          } catch (e) {
            throw fail(e);
          }
        }
        if (RETRY_STATUS.has(res.status) && attempt < this.retries) {
          const asked = retryAfterMs(res.headers.get('retry-after'));
          const backoff = this.baseDelayMs * 2 ** attempt * (0.5 + Math.random() / 2);
          await res.body?.cancel().catch(() => undefined);
          clearTimeout(timer);
          await sleep(Math.min(asked ?? backoff, this.maxDelayMs), init.signal);
          continue;
        }
        throw await errorOf(res, what).catch((e: unknown) => fail(e));
      } finally {
        clearTimeout(timer);
        init.signal?.removeEventListener('abort', onAbort);
      }
    }
  }
}
