/**
 * Which format a folder is in (by its files) and the conversion of a foreign folder into a validated modhub
 * package: the one function the CLI (`modhub module import`) and the hub's upload call.
 *   module.json                              → modhub (unchanged)
 *   adapter_config.json with "peft_type"     → PEFT
 *   adapter_config.json with "config"        → AdapterHub (with head_config.json + model_head.* when present)
 *   adapter_fusion_config.json               → AdapterHub AdapterFusion
 *   pytorch_diff.bin                         → composable-sft
 * Example: `const files = convertForeign(folderFiles, { id: 'lang/de', version: '1.0.0', base })`.
 */
import { StoreError } from '../errors';
import { FORMAT_VERSION, type BaseRef, type ManifestInput } from '../manifest';
import { MANIFEST_FILE, validatePackage, WEIGHTS_FILE, type ModulePackage } from '../package';
import { serializeSafetensors } from '../safetensors';
import { AH_CONFIG, AH_HEAD_CONFIG, AH_HEAD_WEIGHTS, AH_WEIGHTS, importAdapterHub } from './adapterhub';
import { FUSION_CONFIG, FUSION_WEIGHTS, importAdapterHubFusion } from './adapterhub-fusion';
import { importPeft, PEFT_WEIGHTS } from './peft';
import { importSft, SFT_FILE } from './sft';
import type { ConvertedModule, FileSet } from './types';

export type FolderFormat = 'modhub' | 'adapterhub' | 'adapterhub-fusion' | 'peft' | 'composable-sft';

/** Every file name a foreign folder may hold (what a reader picks out of a folder or an archive). */
export const FOREIGN_FILES: readonly string[] = [FUSION_CONFIG, ...FUSION_WEIGHTS, AH_CONFIG, ...AH_WEIGHTS, AH_HEAD_CONFIG, ...AH_HEAD_WEIGHTS, ...PEFT_WEIGHTS, SFT_FILE, 'README.md'];

/** The format of a folder by its files, or null when it is none of the known ones. */
export function detectFormat(files: FileSet): FolderFormat | null {
  if (files.has(MANIFEST_FILE)) return 'modhub';
  if (files.has(FUSION_CONFIG)) return 'adapterhub-fusion';
  const cfg = files.get(AH_CONFIG);
  if (cfg) {
    let v: Record<string, unknown> = {};
    try {
      v = JSON.parse(cfg.toString('utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new StoreError('INVALID_PACKAGE', `${AH_CONFIG} is not valid JSON: ${(e as Error).message}`);
    }
    if (v && typeof v === 'object' && 'peft_type' in v) return 'peft';
    if (v && typeof v === 'object' && 'config' in v) return 'adapterhub';
    throw new StoreError('INVALID_PACKAGE', `${AH_CONFIG} has neither 'peft_type' (PEFT) nor 'config' (AdapterHub)`);
  }
  if (files.has(SFT_FILE)) return 'composable-sft';
  return null;
}

export interface ImportOptions {
  id: string;
  version: string;
  base: BaseRef;
  /** Overrides the task the reader derives from the head. */
  task?: string;
  language?: string;
  license?: string;
  /** AdapterFusion: the module ids of the fused adapters, in the file's order (default `<ns>/<name>`). */
  adapters?: string[];
}

/** Reads a foreign folder into modhub's layout (kind, config, head, tensors). */
export function readForeign(files: FileSet, base: BaseRef, o: { id: string; adapters?: string[] } = { id: 'ns/name' }): ConvertedModule {
  const format = detectFormat(files);
  if (format === 'adapterhub-fusion') return importAdapterHubFusion(files, base, o.id, o.adapters);
  if (format === 'adapterhub') return importAdapterHub(files, base);
  if (format === 'peft') return importPeft(files, base);
  if (format === 'composable-sft') return importSft(files, base);
  if (format === 'modhub') throw new StoreError('INVALID_PACKAGE', 'this is already a modhub package (it has module.json)');
  throw new StoreError('INVALID_PACKAGE', `no known format: expected module.json (modhub), adapter_config.json (AdapterHub / PEFT), adapter_fusion_config.json (AdapterFusion) or ${SFT_FILE} (composable-sft); got ${[...files.keys()].join(', ') || 'no files'}`);
}

/** A foreign folder → a validated modhub package (module.json, weights.safetensors, README.md). */
export function convertForeign(files: FileSet, o: ImportOptions): ModulePackage {
  const m = readForeign(files, o.base, o);
  const manifest = {
    format_version: FORMAT_VERSION,
    id: o.id,
    version: o.version,
    kind: m.kind,
    config: m.config,
    head: m.head,
    task: o.task ?? m.task,
    labels: m.labels,
    base: o.base,
    description: m.description,
    ...(o.language ? { language: o.language } : {}),
    ...(o.license ? { license: o.license } : {}),
  } as ManifestInput;
  const out = new Map<string, Buffer>([
    [MANIFEST_FILE, Buffer.from(JSON.stringify(manifest, null, 2) + '\n', 'utf8')],
    [WEIGHTS_FILE, serializeSafetensors(m.tensors, { format: 'pt', 'modhub.kind': m.kind })],
  ]);
  return validatePackage(out);
}
