/**
 * `ModhubClient`: the typed client for a modhub hub and inference server. It runs wherever `fetch` runs (Node ≥ 20,
 * browsers, Deno, Bun): sha256 through Web Crypto, bodies as Blob / ReadableStream, no Node imports (the
 * file-system helpers live in ./node.ts, `@modhub/client/node`). Every call takes `signal` and `timeoutMs`; 429 /
 * 503 answers are retried (transport.ts); errors are ModhubError with the server's code and request id; answers
 * are typed by the wire schemas (wire.ts), and `validateResponses: true` also checks them at run time.
 * Example:
 *   const hub = new ModhubClient({ baseUrl: 'http://localhost:8080', token });
 *   const [p] = await hub.classify(['Bayern gewinnt'], { composition: stack('lang/de', 'task/topic') });
 */
import type { z } from 'zod';
import { ModhubError } from './errors';
import { predictionsOf, type ClassificationPrediction, type FillMaskPrediction, type TokenClassificationPrediction } from './results';
import { arrayBufferView, sha256Hex, type BytesLike } from './sha256';
import { tarBlob } from './tar';
import { Transport, type CallOptions, type RequestBody, type RetryOptions } from './transport';
import { DEFAULT_RESUMABLE_ABOVE, ResumableUploader, type ResumableSource, type ResumableUploadOptions } from './uploads';
import * as W from './wire';
import type {
  BaseInfo,
  BaseInput,
  Composition,
  CreatedToken,
  CreateTokenInput,
  InferRequest,
  InferResponse,
  ModuleInfo,
  PublishResult,
  SearchPage,
  SearchParams,
  ServedBase,
  TokenInfo,
  UploadSession,
  VersionInfo,
  YankResult,
} from './wire';

export type { CallOptions, RetryOptions, ResumableSource, ResumableUploadOptions };

export interface ClientOptions {
  /** Hub URL, e.g. http://localhost:8080 */
  baseUrl: string;
  /** Bearer token (mh_...). */
  token?: string;
  /** fetch implementation (default: the global fetch). */
  fetch?: typeof fetch;
  /** Milliseconds one attempt may take, body included (default 60000; 0 = no limit). Per call: `timeoutMs`. */
  timeoutMs?: number;
  /** Retries on 429 / 503 (default 3, backoff from 250 ms, Retry-After honoured up to 30 s). */
  retry?: RetryOptions;
  /** Check every JSON answer against its wire schema; a mismatch throws ModhubError INVALID_RESPONSE (default false). */
  validateResponses?: boolean;
}

/** Progress of an upload or download: bytes so far, and the total when known (else 0). */
export interface Progress {
  loaded: number;
  total: number;
}

/** What to publish: a tar / tar.gz archive, or the package files by name (module.json, weights.safetensors, README.md). */
export type PublishSource = { archive: BytesLike } | { files: Record<string, BytesLike> };

export interface PublishOptions extends CallOptions {
  /** Accept a base the hub has not registered (admin token). */
  allowUnknownBase?: boolean;
  /**
   * Upload progress. The body is then streamed (`duplex: 'half'`), which Node and Deno do over HTTP/1.1;
   * Chromium streams request bodies only over HTTP/2, so in a browser leave this out for an HTTP/1.1 hub.
   */
  onProgress?: (p: Progress) => void;
  /** sha256 hex per file (or of the archive, key `archive`) when already known; computed otherwise. */
  digests?: Record<string, string>;
  /**
   * Packages bigger than this many bytes go through a resumable upload (chunks that survive a dropped
   * connection; files are sent as one tar) instead of one POST (default 64 MiB; 0 = always, Infinity = never).
   */
  resumableAbove?: number;
  /** Bytes per chunk of a resumable upload (default 8 MiB). */
  chunkBytes?: number;
}

export interface DownloadOptions extends CallOptions {
  /** An inclusive byte range; a ranged answer is not digest-checked (the whole file is). */
  range?: { start: number; end?: number };
  onProgress?: (p: Progress) => void;
}

