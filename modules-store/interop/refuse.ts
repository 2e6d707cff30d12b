/**
 * The refusal of a torch `.bin` file modhub will not read, with the way to convert it (shared by the zip and
 * pickle readers). Example: `refuse('pytorch_adapter.bin', "global 'os.system'")`.
 */
import { StoreError } from '../errors';

/** What to tell the user whenever a pickle is refused. */
export const CONVERT_HINT =
  "convert it to safetensors in Python (safetensors.torch.save_file(torch.load(path, weights_only=True), 'adapter.safetensors'), or save the adapter with safetensors, e.g. model.save_adapter(dir, name, use_safetensors=True) / save_pretrained(dir, safe_serialization=True))";

export function refuse(file: string, why: string): never {
  throw new StoreError('INVALID_WEIGHTS', `${file}: ${why}; modhub never runs pickled code: ${CONVERT_HINT}`);
}
