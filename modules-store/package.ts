/**
 * Module packages as a whole: the allowed files, size limits, full validation (manifest + weights + card), and
 * the helpers the trainer uses to write a package folder and anyone uses to read a folder or an archive.
 * Example: `await writeModulePackage('./out', manifest, tensors); const pkg = await readModulePackage('./out');`
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { unpackArchive } from './archive';
import { generateCard, parseCard } from './card';
import { StoreError } from './errors';
import { parseManifest, parseManifestBytes, type Manifest, type ManifestInput } from './manifest';
import { fileSource, serializeSafetensors, type Tensor } from './safetensors';
import type { StagedFile } from './staging';
import { validateWeights } from './validate';
import type { BaseParams } from './kinds';

export const MANIFEST_FILE = 'module.json';
export const WEIGHTS_FILE = 'weights.safetensors';
export const CARD_FILE = 'README.md';
/** Every file a package may hold (format version 1). */
export const PACKAGE_FILES: readonly string[] = [MANIFEST_FILE, WEIGHTS_FILE, CARD_FILE];

export interface PackageLimits {
  /** Largest weights.safetensors (default 1 GiB). */
  maxWeightsBytes: number;
  /** Largest module.json (default 1 MiB). */
  maxManifestBytes: number;
  /** Largest README.md (default 1 MiB). */
  maxCardBytes: number;
}

export const DEFAULT_PACKAGE_LIMITS: PackageLimits = {
  maxWeightsBytes: 1 << 30,
  maxManifestBytes: 1 << 20,
  maxCardBytes: 1 << 20,
};

/** What validation may know beyond the package itself. */
export interface ValidateOptions {
  /** The parameters of the base with this fingerprint, when known (diff checks need them). */
  baseParams?: (fingerprint: string) => BaseParams | null | undefined;
}

/** A validated package: manifest and the exact bytes of every file (README.md generated when missing). */
export interface ModulePackage {
  manifest: Manifest;
  files: Map<string, Buffer>;
}

function limitFor(name: string, l: PackageLimits): number {
  return name === WEIGHTS_FILE ? l.maxWeightsBytes : name === MANIFEST_FILE ? l.maxManifestBytes : l.maxCardBytes;
}

/** Files that mark an AdapterHub, PEFT or composable-sft folder (modules-store/interop/ converts those). */
const FOREIGN_MARKERS = ['adapter_config.json', 'adapter_fusion_config.json', 'adapter.safetensors', 'pytorch_adapter.bin', 'adapter_model.safetensors', 'adapter_model.bin', 'pytorch_diff.bin'];

/** INVALID_PACKAGE for a file a modhub package does not hold, with the way in when it belongs to a foreign format. */
function unexpectedFile(name: string): StoreError {
  const hint = FOREIGN_MARKERS.includes(name)
    ? `; '${name}' belongs to an AdapterHub / PEFT / composable-sft folder: upload it with ?id=ns/name&version=X (and base= when the hub has several bases), or convert it with 'modhub module import'`
    : '';
  return new StoreError('INVALID_PACKAGE', `unexpected file '${name}': a package holds only ${PACKAGE_FILES.join(', ')}${hint}`);
}

/**
 * Validates a set of package files (name → bytes): only known names, sizes within limits, manifest schema and
 * format version, weights against the kind's config, card front matter. Generates README.md when absent.
 */
export function validatePackage(files: Map<string, Buffer>, limits: PackageLimits = DEFAULT_PACKAGE_LIMITS, opts: ValidateOptions = {}): ModulePackage {
  for (const [name, bytes] of files) {
    if (!PACKAGE_FILES.includes(name)) throw unexpectedFile(name);
    if (bytes.length > limitFor(name, limits)) {
      throw new StoreError('TOO_LARGE', `'${name}' is ${bytes.length} bytes, over the ${limitFor(name, limits)}-byte limit`);
    }
  }
  const mBytes = files.get(MANIFEST_FILE);
  if (!mBytes) throw new StoreError('INVALID_PACKAGE', `the package has no ${MANIFEST_FILE}`);
  const manifest = parseManifestBytes(mBytes);
  const weights = files.get(WEIGHTS_FILE);
  if (!weights) throw new StoreError('INVALID_PACKAGE', `the package has no ${WEIGHTS_FILE}`);
  validateWeights(manifest, weights, { baseParams: opts.baseParams?.(manifest.base.fingerprint) ?? undefined });
  const out = new Map(files);
  const card = files.get(CARD_FILE);
  if (card) {
    checkCard(card);
  } else {
    out.set(CARD_FILE, Buffer.from(generateCard(manifest), 'utf8'));
  }
  return { manifest, files: out };
}

/**
 * Validates a package staged on disk (name → temp file) with the rules of {@link validatePackage}, reading the
 * small files (manifest, card) into memory and the weights from the file piece by piece. Returns the manifest
 * and, when the package has no README.md, the generated one.
 */