/** What the typed inference calls take: texts (or text pairs) and the composition. */
export interface PredictOptions extends CallOptions {
  /** Modules to run, e.g. `stack('lang/de', 'task/topic')`; absent = the bare base. */
  composition?: Composition | null;
  top_k?: number;
  max_length?: number;
}
export type TextInput = string | { text: string; text_pair?: string };

/** The files a package folder may hold (format version 1). */
export const PACKAGE_FILES = ['module.json', 'weights.safetensors', 'README.md'] as const;

/** Splits `ns/name[@rev]` (rev defaults to `latest`). */
export function splitRef(ref: string): { id: string; namespace: string; name: string; rev: string } {
  const at = ref.indexOf('@');
  const id = at < 0 ? ref : ref.slice(0, at);
  const rev = at < 0 ? 'latest' : ref.slice(at + 1);
  const parts = id.split('/');
  if (parts.length !== 2 || !parts[0] || !parts[1] || !rev) {
    throw new ModhubError(400, 'INVALID_REF', `module reference '${ref}' must be ns/name, ns/name@version or ns/name@tag`);
  }
  return { id, namespace: parts[0], name: parts[1], rev };
}

const enc = encodeURIComponent;

function blobOf(b: BytesLike): Blob {
  return b instanceof Blob ? b : new Blob([arrayBufferView(b)]);
}

/** Reads a body whole, reporting progress per chunk. */
export async function readBody(res: Response, onProgress?: (p: Progress) => void): Promise<Uint8Array<ArrayBuffer>> {
  if (!onProgress || !res.body) return new Uint8Array(await res.arrayBuffer());
  const total = Number(res.headers.get('content-length') ?? 0);
  const parts: Uint8Array[] = [];
  let loaded = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    loaded += value.byteLength;
    onProgress({ loaded, total });
  }
  const out = new Uint8Array(loaded);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** Bytes per progress step of an upload. */
const UPLOAD_STEP = 64 * 1024;

/** `blob` as a stream of pieces of at most UPLOAD_STEP bytes, reporting how much of it the reader (fetch) has taken. */
function countingStream(blob: Blob, onProgress: (p: Progress) => void): ReadableStream<Uint8Array> {
  let loaded = 0;
  return blob.stream().pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, ctl) {
        for (let at = 0; at < chunk.byteLength; at += UPLOAD_STEP) {
          const piece = chunk.subarray(at, at + UPLOAD_STEP);
          ctl.enqueue(piece);
          loaded += piece.byteLength;
          onProgress({ loaded, total: blob.size });
        }
      },
    }),
  );
}

export class ModhubClient {
  readonly baseUrl: string;
  protected readonly transport: Transport;
  private readonly validate: boolean;
  private readonly uploads: ResumableUploader;

  constructor(opts: ClientOptions) {
    if (!opts || !opts.baseUrl) throw new TypeError("ModhubClient: 'baseUrl' is required, e.g. { baseUrl: 'http://localhost:8080' }");
    this.transport = new Transport(opts);
    this.baseUrl = this.transport.baseUrl;
    this.validate = opts.validateResponses ?? false;
    this.uploads = new ResumableUploader(this.transport, (schema, what, data) => this.parse(schema, what, data));
  }

  // ---------------------------------------------------------------- transport

  /** Sends a JSON request and reads the JSON answer, typed (and, with validateResponses, checked) by `schema`. */
  protected async json<S extends z.ZodType>(schema: S, method: string, urlPath: string, body?: unknown, o: CallOptions = {}): Promise<z.output<S>> {
    const init = body === undefined ? {} : { body: () => JSON.stringify(body), headers: { 'Content-Type': 'application/json' } };
    const data = await this.transport.send(method, urlPath, { ...o, ...init }, (res) => res.json() as Promise<unknown>);
    return this.parse(schema, `${method} ${urlPath}`, data);
  }

  private parse<S extends z.ZodType>(schema: S, what: string, data: unknown): z.output<S> {
    if (!this.validate) return data as z.output<S>;
    const r = schema.safeParse(data);
    if (!r.success) {
      const problems = r.error.issues.map((i) => `${i.path.map(String).join('.') || '(body)'}: ${i.message}`).join('; ');
      throw new ModhubError(0, 'INVALID_RESPONSE', `${what}: the answer does not match the wire schema: ${problems}`);
    }
    return r.data;
  }

