/**
 * The hub's upload hook: a publish whose request names `id` (and `version`, optionally `base`) and whose files
 * are an AdapterHub (adapter + head, or AdapterFusion), PEFT or composable-sft folder (as a tar / tar.gz, or loose files) is converted into a modhub
 * package before the registry validates it; anything else passes through untouched.
 * The base is the registered base with fingerprint `base`, or the only registered base when there is one.
 * Example: `input = await foreignPublishInput(input, { id: 'task/sst2', version: '1.0.0' }, await reg.listBases())`.
 */
import { promises as fsp } from 'node:fs';
import { unpackArchive } from '../archive';
import { normalizeDigest, sha256Digest } from '../blob-store';
import type { BaseRow } from '../catalog';
import { StoreError } from '../errors';
import type { BaseRef } from '../manifest';
import { readPackageFiles } from '../package';
import type { PublishInput } from '../registry';
import { convertForeign, detectFormat, FOREIGN_FILES } from './detect';

export interface ForeignParams {
  id?: unknown;
  version?: unknown;
  base?: unknown;
  task?: unknown;
  language?: unknown;
  /** AdapterFusion: comma-separated ids of the fused adapters. */
  adapters?: unknown;
}

async function filesOf(input: PublishInput, maxBytes: number): Promise<Map<string, Buffer>> {
  if ('archive' in input) {
    if (input.sha256 !== undefined) {
      const want = normalizeDigest(input.sha256, 'sha256 of the archive');
      if (want !== sha256Digest(input.archive)) throw new StoreError('DIGEST_MISMATCH', `the archive has digest ${sha256Digest(input.archive)}, but ${want} was declared`);
    }
    return unpackArchive(input.archive, { maxFileBytes: maxBytes, maxTotalBytes: maxBytes });
  }
  if ('files' in input) return input.files instanceof Map ? input.files : new Map(Object.entries(input.files));
  const st = await fsp.stat(input.path);
  if (!st.isDirectory()) return readPackageFiles(input.path);
  const out = new Map<string, Buffer>();
  for (const name of FOREIGN_FILES) {
    const b = await fsp.readFile(`${input.path}/${name}`).catch(() => null);
    if (b) out.set(name, b);
  }
  return out;
}

function str(v: unknown, name: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '') throw new StoreError('INVALID_ARGUMENT', `'${name}' must be given once, as a non-empty string`);
  return v;
}

/** Converts a foreign upload into package files; returns `input` unchanged when `id` is absent or it is a modhub package. */
export async function foreignPublishInput(input: PublishInput, params: ForeignParams, bases: BaseRow[], maxBytes = 1 << 30): Promise<PublishInput> {
  const id = str(params.id, 'id');
  if (id === undefined) return input;
  const files = await filesOf(input, maxBytes);
  if (detectFormat(files) === 'modhub') return input; // a modhub package: the registry checks it (and its digests) as usual
  const version = str(params.version, 'version');
  if (!version) throw new StoreError('INVALID_ARGUMENT', "a foreign (AdapterHub / PEFT / composable-sft) upload needs 'version' beside 'id'");
  const fp = str(params.base, 'base');
  const row = fp ? bases.find((b) => b.fingerprint === normalizeDigest(fp, 'base')) : bases.length === 1 ? bases[0] : undefined;
  if (!row) {
    throw new StoreError(
      fp ? 'UNKNOWN_BASE' : 'INVALID_ARGUMENT',
      fp ? `base ${fp} is not registered on this hub` : `this hub has ${bases.length} registered bases: pass 'base' (the fingerprint of the base the adapter was trained on, see GET /v1/bases)`,
    );
  }
  const base: BaseRef = { family: row.family, fingerprint: row.fingerprint, hidden_size: row.hiddenSize, num_layers: row.numLayers, vocab_size: row.vocabSize };
  const pkg = convertForeign(files, { id, version, base, task: str(params.task, 'task'), language: str(params.language, 'language'), adapters: str(params.adapters, 'adapters')?.split(',') });
  return { files: pkg.files };
}
