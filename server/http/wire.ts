/**
 * The HTTP layer's side of the wire format (client-sdk/wire.ts): parsing request bodies and query strings with
 * the shared zod schemas (a 400 that names every bad field, in snake_case as the client sent it), and turning the
 * registry's camelCase rows into the snake_case objects the API answers with — explicitly, field by field, so a
 * new catalog column never leaks onto the wire unnoticed.
 * Example: `const b = parseBody(SetTagBodySchema, req.body); res.json(moduleInfoJson(await registry.info(ns, n)))`.
 */
import type { Request } from 'express';
import type { z } from 'zod';
import type { BaseRow, FileRow, ModuleInfo as StoreModuleInfo, ModuleRow, TokenRow, VersionInfo as StoreVersionInfo } from '../../modules-store';
import type { BaseInfo, FileEntry, ManifestJson, ModuleInfo, ModuleSummary, TokenInfo, VersionEntry, VersionInfo } from '../../client-sdk/wire';
import { badRequest } from './errors';

/** "field.sub: problem; other: problem" from a zod error. */
function problems(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.map(String).join('.') || '(body)'}: ${i.message}`).join('; ');
}

/** Validates a JSON body; 400 INVALID_BODY naming each bad field. */
export function parseBody<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  const r = schema.safeParse(body ?? {});
  if (!r.success) throw badRequest('INVALID_BODY', `request body is invalid: ${problems(r.error)}`);
  return r.data;
}

/** Validates the query string (each parameter given once); 400 INVALID_QUERY naming each bad parameter. */
export function parseQuery<S extends z.ZodType>(schema: S, req: Request): z.output<S> {
  for (const [k, v] of Object.entries(req.query)) {
    if (typeof v !== 'string') throw badRequest('INVALID_QUERY', `query parameter '${k}' must be given once, as a string`);
  }
  // An empty parameter (`?limit=`) means "not given", as it did before the schemas.
  const given = Object.fromEntries(Object.entries(req.query as Record<string, string>).filter(([, v]) => v !== ''));
  const r = schema.safeParse(given);
  if (!r.success) throw badRequest('INVALID_QUERY', `query is invalid: ${problems(r.error).replace(/^\(body\)/, '(query)')}`);
  return r.data;
}

export function fileJson(f: FileRow): FileEntry {
  return { name: f.name, digest: f.digest, size: f.size };
}

export function moduleSummaryJson(m: ModuleRow & { id?: string }): ModuleSummary {
  return {
    id: m.id ?? `${m.namespace}/${m.name}`,
    namespace: m.namespace,
    name: m.name,
    kind: m.kind as ModuleSummary['kind'],
    task: m.task,
    language: m.language,
    base_fingerprint: m.baseFingerprint,
    description: m.description,
    downloads: m.downloads,
    created_at: m.createdAt,
    updated_at: m.updatedAt,
  };
}

export function versionEntryJson(v: StoreVersionInfo): VersionEntry {
  return {
    version: v.version,
    digest: v.digest,
    size: v.size,
    yanked: v.yanked,
    yank_reason: v.yankReason,
    downloads: v.downloads,
    created_at: v.createdAt,
    files: v.files.map(fileJson),
  };
}

/** module.json is snake_case already (docs/module-format.md); it goes out as published. */
function manifestJson(m: unknown): ManifestJson {
  return m as ManifestJson;
}

export function moduleInfoJson(m: StoreModuleInfo): ModuleInfo {
  return { ...moduleSummaryJson(m), versions: m.versions.map(versionEntryJson), tags: { ...m.tags }, manifest: manifestJson(m.manifest) };
}

export function versionInfoJson(id: string, v: StoreVersionInfo, manifest: unknown): VersionInfo {
  return { id, ...versionEntryJson(v), manifest: manifestJson(manifest) };
}

export function tokenJson(t: Omit<TokenRow, 'hash'>): TokenInfo {
  return { id: t.id, scopes: [...t.scopes], namespace: t.namespace, description: t.description, created_at: t.createdAt };
}

export function baseJson(b: BaseRow): BaseInfo {
  return { fingerprint: b.fingerprint, family: b.family, hidden_size: b.hiddenSize, num_layers: b.numLayers, vocab_size: b.vocabSize, description: b.description, created_at: b.createdAt };
}