  protected versionPath(ref: string): string {
    const r = splitRef(ref);
    return `/v1/modules/${enc(r.namespace)}/${enc(r.name)}/versions/${enc(r.rev)}`;
  }

  // ---------------------------------------------------------------- publish

  /**
   * Publishes a package (archive bytes or its files), with sha256 digests the server checks. Above
   * `resumableAbove` bytes (default 64 MiB) it goes through a resumable upload (uploadResumable).
   */
  async publish(source: PublishSource, opts: PublishOptions = {}): Promise<PublishResult> {
    const above = opts.resumableAbove ?? DEFAULT_RESUMABLE_ABOVE;
    if (typeof above !== 'number' || Number.isNaN(above) || above < 0) throw new RangeError(`'resumableAbove' must be a number of bytes >= 0 (Infinity = never), got ${String(above)}`);
    const resumable = { ...opts, digest: opts.digests?.archive };
    if ('archive' in source) {
      const blob = blobOf(source.archive);
      if (blob.size > above) return this.uploadResumable(blob, resumable);
    } else {
      const blobs = Object.fromEntries(Object.entries(source.files).map(([n, b]) => [n, blobOf(b)]));
      if (Object.values(blobs).reduce((n, b) => n + b.size, 0) > above) {
        if (!blobs['module.json']) throw new ModhubError(0, 'INVALID_PACKAGE', "the package has no 'module.json' file");
        return this.uploadResumable(tarBlob(blobs), { ...resumable, digest: undefined });
      }
    }
    const form = new FormData();
    if ('archive' in source) {
      form.set('sha256', opts.digests?.archive ?? (await sha256Hex(source.archive)));
      form.set('archive', blobOf(source.archive), 'module.tar');
    } else {
      if (!source.files['module.json']) throw new ModhubError(0, 'INVALID_PACKAGE', "the package has no 'module.json' file");
      for (const [n, b] of Object.entries(source.files)) {
        form.set(`sha256.${n}`, opts.digests?.[n] ?? (await sha256Hex(b)));
        form.set(n, blobOf(b), n);
      }
    }
    if (opts.allowUnknownBase) form.set('allow_unknown_base', 'true');
    let body: () => RequestBody = () => form;
    let headers: Record<string, string> | undefined;
    const onProgress = opts.onProgress;
    if (onProgress) {
      // The multipart bytes once, so each attempt can stream them again and the total is exact.
      const req = new Request('http://modhub.invalid/', { method: 'POST', body: form });
      headers = { 'Content-Type': req.headers.get('content-type')! };
      const blob = await req.blob();
      body = () => countingStream(blob, onProgress);
    }
    const data = await this.transport.send('POST', '/v1/modules', { ...opts, body, headers, duplex: onProgress ? 'half' : undefined }, (res) => res.json() as Promise<unknown>);
    return this.parse(W.PublishResultSchema, 'POST /v1/modules', data);
  }

  /**
   * Publishes a tar / tar.gz archive through a resumable upload (`/v1/uploads`): chunks of `chunkBytes`, resumed
   * from the hub's offset after a dropped connection, a timeout or a range mismatch, then a commit the hub checks
   * against the archive's sha256 (`digest`, computed by reading a Blob once when absent; required for a stream).
   * An error the upload can go on from names the session to pass as `resumeFrom`.
   */
  uploadResumable(source: ResumableSource, opts: ResumableUploadOptions = {}): Promise<PublishResult> {
    return this.uploads.upload(source, opts);
  }

  /** Opens an upload session by hand (`POST /v1/uploads`); uploadResumable opens its own unless `resumeFrom`. */
  openUpload(o: CallOptions = {}): Promise<UploadSession> {
    return this.uploads.open(o);
  }

  /** Where an upload session ends (`offset`): resume from there. Takes the id or the session's Location. */
  uploadStatus(id: string, o: CallOptions = {}): Promise<UploadSession> {
    return this.uploads.status(id, o);
  }

  /** Cancels an upload session and drops its bytes. */
  cancelUpload(id: string, o: CallOptions = {}): Promise<void> {
    return this.uploads.cancel(id, o);
  }

