/**
 * The modhub HTTP API's wire format, written once as zod schemas: the server validates request bodies and query
 * strings with them, types its answers with them and generates /openapi.json from them; the SDK's types are
 * inferred from them, and test/integration/sdk-wire.test.ts checks every SDK call's answer against them. Every
 * JSON body is snake_case (the HF-compatible /api paths excepted: they speak the HF Hub's own format).
 * This file imports nothing but zod, so the SDK stays free of server code.
 * Example: `const page: SearchPage = SearchPageSchema.parse(await res.json())`.
 */
import { z } from 'zod';

export const MODULE_KINDS = ['bottleneck', 'lora', 'diff', 'fusion', 'ia3'] as const;
export const SCOPES = ['read', 'write', 'admin'] as const;
export const SEARCH_SORTS = ['downloads', 'recent', 'name'] as const;
/** Limits on `POST /v1/infer`. */
export const INFER_LIMITS = { maxInputs: 256, maxTextChars: 100_000, maxTopK: 1000 } as const;

const digest = z.string().regex(/^sha256:[0-9a-f]{64}$/).meta({ description: '`sha256:<hex>`' });
const timestamp = z.string().meta({ description: 'ISO 8601 time', format: 'date-time' });
const count = z.number().int().nonnegative();
/** A query-string integer: decimal digits only, within [min, max]. */
const wholeNumber = (min: number, max: number, def: number) =>
  z
    .string()
    .regex(/^\d{1,10}$/, 'must be a whole number')
    .default(String(def))
    .transform(Number)
    .pipe(z.number().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`))
    .meta({ description: `a whole number from ${min} to ${max}` });

// ---------------------------------------------------------------- shared pieces

export const ModuleKindSchema = z.enum(MODULE_KINDS);
export const ScopeSchema = z.enum(SCOPES);

export const ErrorBodySchema = z
  .strictObject({
    error: z.strictObject({
      code: z.string().meta({ description: 'a code from the table in docs/hub.md, e.g. VERSION_EXISTS' }),
      message: z.string().meta({ description: 'what is wrong and what to do about it' }),
      request_id: z.string().meta({ description: 'the id the server logged this request under (also the X-Request-Id header)' }),
    }),
  });

export const FileEntrySchema = z.strictObject({ name: z.string(), digest, size: count });

/** module.json (docs/module-format.md): the server validates it in full; the wire schema names the fields clients read. */
export const ManifestSchema = z
  .looseObject({
    format_version: z.number().int(),
    id: z.string(),
    version: z.string(),
    kind: ModuleKindSchema,
    config: z.record(z.string(), z.unknown()),
    head: z.record(z.string(), z.unknown()).nullable(),
    task: z.string(),
    language: z.string().optional(),
    labels: z.array(z.string()),
    base: z.looseObject({ family: z.string(), fingerprint: z.string(), hidden_size: z.number().int(), num_layers: z.number().int(), vocab_size: z.number().int() }),
    metrics: z.record(z.string(), z.number()).optional(),
    license: z.string().optional(),
    description: z.string(),
  });

// ---------------------------------------------------------------- hub: modules

export const PublishResultSchema = z
  .strictObject({
    id: z.string(),
    version: z.string(),
    digest,
    size: count,
    files: z.array(FileEntrySchema),
    /** True when this version was already published with exactly these bytes (an idempotent retry, HTTP 200). */
    existing: z.boolean(),
  });

const moduleSummaryShape = {
  id: z.string().meta({ example: 'lang/de' }),
  namespace: z.string(),
  name: z.string(),
  kind: ModuleKindSchema,
  task: z.string(),
  language: z.string().nullable(),
  base_fingerprint: digest,
  description: z.string(),
  downloads: count,
  created_at: timestamp,
  updated_at: timestamp,
};
export const ModuleSummarySchema = z.strictObject(moduleSummaryShape);

export const SearchQuerySchema = z
  .strictObject({
    q: z.string().optional().meta({ description: 'free text over ns/name and description' }),
    kind: ModuleKindSchema.optional(),
    task: z.string().optional(),
    language: z.string().optional(),
    base: z.string().optional().meta({ description: 'base fingerprint `sha256:<hex>`' }),
    namespace: z.string().optional(),
    sort: z.enum(SEARCH_SORTS).default('downloads'),
    limit: wholeNumber(1, 100, 20),
    offset: wholeNumber(0, 1e9, 0),
  });

export const SearchPageSchema = z
  .strictObject({ total: count, limit: count, offset: count, items: z.array(ModuleSummarySchema) });

const versionEntryShape = {
  version: z.string(),
  digest,
  size: count,
  yanked: z.boolean(),
  yank_reason: z.string().nullable(),
  downloads: count,
  created_at: timestamp,
  files: z.array(FileEntrySchema),
};
export const VersionEntrySchema = z.strictObject(versionEntryShape);

export const ModuleInfoSchema = z
  .strictObject({
    ...moduleSummaryShape,
    versions: z.array(VersionEntrySchema).meta({ description: 'highest first' }),
    tags: z.record(z.string(), z.string()).meta({ description: 'tag → version, including the effective latest' }),
    manifest: ManifestSchema,
  });

export const VersionInfoSchema = z.strictObject({ id: z.string(), ...versionEntryShape, manifest: ManifestSchema });

export const SetTagBodySchema = z.strictObject({ version: z.string().min(1).meta({ description: 'exact version' }) });
export const TagsSchema = z.strictObject({ tags: z.record(z.string(), z.string()) });

export const YankBodySchema = z
  .strictObject({ yanked: z.boolean().optional().meta({ description: 'default true; false restores' }), reason: z.string().max(1000).optional() });
export const YankResultSchema = z.strictObject({ id: z.string(), version: z.string(), yanked: z.boolean() });
/** A resumable upload session (POST /v1/uploads, PATCH chunks, PUT ?digest= to commit). */
export const UploadSessionSchema = z.strictObject({
  id: z.string().meta({ description: 'session id (up_…)' }),
  offset: z.number().int().meta({ description: 'bytes received so far: the next chunk starts here' }),
  max_bytes: z.number().int().meta({ description: 'largest total upload (the package limit)' }),
  created_at: z.string(),
});
/** The query of the commit (PUT /v1/uploads/{id}). */
export const UploadCommitQuerySchema = z.strictObject({
  digest: z.string().meta({ description: 'sha256 of the whole upload (sha256:<hex> or <hex>), checked before publishing' }),
  allow_unknown_base: z.enum(['true', 'false', '1', '0']).optional().meta({ description: 'admins only' }),
});

/** A delete that removed the catalog rows but could not remove every blob (answered 200 instead of 204). */
export const DeleteResultSchema = z.strictObject({
  deleted: z.string().meta({ description: 'ns/name or ns/name@version: gone from the catalog' }),
  blobs_removed: z.number().int(),
  blobs_left: z.array(z.string()).meta({ description: 'unreferenced blobs still on disk; the start-up sweep retries them' }),
  message: z.string(),
});

/** The multipart upload's fields (a raw tar / tar.gz body is the other way to publish). */
export const PublishFormSchema = z
  .looseObject({
    archive: z.string().meta({ format: 'binary', description: 'tar or tar.gz of the package' }).optional(),
    'module.json': z.string().meta({ format: 'binary' }).optional(),
    'weights.safetensors': z.string().meta({ format: 'binary' }).optional(),
    'README.md': z.string().meta({ format: 'binary' }).optional(),
    sha256: z.string().optional().meta({ description: 'sha256 hex of the archive, checked' }),
    allow_unknown_base: z.enum(['true', 'false']).optional().meta({ description: 'admin only' }),
  })
  .meta({ description: 'fields `sha256.<file>` carry per-file digests' });

// ---------------------------------------------------------------- hub: tokens, bases, whoami

export const TokenInfoSchema = z
  .strictObject({
    id: z.string(),
    scopes: z.array(ScopeSchema),
    namespace: z.string().nullable().meta({ description: 'the one namespace a write token may write to; null = all' }),
    description: z.string(),
    created_at: timestamp,
  });
export const CreatedTokenSchema = TokenInfoSchema.extend({ token: z.string().meta({ description: 'the secret, shown once' }) });
export const TokenListSchema = z.strictObject({ tokens: z.array(TokenInfoSchema) });
export const CreateTokenBodySchema = z
  .strictObject({ scopes: z.array(ScopeSchema).min(1), namespace: z.string().nullable().optional(), description: z.string().max(1000).optional() });
export const WhoamiSchema = z.strictObject({ token: TokenInfoSchema.nullable() });

export const BaseInfoSchema = z
  .strictObject({
    fingerprint: digest,
    family: z.string(),
    hidden_size: z.number().int(),
    num_layers: z.number().int(),
    vocab_size: z.number().int(),
    description: z.string(),
    created_at: timestamp,
  });
export const BaseListSchema = z.strictObject({ bases: z.array(BaseInfoSchema) });
export const RegisterBaseBodySchema = z
  .strictObject({
    fingerprint: z.string(),
    family: z.string(),
    hidden_size: z.number().int().positive(),
    num_layers: z.number().int().positive(),
    vocab_size: z.number().int().positive(),
    description: z.string().max(1000).optional(),
  });

export const HealthSchema = z.strictObject({ status: z.literal('ok') });

// ---------------------------------------------------------------- inference

/** A composition in AdapterHub's block vocabulary; leaves are module refs (`ns/name`, `ns/name@1.0.0`, `ns/name@tag`). */
export type Composition =
  | string
  | { stack: Composition[] }
  | { sum: Composition[] }
  | { fuse: Composition[]; fusion: string }
  | { parallel: Composition[] }
  | { average: Composition[]; weights?: number[]; normalize_weights?: boolean };

const compositionDoc =
  'AdapterHub blocks: a module ref ("ns/name", "ns/name@1.0.0", "ns/name@tag"), {"stack": [...]}, {"sum": [...]}, ' +
  '{"fuse": [...], "fusion": "ns/f"}, {"parallel": [...]}, {"average": [...], "weights": [...]}; null or absent = the bare base';

/** Token classification: entity grouping strategies (HF TokenClassificationPipeline's aggregation_strategy). */
export const AGGREGATIONS = ['none', 'simple', 'first', 'average', 'max'] as const;
/** Embedding pooling over the attended tokens. */
export const POOLINGS = ['cls', 'mean', 'max'] as const;

export const InferRequestSchema = z
  .strictObject({
    inputs: z
      .array(z.strictObject({ text: z.string().max(INFER_LIMITS.maxTextChars), text_pair: z.string().max(INFER_LIMITS.maxTextChars).optional() }))
      .min(1)
      .max(INFER_LIMITS.maxInputs),
    // The engine checks compositions and answers INVALID_COMPOSITION naming the offending block.
    composition: z.unknown().optional().meta({ description: compositionDoc }),
    task: z.enum(['auto', 'embedding', 'fill_mask']).optional(),
    top_k: z.number().int().min(1).max(INFER_LIMITS.maxTopK).optional(),
    max_length: z.number().int().min(2).optional().meta({ description: "longest tokenised input; at most the base's max_length (GET /v1/base)" }),
    head: z.string().min(1).max(300).optional().meta({ description: 'the module (ns/name[@version]) whose head to use when the composition brings two heads of one kind (AdapterHub active_head)' }),
    aggregation_strategy: z.enum(AGGREGATIONS).optional().meta({ description: 'token classification: how tokens group into entities, as HF pipelines (default simple)' }),
    pooling: z.enum(POOLINGS).optional().meta({ description: 'embeddings: cls, mean (default) or max over the attended tokens' }),
    normalize: z.boolean().optional().meta({ description: 'embeddings: scale to unit L2 norm (default false)' }),
    timeout_ms: z.number().int().min(1).max(3_600_000).optional().meta({ description: 'deadline from arrival; past it 504 DEADLINE_EXCEEDED (default: serve --timeout-ms)' }),
  });

const scored = z.strictObject({ label: z.string(), score: z.number() });
const EntitySchema = z.strictObject({
  entity: z.string().optional().meta({ description: "the token's label (aggregation none)" }),
  entity_group: z.string().optional().meta({ description: 'the label without B-/I- (other aggregations)' }),
  score: z.number(),
  word: z.string().meta({ description: 'the covered span of the input text' }),
  start: z.number().int(),
  end: z.number().int(),
  sequence: z.literal(1).optional().meta({ description: 'present when the span is in text_pair' }),
});
export const PredictionSchema = z
  .discriminatedUnion('type', [
    z.strictObject({ type: z.literal('classification'), label: z.string(), score: z.number(), scores: z.array(scored) }),
    z.strictObject({
      type: z.literal('token_classification'),
      tokens: z.array(z.strictObject({ token: z.string(), label: z.string(), score: z.number(), start: z.number().int(), end: z.number().int() })),
      entities: z.array(EntitySchema),
      aggregation_strategy: z.enum(AGGREGATIONS),
    }),
    z.strictObject({
      type: z.literal('fill_mask'),
      masks: z.array(z.strictObject({ position: z.number().int(), candidates: z.array(z.strictObject({ token: z.string(), token_id: z.number().int(), score: z.number() })) })),
    }),
    z.strictObject({ type: z.literal('embedding'), embedding: z.array(z.number()), pooling: z.enum(POOLINGS), normalized: z.boolean() }),
  ]);

export const InferResponseSchema = z
  .strictObject({
    results: z.array(z.strictObject({ branches: z.array(PredictionSchema) })).meta({ description: 'one entry per input, one prediction per branch (parallel gives several)' }),
    modules: z.array(z.array(z.string())).meta({ description: 'the modules each branch ran, as id@version' }),
    took_ms: z.number(),
  });

export const ServedBaseSchema = z
  .strictObject({
    family: z.string(),
    fingerprint: digest,
    hidden_size: z.number().int(),
    num_layers: z.number().int(),
    num_heads: z.number().int(),
    intermediate_size: z.number().int(),
    vocab_size: z.number().int(),
    max_length: z.number().int(),
    device: z.string(),
  });

// ---------------------------------------------------------------- the catalogue

/**
 * Every named wire schema, as /openapi.json's components. Requests are rendered as the client sends them (zod's
 * input side: defaults optional), responses as the server sends them.
 */
export const WIRE_SCHEMAS = {
  requests: {
    SearchQuery: SearchQuerySchema,
    PublishForm: PublishFormSchema,
    SetTagBody: SetTagBodySchema,
    YankBody: YankBodySchema,
    CreateTokenBody: CreateTokenBodySchema,
    RegisterBaseBody: RegisterBaseBodySchema,
    InferRequest: InferRequestSchema,
    UploadCommitQuery: UploadCommitQuerySchema,
  },
  responses: {
    ModuleKind: ModuleKindSchema,
    Scope: ScopeSchema,
    Error: ErrorBodySchema,
    File: FileEntrySchema,
    Manifest: ManifestSchema,
    PublishResult: PublishResultSchema,
    ModuleSummary: ModuleSummarySchema,
    SearchPage: SearchPageSchema,
    VersionEntry: VersionEntrySchema,
    ModuleInfo: ModuleInfoSchema,
    VersionInfo: VersionInfoSchema,
    Tags: TagsSchema,
    YankResult: YankResultSchema,
    DeleteResult: DeleteResultSchema,
    UploadSession: UploadSessionSchema,
    TokenInfo: TokenInfoSchema,
    CreatedToken: CreatedTokenSchema,
    TokenList: TokenListSchema,
    Whoami: WhoamiSchema,
    BaseInfo: BaseInfoSchema,
    BaseList: BaseListSchema,
    Health: HealthSchema,
    Prediction: PredictionSchema,
    InferResponse: InferResponseSchema,
    ServedBase: ServedBaseSchema,
  },
} as const;

// ---------------------------------------------------------------- the types, inferred

export type ModuleKind = z.infer<typeof ModuleKindSchema>;
export type Scope = z.infer<typeof ScopeSchema>;
export type SearchSort = (typeof SEARCH_SORTS)[number];
export type ErrorBody = z.infer<typeof ErrorBodySchema>;
export type FileEntry = z.infer<typeof FileEntrySchema>;
export type ManifestJson = z.infer<typeof ManifestSchema>;
export type PublishResult = z.infer<typeof PublishResultSchema>;
export type ModuleSummary = z.infer<typeof ModuleSummarySchema>;
/** What `search()` takes (the query string of GET /v1/modules). */
export type SearchParams = Omit<z.input<typeof SearchQuerySchema>, 'limit' | 'offset'> & { limit?: number; offset?: number };
export type SearchPage = z.infer<typeof SearchPageSchema>;
export type VersionEntry = z.infer<typeof VersionEntrySchema>;
export type ModuleInfo = z.infer<typeof ModuleInfoSchema>;
export type VersionInfo = z.infer<typeof VersionInfoSchema>;
export type YankResult = z.infer<typeof YankResultSchema>;
export type DeleteResult = z.infer<typeof DeleteResultSchema>;
export type UploadSession = z.infer<typeof UploadSessionSchema>;
export type Tags = z.infer<typeof TagsSchema>;
export type TokenList = z.infer<typeof TokenListSchema>;
export type BaseList = z.infer<typeof BaseListSchema>;
export type Whoami = z.infer<typeof WhoamiSchema>;
export type Health = z.infer<typeof HealthSchema>;
export type TokenInfo = z.infer<typeof TokenInfoSchema>;
export type CreatedToken = z.infer<typeof CreatedTokenSchema>;
export type CreateTokenInput = z.input<typeof CreateTokenBodySchema>;
export type BaseInfo = z.infer<typeof BaseInfoSchema>;
export type BaseInput = z.input<typeof RegisterBaseBodySchema>;
export type InferRequest = Omit<z.input<typeof InferRequestSchema>, 'composition'> & { composition?: Composition | null };
export type Prediction = z.infer<typeof PredictionSchema>;
export type InferResponse = z.infer<typeof InferResponseSchema>;
export type ServedBase = z.infer<typeof ServedBaseSchema>;
