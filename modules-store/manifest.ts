/**
 * The `module.json` manifest of a module package (docs/module-format.md, format version 1): zod schema,
 * built from the kind registry (modules-store/kinds), inferred types; names and references live in refs.ts.
 * Example: `const m = parseManifest(JSON.parse(text)); const ref = parseRef('lang/de@1.0.0');`
 */
import semver from 'semver';
import { z } from 'zod';
import { StoreError } from './errors';
import { isValidName } from './refs';
import { headSchema } from './kinds/heads';
import { KINDS, MODULE_KINDS, type KindMap, type ModuleKind } from './kinds';

export * from './refs';
export { MODULE_KINDS, type ModuleKind } from './kinds';
export { headSchema, type HeadConfig } from './kinds/heads';
export { BOTTLENECK_PRESETS, type BottleneckConfigInput } from './kinds/bottleneck';
export { LORA_TARGETS, type LoraConfig } from './kinds/lora';
export type { DiffConfig } from './kinds/diff';
export type { FusionConfig } from './kinds/fusion';
export type { Ia3Config } from './kinds/ia3';

/** The newest package format this code reads and writes. */
export const FORMAT_VERSION = 1;

const idSchema = z
  .string()
  .refine((s) => {
    const parts = s.split('/');
    return parts.length === 2 && parts.every(isValidName);
  }, 'must be namespace/name, each part matching [a-z0-9][a-z0-9._-]* (max 64 characters)');

const baseSchema = z.looseObject({
  family: z.string().min(1).max(64),
  fingerprint: z.string().regex(/^sha256:[0-9a-f]{64}$/, "must be 'sha256:' followed by 64 lowercase hex digits"),
  hidden_size: z.number().int().min(1).max(1 << 16),
  num_layers: z.number().int().min(1).max(1024),
  vocab_size: z.number().int().min(1).max(1 << 24),
  /** Optional (not in format v1's required fields): FFN size, checked against LoRA ffn_in/ffn_out tensors when given. */
  intermediate_size: z.number().int().min(1).max(1 << 20).optional(),
});
export type BaseRef = z.infer<typeof baseSchema>;

const common = {
  format_version: z.number().int().min(1),
  id: idSchema,
  version: z.string().refine((v) => semver.valid(v) === v, 'must be a semver version such as 1.0.0 (no leading v, no build range)'),
  head: headSchema.nullable().default(null),
  task: z.string().min(1).max(128),
  language: z.string().max(35).optional(),
  labels: z.array(z.string().max(256)).max(1_000_000).default([]),
  base: baseSchema,
  metrics: z.record(z.string(), z.number()).optional(),
  license: z.string().max(128).optional(),
  description: z.string().max(10_000).default(''),
};

const commonObject = z.looseObject(common);
type Common = typeof commonObject;
type ManifestOf<K extends ModuleKind> = z.output<Common> & { kind: K; config: z.output<KindMap[K]['config']> };
type ManifestInputOf<K extends ModuleKind> = z.input<Common> & { kind: K; config: z.input<KindMap[K]['config']> };

/** A validated manifest (defaults filled in): a union over the kinds in kinds/index.ts. */
export type Manifest = { [K in ModuleKind]: ManifestOf<K> }[ModuleKind];
/** What a writer supplies: defaults may be omitted. */
export type ManifestInput = { [K in ModuleKind]: ManifestInputOf<K> }[ModuleKind];

/** module.json: the common fields plus, discriminated by `kind`, that kind's config schema. */
export const manifestSchema = z.discriminatedUnion(
  'kind',
  MODULE_KINDS.map((k) => z.looseObject({ ...common, kind: z.literal(k), config: KINDS[k].config })) as unknown as [z.ZodObject, ...z.ZodObject[]],
) as unknown as z.ZodType<Manifest, ManifestInput>;

/**
 * Validates a parsed `module.json`. A `format_version` newer than {@link FORMAT_VERSION} is refused with
 * UNSUPPORTED_FORMAT_VERSION before anything else is checked; other problems are INVALID_MANIFEST naming
 * every offending field.
 */
export function parseManifest(raw: unknown): Manifest {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new StoreError('INVALID_MANIFEST', 'module.json must be a JSON object');
  }
  const fv = (raw as Record<string, unknown>).format_version;
  if (typeof fv === 'number' && Number.isInteger(fv) && fv > FORMAT_VERSION) {
    throw new StoreError(
      'UNSUPPORTED_FORMAT_VERSION',
      `module.json has format_version ${fv}, but this modhub reads format versions up to ${FORMAT_VERSION}: upgrade modhub to publish or read this package`,
    );
  }
  const r = manifestSchema.safeParse(raw);
  if (!r.success) {
    const problems = r.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`);
    throw new StoreError('INVALID_MANIFEST', `module.json is invalid: ${problems.join('; ')}`);
  }
  return r.data;
}

/** Parses module.json bytes (JSON text) and validates them. */
export function parseManifestBytes(bytes: Buffer): Manifest {
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new StoreError('INVALID_MANIFEST', `module.json is not valid JSON: ${(e as Error).message}`);
  }
  return parseManifest(raw);
}