  // ---------------------------------------------------------------- read

  /** Searches modules. */
  async search(params: SearchParams = {}, o: CallOptions = {}): Promise<SearchPage> {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, String(v));
    const s = q.toString();
    return this.json(W.SearchPageSchema, 'GET', `/v1/modules${s ? `?${s}` : ''}`, undefined, o);
  }

  /** Module info with versions and tags. */
  async info(id: string, o: CallOptions = {}): Promise<ModuleInfo> {
    const r = splitRef(id);
    return this.json(W.ModuleInfoSchema, 'GET', `/v1/modules/${enc(r.namespace)}/${enc(r.name)}`, undefined, o);
  }

  /** One version (`ns/name@version`, `ns/name@tag`, or `ns/name` = latest) with its manifest. */
  async version(ref: string, o: CallOptions = {}): Promise<VersionInfo> {
    return this.json(W.VersionInfoSchema, 'GET', this.versionPath(ref), undefined, o);
  }

  /** The version's tar archive (its files are digest-checked by the server on publish; check them with `version()`). */
  async downloadArchive(ref: string, o: DownloadOptions = {}): Promise<Uint8Array<ArrayBuffer>> {
    return this.download(`${this.versionPath(ref)}/archive`, `the archive of ${ref}`, o, false);
  }

  /** One file of a version; a whole file is checked against its sha256 (the ETag), a `range` is not. */
  async downloadFile(ref: string, file: string, o: DownloadOptions = {}): Promise<Uint8Array<ArrayBuffer>> {
    return this.download(`${this.versionPath(ref)}/files/${enc(file)}`, `'${file}' of ${ref}`, o, true);
  }

  /** `etagIsDigest`: a file's ETag is its sha256; an archive's is the version digest, not that of the tar bytes. */
  private async download(urlPath: string, what: string, o: DownloadOptions, etagIsDigest: boolean): Promise<Uint8Array<ArrayBuffer>> {
    const r = o.range;
    if (r && (!Number.isInteger(r.start) || r.start < 0 || (r.end !== undefined && (!Number.isInteger(r.end) || r.end < r.start)))) {
      throw new RangeError(`'range' must be whole numbers with 0 <= start <= end, got ${JSON.stringify(r)}`);
    }
    const headers: Record<string, string> = r ? { Range: `bytes=${r.start}-${r.end ?? ''}` } : {};
    return this.transport.send('GET', urlPath, { ...o, headers }, async (res) => {
      const data = await readBody(res, o.onProgress);
      const etag = res.headers.get('etag')?.replace(/"/g, '');
      if (etagIsDigest && res.status === 200 && etag && /^[0-9a-f]{64}$/.test(etag) && (await sha256Hex(data)) !== etag) {
        throw new ModhubError(502, 'DIGEST_MISMATCH', `downloaded ${what} does not match its sha256 ${etag}`);
      }
      return data;
    });
  }

  // ---------------------------------------------------------------- write

  /** Points a tag at a version. */
  async setTag(id: string, tag: string, version: string, o: CallOptions = {}): Promise<Record<string, string>> {
    const r = splitRef(id);
    return (await this.json(W.TagsSchema, 'PUT', `/v1/modules/${enc(r.namespace)}/${enc(r.name)}/tags/${enc(tag)}`, { version }, o)).tags;
  }

  /** Removes a tag. */
  async removeTag(id: string, tag: string, o: CallOptions = {}): Promise<Record<string, string>> {
    const r = splitRef(id);
    return (await this.json(W.TagsSchema, 'DELETE', `/v1/modules/${enc(r.namespace)}/${enc(r.name)}/tags/${enc(tag)}`, undefined, o)).tags;
  }

  /** Yanks `ns/name@version` (or restores it with `yanked: false`). */
  async yank(ref: string, opts: { reason?: string; yanked?: boolean } & CallOptions = {}): Promise<YankResult> {
    return this.json(W.YankResultSchema, 'POST', `${this.versionPath(ref)}/yank`, { yanked: opts.yanked ?? true, reason: opts.reason }, opts);
  }

  /** Deletes a version (`ns/name@version`) or a whole module (`ns/name`); admin only. */
  async delete(ref: string, o: CallOptions = {}): Promise<void> {
    const r = splitRef(ref);
    const whole = !ref.includes('@');
    await this.transport.send('DELETE', whole ? `/v1/modules/${enc(r.namespace)}/${enc(r.name)}` : this.versionPath(ref), o, async (res) => void (await res.body?.cancel()));
  }

  // ---------------------------------------------------------------- admin

  /** Creates a token (admin); the secret is in `token` and is shown only once. */
  createToken(t: CreateTokenInput, o: CallOptions = {}): Promise<CreatedToken> {
    return this.json(W.CreatedTokenSchema, 'POST', '/v1/tokens', t, o);
  }

  async listTokens(o: CallOptions = {}): Promise<TokenInfo[]> {
    return (await this.json(W.TokenListSchema, 'GET', '/v1/tokens', undefined, o)).tokens;
  }

  async revokeToken(id: string, o: CallOptions = {}): Promise<void> {
    await this.transport.send('DELETE', `/v1/tokens/${enc(id)}`, o, async (res) => void (await res.body?.cancel()));
  }

  /** Registers a base modules may be published against (admin). */
  registerBase(b: BaseInput, o: CallOptions = {}): Promise<BaseInfo> {
    return this.json(W.BaseInfoSchema, 'POST', '/v1/bases', b, o);
  }

  async listBases(o: CallOptions = {}): Promise<BaseInfo[]> {
    return (await this.json(W.BaseListSchema, 'GET', '/v1/bases', undefined, o)).bases;
  }

  /** The token the client sends, as the server sees it (null when anonymous). */
  async whoami(o: CallOptions = {}): Promise<TokenInfo | null> {
    return (await this.json(W.WhoamiSchema, 'GET', '/v1/whoami', undefined, o)).token;
  }

  // ---------------------------------------------------------------- inference

  /** Runs texts through the served base composed with hub modules (`POST /v1/infer`): every kind of answer. */
  async infer(req: InferRequest, o: CallOptions = {}): Promise<InferResponse> {
    return this.json(W.InferResponseSchema, 'POST', '/v1/infer', req, o);
  }

  private request(inputs: TextInput[], o: PredictOptions, task?: InferRequest['task']): InferRequest {
    if (!Array.isArray(inputs) || inputs.length === 0) throw new TypeError("'inputs' must be a non-empty array of texts or { text, text_pair }");
    const req: InferRequest = { inputs: inputs.map((t) => (typeof t === 'string' ? { text: t } : t)) };
    if (o.composition != null) req.composition = o.composition;
    if (task) req.task = task;
    if (o.top_k !== undefined) req.top_k = o.top_k;
    if (o.max_length !== undefined) req.max_length = o.max_length;
    return req;
  }

  /** One classification per input (label, score, top scores); the composition must end in a classification head. */
  async classify(inputs: TextInput[], o: PredictOptions = {}): Promise<ClassificationPrediction[]> {
    return predictionsOf(await this.infer(this.request(inputs, o), o), 'classification');
  }

  /** Per-token labels per input; the composition must end in a token-classification head. */
  async tagTokens(inputs: TextInput[], o: PredictOptions = {}): Promise<TokenClassificationPrediction[]> {
    return predictionsOf(await this.infer(this.request(inputs, o), o), 'token_classification');
  }

  /** Candidates for each mask token per input. */
  async fillMask(inputs: TextInput[], o: PredictOptions = {}): Promise<FillMaskPrediction[]> {
    return predictionsOf(await this.infer(this.request(inputs, o, 'fill_mask'), o), 'fill_mask');
  }

  /** One sentence embedding per input. */
  async embed(inputs: TextInput[], o: PredictOptions = {}): Promise<number[][]> {
    return predictionsOf(await this.infer(this.request(inputs, o, 'embedding'), o), 'embedding').map((p) => p.embedding);
  }

  /** The base model the server runs (`GET /v1/base`). */
  async servedBase(o: CallOptions = {}): Promise<ServedBase> {
    return this.json(W.ServedBaseSchema, 'GET', '/v1/base', undefined, o);
  }
}
