/**
 * What every foreign-format reader returns and every writer takes: a module's kind, config, head and tensors in
 * modhub's package layout, without id / version / base (those come from the caller). detect.ts turns it into a
 * validated package. Example: `{ kind: 'lora', config: { r: 8, ... }, head: null, labels: [], tensors }`.
 */
import type { HeadConfig } from '../kinds/heads';
import type { ModuleKind } from '../kinds';
import type { Tensor } from '../safetensors';

export interface ConvertedModule {
  kind: ModuleKind;
  config: Record<string, unknown>;
  head: HeadConfig | null;
  labels: string[];
  task: string;
  description: string;
  tensors: Map<string, Tensor>;
}

/** A foreign folder: file name → bytes. */
export type FileSet = Map<string, Buffer>;