export async function validateStagedPackage(
  files: Map<string, StagedFile>,
  limits: PackageLimits = DEFAULT_PACKAGE_LIMITS,
  opts: ValidateOptions = {},
): Promise<{ manifest: Manifest; generatedCard: Buffer | null }> {
  for (const [name, f] of files) {
    if (!PACKAGE_FILES.includes(name)) throw unexpectedFile(name);
    if (f.size > limitFor(name, limits)) throw new StoreError('TOO_LARGE', `'${name}' is ${f.size} bytes, over the ${limitFor(name, limits)}-byte limit`);
  }
  const mFile = files.get(MANIFEST_FILE);
  if (!mFile) throw new StoreError('INVALID_PACKAGE', `the package has no ${MANIFEST_FILE}`);
  const manifest = parseManifestBytes(await fsp.readFile(mFile.path));
  const wFile = files.get(WEIGHTS_FILE);
  if (!wFile) throw new StoreError('INVALID_PACKAGE', `the package has no ${WEIGHTS_FILE}`);
  const fh = await fsp.open(wFile.path, 'r');
  try {
    validateWeights(manifest, fileSource(fh.fd, wFile.size), { baseParams: opts.baseParams?.(manifest.base.fingerprint) ?? undefined });
  } finally {
    await fh.close();
  }
  const cFile = files.get(CARD_FILE);
  if (cFile) {
    checkCard(await fsp.readFile(cFile.path));
    return { manifest, generatedCard: null };
  }
  return { manifest, generatedCard: Buffer.from(generateCard(manifest), 'utf8') };
}

/** README.md must be UTF-8 with valid front matter. */
function checkCard(card: Buffer): void {
  const text = card.toString('utf8');
  if (Buffer.byteLength(text) !== card.length || text.includes('\uFFFD')) throw new StoreError('INVALID_PACKAGE', 'README.md must be UTF-8 text');
  parseCard(text);
}

/** The files of a package, in canonical order (manifest, weights, card). */
export function orderedFiles(files: Map<string, Buffer>): [string, Buffer][] {
  return PACKAGE_FILES.filter((n) => files.has(n)).map((n) => [n, files.get(n)!]);
}

/**
 * Writes a package folder: module.json (validated), weights.safetensors, README.md (generated when `card` is
 * omitted). Validates the result as a whole before writing anything; returns the validated package.
 */
export async function writeModulePackage(dir: string, manifest: ManifestInput, tensors: Map<string, Tensor>, card?: string): Promise<ModulePackage> {
  const m = parseManifest(manifest);
  const files = new Map<string, Buffer>([
    [MANIFEST_FILE, Buffer.from(JSON.stringify(m, null, 2) + '\n', 'utf8')],
    [WEIGHTS_FILE, serializeSafetensors(tensors, { format: 'pt', 'modhub.kind': m.kind })],
  ]);
  if (card !== undefined) files.set(CARD_FILE, Buffer.from(card, 'utf8'));
  const pkg = validatePackage(files);
  await fsp.mkdir(dir, { recursive: true });
  for (const [name, bytes] of pkg.files) await fsp.writeFile(path.join(dir, name), bytes);
  return pkg;
}

/** Reads the package files from a folder (only the known names; others are ignored) or a tar/tar.gz archive. */
export async function readPackageFiles(dirOrArchive: string, limits: PackageLimits = DEFAULT_PACKAGE_LIMITS): Promise<Map<string, Buffer>> {
  const st = await fsp.stat(dirOrArchive);
  if (st.isDirectory()) {
    const files = new Map<string, Buffer>();
    for (const name of PACKAGE_FILES) {
      const p = path.join(dirOrArchive, name);
      const fst = await fsp.lstat(p).catch(() => null);
      if (!fst) continue;
      if (!fst.isFile()) throw new StoreError('INVALID_PACKAGE', `'${p}' is not a regular file`);
      if (fst.size > limitFor(name, limits)) throw new StoreError('TOO_LARGE', `'${p}' is ${fst.size} bytes, over the ${limitFor(name, limits)}-byte limit`);
      files.set(name, await fsp.readFile(p));
    }
    return files;
  }
  const total = limits.maxWeightsBytes + limits.maxManifestBytes + limits.maxCardBytes;
  return unpackArchive(await fsp.readFile(dirOrArchive), { maxFileBytes: Math.max(limits.maxWeightsBytes, limits.maxManifestBytes, limits.maxCardBytes), maxTotalBytes: total });
}

/** Reads and validates a package folder or archive. */
export async function readModulePackage(dirOrArchive: string, limits: PackageLimits = DEFAULT_PACKAGE_LIMITS): Promise<ModulePackage> {
  return validatePackage(await readPackageFiles(dirOrArchive, limits), limits);
}
