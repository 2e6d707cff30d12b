/**
 * Exporting a module in a foreign format: the file set AdapterHub's `load_adapter` or PEFT's
 * `PeftModel.from_pretrained` reads, for every module expressible that way (the CLI writes it to a folder, the
 * hub serves it under a virtual revision). Example: `exportModule(pkg.manifest, tensors, 'adapterhub')`.
 */
import { StoreError } from '../errors';
import type { Manifest } from '../manifest';
import type { Tensor } from '../safetensors';
import { exportAdapterHub } from './adapterhub';
import { exportAdapterHubFusion } from './adapterhub-fusion';
import { exportPeft } from './peft';

export const EXPORT_FORMATS = ['adapterhub', 'peft'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export function isExportFormat(s: string): s is ExportFormat {
  return (EXPORT_FORMATS as readonly string[]).includes(s);
}

/** The foreign files of a module (name → bytes); INVALID_ARGUMENT when the module has no such form. */
export function exportModule(m: Manifest, tensors: Map<string, Tensor>, format: string): Map<string, Buffer> {
  if (format === 'adapterhub') return m.kind === 'fusion' ? exportAdapterHubFusion(m, tensors) : exportAdapterHub(m, tensors);
  if (format === 'peft') return exportPeft(m, tensors);
  throw new StoreError('INVALID_ARGUMENT', `export format must be one of ${EXPORT_FORMATS.join(', ')}, got '${format}'`);
}
