/**
 * The `module.json` manifest of a module package (docs/module-format.md, format version 1): zod schema,
 * inferred types, name rules and module references (`ns/name`, `ns/name@1.2.0`, `ns/name@tag`).
 * Example: `const m = parseManifest(JSON.parse(text)); const ref = parseRef('lang/de@1.0.0');`
 */
import semver from 'semver';
import { z } from 'zod';
import { StoreError } from './errors';

/** The newest package format this code reads and writes. */
export const FORMAT_VERSION = 1;

/** One path segment of a module id (namespace or name), a tag name: lowercase, no leading punctuation. */
export const NAME_RE = /^[a-z0-9][a-z0-9._-]*$/;
export const NAME_MAX = 64;

export const MODULE_KINDS = ['bottleneck', 'lora', 'diff', 'fusion'] as const;
export type ModuleKind = (typeof MODULE_KINDS)[number];

/** True when `s` is a valid namespace, name or tag. */
export function isValidName(s: string): boolean {
  return s.length > 0 && s.length <= NAME_MAX && NAME_RE.test(s);
}

/** Throws INVALID_NAME naming `what` when `s` is not a valid name. */
export function assertName(s: string, what: string): void {
  if (!isValidName(s)) {
    throw new StoreError('INVALID_NAME', `${what} '${s}' is invalid: use 1-${NAME_MAX} characters from [a-z0-9._-], starting with a letter or digit`);
  }
}

const idSchema = z
  .string()
  .refine((s) => {
    const parts = s.split('/');
    return parts.length === 2 && parts.every(isValidName);
  }, 'must be namespace/name, each part matching [a-z0-9][a-z0-9._-]* (max 64 characters)');

const headSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('classification'),
    num_labels: z.number().int().min(1).max(1_000_000),
    layers: z.union([z.literal(1), z.literal(2)]).default(2),
    activation: z.string().default('tanh'),
  }),
  z.object({ type: z.literal('token_classification'), num_labels: z.number().int().min(1).max(1_000_000) }),
  z.object({ type: z.literal('masked_lm') }),
]);
export type HeadConfig = z.infer<typeof headSchema>;

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

const layerList = z.array(z.number().int().min(0)).default([]);
const reductionFactor = z.union([z.number().positive(), z.record(z.string(), z.number().positive())]);

export const BOTTLENECK_PRESETS = ['seq_bn', 'pfeiffer', 'double_seq_bn', 'houlsby', 'par_bn', 'parallel', 'seq_bn_inv', 'double_seq_bn_inv'] as const;

const bottleneckConfig = z.looseObject({
  preset: z.enum(BOTTLENECK_PRESETS).optional(),
  mh_adapter: z.boolean().optional(),
  output_adapter: z.boolean().optional(),
  reduction_factor: reductionFactor.optional(),
  non_linearity: z.enum(['relu', 'gelu', 'swish', 'tanh']).optional(),
  original_ln_before: z.boolean().optional(),
  original_ln_after: z.boolean().optional(),
  residual_before_ln: z.union([z.boolean(), z.literal('post_add')]).optional(),
  adapter_residual_before_ln: z.boolean().optional(),
  ln_before: z.boolean().optional(),
  ln_after: z.boolean().optional(),
  is_parallel: z.boolean().optional(),
  scaling: z.number().optional(),
  leave_out: layerList.optional(),
  inv_adapter: z.union([z.literal('nice'), z.null()]).optional(),
  inv_adapter_reduction_factor: z.number().positive().optional(),
});
export type BottleneckConfigInput = z.infer<typeof bottleneckConfig>;

export const LORA_TARGETS = ['query', 'key', 'value', 'attn_output', 'ffn_in', 'ffn_out'] as const;
const loraConfig = z.looseObject({
  r: z.number().int().min(1).max(4096),
  lora_alpha: z.number().positive().optional(),
  target_modules: z.array(z.enum(LORA_TARGETS)).min(1),
  leave_out: layerList.optional(),
});
export type LoraConfig = z.infer<typeof loraConfig>;

const diffConfig = z.looseObject({
  method: z.enum(['bitfit', 'diff-pruning', 'lt-sft', 'full', 'custom']),
  density: z.number().gt(0).max(1).optional(),
  nnz: z.number().int().min(0).optional(),
});
export type DiffConfig = z.infer<typeof diffConfig>;

const fusionConfig = z.looseObject({
  adapters: z.array(z.string().min(1)).min(1),
  dynamic: z.boolean().optional(),
  temperature: z.number().positive().optional(),
  query_before_ln: z.boolean().optional(),
  residual_before: z.boolean().optional(),
  value_before_softmax: z.boolean().optional(),
  sites: z.array(z.enum(['attention', 'output'])).min(1).optional(),
  leave_out: layerList.optional(),
});
export type FusionConfig = z.infer<typeof fusionConfig>;

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

export const manifestSchema = z.discriminatedUnion('kind', [
  z.looseObject({ ...common, kind: z.literal('bottleneck'), config: bottleneckConfig }),
  z.looseObject({ ...common, kind: z.literal('lora'), config: loraConfig }),
  z.looseObject({ ...common, kind: z.literal('diff'), config: diffConfig }),
  z.looseObject({ ...common, kind: z.literal('fusion'), config: fusionConfig }),
]);

/** A validated manifest (defaults filled in). */
export type Manifest = z.infer<typeof manifestSchema>;
/** What a writer supplies: defaults may be omitted. */
export type ManifestInput = z.input<typeof manifestSchema>;

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

/** Splits `ns/name` into its parts. */
export function splitId(id: string): { namespace: string; name: string } {
  const parts = id.split('/');
  if (parts.length !== 2) throw new StoreError('INVALID_REF', `module id '${id}' must be namespace/name`);
  assertName(parts[0], 'namespace');
  assertName(parts[1], 'name');
  return { namespace: parts[0], name: parts[1] };
}

/** A parsed module reference: an exact version, or a tag (`latest` when the ref names none). */
export type ModuleRef =
  | { namespace: string; name: string; kind: 'version'; version: string }
  | { namespace: string; name: string; kind: 'tag'; tag: string };

/** Parses `ns/name`, `ns/name@1.2.0` or `ns/name@tag`. */
export function parseRef(ref: string): ModuleRef {
  if (typeof ref !== 'string' || ref.length === 0 || ref.length > 256) {
    throw new StoreError('INVALID_REF', `module reference '${String(ref)}' must be ns/name, ns/name@version or ns/name@tag`);
  }
  const at = ref.indexOf('@');
  const id = at < 0 ? ref : ref.slice(0, at);
  const rev = at < 0 ? '' : ref.slice(at + 1);
  let parts: { namespace: string; name: string };
  try {
    parts = splitId(id);
  } catch (e) {
    throw new StoreError('INVALID_REF', `module reference '${ref}' is invalid: ${(e as Error).message}`);
  }
  if (at < 0) return { ...parts, kind: 'tag', tag: 'latest' };
  if (semver.valid(rev) === rev) return { ...parts, kind: 'version', version: rev };
  if (!isValidName(rev)) {
    throw new StoreError('INVALID_REF', `module reference '${ref}': '${rev}' is neither a semver version nor a valid tag name`);
  }
  return { ...parts, kind: 'tag', tag: rev };
}

/** Validates a tag name: a valid name that is not itself a semver version (that would make refs ambiguous). */
export function assertTagName(tag: string): void {
  assertName(tag, 'tag');
  if (semver.valid(tag)) throw new StoreError('INVALID_NAME', `tag '${tag}' looks like a version; tags must not be semver versions`);
}
