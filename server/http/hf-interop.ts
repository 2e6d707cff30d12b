/**
 * Virtual revisions of the HF-compatible paths that serve a module in a foreign format, so Python's `adapters`
 * and `peft` load modhub modules with HF_ENDPOINT pointed at the hub:
 *   revision `adapterhub` / `peft`               the latest version as an AdapterHub / PEFT folder
 *   revision `adapterhub-<rev>` / `peft-<rev>`   a version or tag (`peft-1.0.0`)
 *   the 40-hex commit such a revision reports    (snapshot_download re-requests files by commit)
 * The files (adapter_config.json, adapter.safetensors, head_config.json, model_head.safetensors /
 * adapter_model.safetensors) are built from the stored package on first request and cached by version digest.
 * Their commit differs from the package's, so HF caches keep the two layouts apart.
 * Example: `GET /task/sst2/resolve/peft/adapter_model.safetensors`.
 */
import { createHash } from 'node:crypto';
import { parseSafetensors, StoreError, type Registry, type ResolvedModule } from '../../modules-store';
import { EXPORT_FORMATS, exportModule, type ExportFormat } from '../../modules-store/interop';

export interface VirtualFile {
  name: string;
  bytes: Buffer;
  sha256: string;
}

/** `{ format, rev }` of a virtual revision, or null for an ordinary one. */
export function splitVirtualRev(rev: string): { format: ExportFormat; rev: string } | null {
  for (const f of EXPORT_FORMATS) {
    if (rev === f) return { format: f, rev: 'main' };
    if (rev.startsWith(`${f}-`) && rev.length > f.length + 1) return { format: f, rev: rev.slice(f.length + 1) };
  }
  return null;
}

/** The HF commit of a version in a foreign format: 40 hex of sha256(version digest + format). */
export function virtualCommit(digest: string, format: ExportFormat): string {
  return createHash('sha256').update(`${digest}:${format}`).digest('hex').slice(0, 40);
}

/** Finds the version and format whose virtual commit is `commit` (null when none). */
export async function findVirtualCommit(registry: Registry, namespace: string, name: string, commit: string): Promise<{ version: string; format: ExportFormat } | null> {
  const info = await registry.info(namespace, name);
  for (const v of info.versions) for (const f of EXPORT_FORMATS) if (virtualCommit(v.digest, f) === commit) return { version: v.version, format: f };
  return null;
}

/** Built files by `digest:format` (one per router; small, as exports of a version never change). */
export type VirtualCache = Map<string, VirtualFile[]>;

/** The foreign files of a resolved module (built once per digest and format; 404 when it has no such form). */
export async function virtualFiles(m: ResolvedModule, format: ExportFormat, cache: VirtualCache): Promise<VirtualFile[]> {
  const key = `${m.digest}:${format}`;
  const hit = cache.get(key);
  if (hit) return hit;
  let files: Map<string, Buffer>;
  try {
    files = exportModule(m.manifest, parseSafetensors(await m.readFile('weights.safetensors')).tensors, format);
  } catch (e) {
    if (e instanceof StoreError && e.code === 'INVALID_ARGUMENT') throw new StoreError('FILE_NOT_FOUND', `${m.id}@${m.version} has no ${format} form: ${e.message}`);
    throw e;
  }
  const out = [...files].map(([name, bytes]) => ({ name, bytes, sha256: createHash('sha256').update(bytes).digest('hex') }));
  if (cache.size >= 64) cache.delete(cache.keys().next().value as string);
  cache.set(key, out);
  return out;
}
