/**
 * `ModhubClient`: a typed client for the modhub hub API over fetch (Node 20+). Publishing reads a package folder
 * or archive from disk; downloads verify sha256 digests. Errors are `ModhubError` with the server's `code`.
 * Answers are typed by the wire schemas (wire.ts); `validateResponses: true` also checks each one against its
 * schema at run time (what the conformance test does; off by default so newer servers may add fields).
 * Example:
 *   const hub = new ModhubClient({ baseUrl: 'http://localhost:8080', token: process.env.MODHUB_TOKEN });
 *   await hub.publish('./my-module');
 *   const page = await hub.search({ q: 'german', kind: 'bottleneck' });
 *   await hub.pull('lang/de@1.0.0', './modules/lang-de');
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { z } from 'zod';
import { ModhubError } from './errors';
import * as W from './wire';
import type {
  BaseInfo,
  BaseInput,
  CreatedToken,
  CreateTokenInput,
  InferRequest,
  InferResponse,
  ServedBase,
  ModuleInfo,
  PublishResult,
  SearchPage,
  SearchParams,
  TokenInfo,
  VersionInfo,
  YankResult,
} from './wire';

export interface ClientOptions {
  /** Hub URL, e.g. http://localhost:8080 */
  baseUrl: string;
  /** Bearer token (mh_...). */
  token?: string;
  /** fetch implementation (default: global fetch). */
  fetch?: typeof fetch;
  /** Check every JSON answer against its wire schema; a mismatch throws ModhubError INVALID_RESPONSE (default false). */
  validateResponses?: boolean;
}

/** What to publish: a path (folder or .tar / .tar.gz), archive bytes, or the package files. */
export type PublishSource = string | { archive: Uint8Array } | { files: Record<string, Uint8Array> };

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

