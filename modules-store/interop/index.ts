/**
 * Foreign adapter formats in and out (AdapterHub, PEFT, composable-sft), one file per format, plus detection
 * (detect.ts), the safe torch `.bin` reader (pickle.ts) and the export entry point (export.ts).
 * Example: `convertForeign(files, { id, version, base })`, `exportModule(manifest, tensors, 'peft')`.
 */
export * from './detect';
export * from './export';
export { readTorchBin, readTorchStateDict, unpickle, CONVERT_HINT } from './pickle';
export { readZip } from './zip';
export { importAdapterHub, exportAdapterHub } from './adapterhub';
export { importAdapterHubFusion, exportAdapterHubFusion } from './adapterhub-fusion';
export { importPeft, exportPeft } from './peft';
export { importSft, columnToRowMajor } from './sft';
export type { ConvertedModule, FileSet } from './types';