function sha256Hex(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

const enc = encodeURIComponent;

export class ModhubClient {
  readonly baseUrl: string;
  private readonly token?: string;
  private readonly fetchImpl: typeof fetch;
  private readonly validate: boolean;

  constructor(opts: ClientOptions) {
    if (!opts.baseUrl) throw new TypeError("ModhubClient: 'baseUrl' is required");
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.token = opts.token;
    this.fetchImpl = opts.fetch ?? fetch;
    this.validate = opts.validateResponses ?? false;
  }

  // ---------------------------------------------------------------- transport

  /** Sends a request; throws ModhubError for non-2xx answers (with the server's code when it sent one). */
  protected async request(method: string, urlPath: string, init: { body?: RequestInit['body']; headers?: Record<string, string> } = {}): Promise<Response> {
    const headers: Record<string, string> = { ...init.headers };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    let res: Response;
    try {
      res = await this.fetchImpl(`${this.baseUrl}${urlPath}`, { method, headers, body: init.body });
    } catch (e) {
      throw new ModhubError(0, 'NETWORK_ERROR', `cannot reach ${this.baseUrl}: ${(e as Error).message}`);
    }
    if (res.ok || res.status === 304) return res;
    let code = `HTTP_${res.status}`;
    let message = `${method} ${urlPath} failed with HTTP ${res.status}`;
    const requestId = res.headers.get('x-request-id') ?? undefined;
    const text = await res.text().catch(() => '');
    try {
      const body = JSON.parse(text) as { error?: unknown; code?: unknown };
      if (body.error && typeof body.error === 'object') {
        const e = body.error as { code?: unknown; message?: unknown };
        if (typeof e.code === 'string') code = e.code;
        if (typeof e.message === 'string') message = e.message;
      } else if (typeof body.error === 'string') {
        message = body.error;
        if (typeof body.code === 'string') code = body.code;
      }
    } catch {
      if (text) message += `: ${text.slice(0, 200)}`;
    }
    throw new ModhubError(res.status, code, message, requestId);
  }

  /** Sends a JSON request and reads the JSON answer, typed (and, with validateResponses, checked) by `schema`. */
  protected async json<S extends z.ZodType>(schema: S, method: string, urlPath: string, body?: unknown): Promise<z.output<S>> {
    const res = await this.request(method, urlPath, body === undefined ? {} : { body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } });
    return this.parse(schema, `${method} ${urlPath}`, await res.json());
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

  private async bytes(urlPath: string, headers: Record<string, string> = {}): Promise<{ data: Buffer; res: Response }> {
    const res = await this.request('GET', urlPath, { headers });
    return { data: Buffer.from(await res.arrayBuffer()), res };
  }

  // ---------------------------------------------------------------- publish

  /** Publishes a package (folder, .tar/.tar.gz path, archive bytes or files); sends sha256 digests the server checks. */
  async publish(source: PublishSource, opts: { allowUnknownBase?: boolean } = {}): Promise<PublishResult> {
    const form = new FormData();
    let src = source;
    if (typeof src === 'string') {
      const st = await fsp.stat(src).catch(() => null);
      if (!st) throw new ModhubError(400, 'INVALID_PACKAGE', `'${src}' does not exist`);
      if (st.isDirectory()) {
        const files: Record<string, Uint8Array> = {};
        for (const n of PACKAGE_FILES) {
          const b = await fsp.readFile(path.join(src, n)).catch(() => null);
          if (b) files[n] = b;
        }
        if (!files['module.json']) throw new ModhubError(400, 'INVALID_PACKAGE', `'${src}' has no module.json`);
        src = { files };
      } else {
        src = { archive: await fsp.readFile(src) };
      }
    }
    if ('archive' in src) {
      form.set('sha256', sha256Hex(src.archive));
      form.set('archive', new Blob([src.archive]), 'module.tar');
    } else {
      for (const [n, b] of Object.entries(src.files)) {
        form.set(`sha256.${n}`, sha256Hex(b));
        form.set(n, new Blob([b]), n);
      }
    }
    if (opts.allowUnknownBase) form.set('allow_unknown_base', 'true');
    const res = await this.request('POST', '/v1/modules', { body: form });
    return this.parse(W.PublishResultSchema, 'POST /v1/modules', await res.json());
  }

  // ---------------------------------------------------------------- read

  /** Searches modules. */
  async search(params: SearchParams = {}): Promise<SearchPage> {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, String(v));
    const s = q.toString();
    return this.json(W.SearchPageSchema, 'GET', `/v1/modules${s ? `?${s}` : ''}`);
  }

  /** Module info with versions and tags. */
  async info(id: string): Promise<ModuleInfo> {
    const r = splitRef(id);
    return this.json(W.ModuleInfoSchema, 'GET', `/v1/modules/${enc(r.namespace)}/${enc(r.name)}`);
  }

  /** One version (`ns/name@version`, `ns/name@tag`, or `ns/name` = latest) with its manifest. */
  async version(ref: string): Promise<VersionInfo> {
    const r = splitRef(ref);
    return this.json(W.VersionInfoSchema, 'GET', `/v1/modules/${enc(r.namespace)}/${enc(r.name)}/versions/${enc(r.rev)}`);
  }

  /** The version's tar archive. */
  async downloadArchive(ref: string): Promise<Buffer> {
    const r = splitRef(ref);
    return (await this.bytes(`/v1/modules/${enc(r.namespace)}/${enc(r.name)}/versions/${enc(r.rev)}/archive`)).data;
  }

  /** One file of a version; `range` (inclusive) asks for part of it. Whole files are checked against their ETag digest. */
  async downloadFile(ref: string, file: string, range?: { start: number; end?: number }, onProgress?: (received: number, total: number) => void): Promise<Buffer> {
    const r = splitRef(ref);
    const headers: Record<string, string> = range ? { Range: `bytes=${range.start}-${range.end ?? ''}` } : {};
    const res = await this.request('GET', `/v1/modules/${enc(r.namespace)}/${enc(r.name)}/versions/${enc(r.rev)}/files/${enc(file)}`, { headers });
    const total = Number(res.headers.get('content-length') ?? 0);
    let data: Buffer;
    if (onProgress && res.body) {
      const parts: Buffer[] = [];
      let received = 0;
      const reader = res.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parts.push(Buffer.from(value));
        received += value.length;
        onProgress(received, total);
      }
      data = Buffer.concat(parts);
    } else {
      data = Buffer.from(await res.arrayBuffer());
    }
    const etag = res.headers.get('etag')?.replace(/"/g, '');
    if (!range && etag && /^[0-9a-f]{64}$/.test(etag) && sha256Hex(data) !== etag) {
      throw new ModhubError(502, 'DIGEST_MISMATCH', `downloaded '${file}' of ${ref} does not match its sha256 ${etag}`);
    }
    return data;
  }

  /**
   * Downloads every file of a version into `outDir` (created), each verified against its sha256 and written via a
   * temp name then renamed; `onProgress` sees the bytes received per file. Returns the resolved version.
   */
  async pull(ref: string, outDir: string, onProgress?: (p: { file: string; received: number; total: number }) => void): Promise<VersionInfo> {
    const v = await this.version(ref);
    await fsp.mkdir(outDir, { recursive: true });
    for (const f of v.files) {
      if (!/^[A-Za-z0-9._-]+$/.test(f.name) || f.name.startsWith('.')) throw new ModhubError(502, 'INVALID_PACKAGE', `server listed an unsafe file name '${f.name}'`);
      const data = await this.downloadFile(`${v.id}@${v.version}`, f.name, undefined, onProgress && ((received, total) => onProgress({ file: f.name, received, total })));
      if (`sha256:${sha256Hex(data)}` !== f.digest) throw new ModhubError(502, 'DIGEST_MISMATCH', `'${f.name}' does not match its digest ${f.digest}`);
      const tmp = path.join(outDir, `.${f.name}.${randomBytes(4).toString('hex')}.part`);
      await fsp.writeFile(tmp, data);
      await fsp.rename(tmp, path.join(outDir, f.name));
    }
    return v;
  }

  // ---------------------------------------------------------------- write

  /** Points a tag at a version. */
  async setTag(id: string, tag: string, version: string): Promise<Record<string, string>> {
    const r = splitRef(id);
    return (await this.json(W.TagsSchema, 'PUT', `/v1/modules/${enc(r.namespace)}/${enc(r.name)}/tags/${enc(tag)}`, { version })).tags;
  }

  /** Removes a tag. */
  async removeTag(id: string, tag: string): Promise<Record<string, string>> {
    const r = splitRef(id);
    return (await this.json(W.TagsSchema, 'DELETE', `/v1/modules/${enc(r.namespace)}/${enc(r.name)}/tags/${enc(tag)}`)).tags;
  }

  /** Yanks `ns/name@version` (or restores it with `yanked: false`). */
  async yank(ref: string, opts: { reason?: string; yanked?: boolean } = {}): Promise<YankResult> {
    const r = splitRef(ref);
    return this.json(W.YankResultSchema, 'POST', `/v1/modules/${enc(r.namespace)}/${enc(r.name)}/versions/${enc(r.rev)}/yank`, { yanked: opts.yanked ?? true, reason: opts.reason });
  }

  /** Deletes a version (`ns/name@version`) or a whole module (`ns/name`); admin only. */
  async delete(ref: string): Promise<void> {
    const r = splitRef(ref);
    const whole = !ref.includes('@');
    await this.request('DELETE', `/v1/modules/${enc(r.namespace)}/${enc(r.name)}${whole ? '' : `/versions/${enc(r.rev)}`}`);
  }

  // ---------------------------------------------------------------- admin

  /** Creates a token (admin); the secret is in `token` and is shown only once. */
  createToken(t: CreateTokenInput): Promise<CreatedToken> {
    return this.json(W.CreatedTokenSchema, 'POST', '/v1/tokens', t);
  }

  async listTokens(): Promise<TokenInfo[]> {
    return (await this.json(W.TokenListSchema, 'GET', '/v1/tokens')).tokens;
  }

  async revokeToken(id: string): Promise<void> {
    await this.request('DELETE', `/v1/tokens/${enc(id)}`);
  }

  /** Registers a base modules may be published against (admin). */
  registerBase(b: BaseInput): Promise<BaseInfo> {
    return this.json(W.BaseInfoSchema, 'POST', '/v1/bases', b);
  }

  async listBases(): Promise<BaseInfo[]> {
    return (await this.json(W.BaseListSchema, 'GET', '/v1/bases')).bases;
  }

  /** The token the client sends, as the server sees it (null when anonymous). */
  async whoami(): Promise<TokenInfo | null> {
    return (await this.json(W.WhoamiSchema, 'GET', '/v1/whoami')).token;
  }

  // ---------------------------------------------------------------- inference

  /** Runs texts through the served base composed with hub modules (`POST /v1/infer`). */
  async infer(req: InferRequest): Promise<InferResponse> {
    return this.json(W.InferResponseSchema, 'POST', '/v1/infer', req);
  }

  /** The base model the server runs (`GET /v1/base`). */
  async servedBase(): Promise<ServedBase> {
    return this.json(W.ServedBaseSchema, 'GET', '/v1/base');
  }
}
