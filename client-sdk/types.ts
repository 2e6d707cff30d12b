/**
 * Wire types of the modhub HTTP API as the SDK sees them (kept separate from the server's code on purpose: the
 * SDK imports nothing from server/ or modules-store/). Field names follow the JSON the server sends.
 */

export type ModuleKind = 'bottleneck' | 'lora' | 'diff' | 'fusion';
export type Scope = 'read' | 'write' | 'admin';
export type SearchSort = 'downloads' | 'recent' | 'name';

export interface FileEntry {
  name: string;
  /** `sha256:<hex>` */
  digest: string;
  size: number;
}

export interface PublishResult {
  id: string;
  version: string;
  digest: string;
  size: number;
  files: FileEntry[];
}

export interface ModuleSummary {
  id: string;
  namespace: string;
  name: string;
  kind: ModuleKind;
  task: string;
  language: string | null;
  baseFingerprint: string;
  description: string;
  downloads: number;
  createdAt: string;
  updatedAt: string;
}

export interface SearchParams {
  q?: string;
  kind?: ModuleKind;
  task?: string;
  language?: string;
  /** Base fingerprint `sha256:<hex>`. */
  base?: string;
  namespace?: string;
  sort?: SearchSort;
  limit?: number;
  offset?: number;
}

export interface SearchPage {
  total: number;
  limit: number;
  offset: number;
  items: ModuleSummary[];
}

export interface VersionEntry {
  version: string;
  digest: string;
  size: number;
  yanked: boolean;
  yankReason: string | null;
  downloads: number;
  createdAt: string;
  files: FileEntry[];
}

/** module.json (docs/module-format.md); typed loosely here, the server validates it. */
export interface ManifestJson {
  format_version: number;
  id: string;
  version: string;
  kind: ModuleKind;
  config: Record<string, unknown>;
  head: Record<string, unknown> | null;
  task: string;
  language?: string;
  labels: string[];
  base: { family: string; fingerprint: string; hidden_size: number; num_layers: number; vocab_size: number; [k: string]: unknown };
  metrics?: Record<string, number>;
  license?: string;
  description: string;
  [k: string]: unknown;
}

export interface ModuleInfo extends ModuleSummary {
  versions: VersionEntry[];
  tags: Record<string, string>;
  manifest: ManifestJson;
}

export interface VersionInfo extends VersionEntry {
  id: string;
  manifest: ManifestJson;
}

export interface TokenInfo {
  id: string;
  scopes: Scope[];
  namespace: string | null;
  description: string;
  createdAt: string;
}

export interface BaseInfo {
  fingerprint: string;
  family: string;
  hiddenSize: number;
  numLayers: number;
  vocabSize: number;
  description: string;
  createdAt: string;
}

export interface BaseInput {
  fingerprint: string;
  family: string;
  hidden_size: number;
  num_layers: number;
  vocab_size: number;
  description?: string;
}

// ---------------------------------------------------------------- inference (POST /v1/infer, GET /v1/base)

/** A composition in AdapterHub's block vocabulary; leaves are module refs (`ns/name`, `ns/name@1.0.0`, `ns/name@tag`). */
export type Composition =
  | string
  | { stack: Composition[] }
  | { sum: Composition[] }
  | { fuse: Composition[]; fusion: string }
  | { parallel: Composition[] }
  | { average: Composition[]; weights?: number[]; normalize_weights?: boolean };

export interface InferRequest {
  inputs: { text: string; text_pair?: string }[];
  /** Omit for the bare base. */
  composition?: Composition | null;
  /** The module whose head to use when the composition brings two heads of one kind (AdapterHub's active_head). */
  head?: string;
  task?: 'auto' | 'embedding' | 'fill_mask';
  top_k?: number;
  max_length?: number;
  /** Token classification: how tokens group into entities (HF pipelines; default 'simple'). */
  aggregation_strategy?: 'none' | 'simple' | 'first' | 'average' | 'max';
  /** Embeddings: pooling over the attended tokens (default 'mean'). */
  pooling?: 'cls' | 'mean' | 'max';
  /** Embeddings: unit L2 norm (default false). */
  normalize?: boolean;
  /** Deadline in ms; past it the server answers 504 DEADLINE_EXCEEDED. */
  timeout_ms?: number;
}

/** An entity: `entity` (aggregation 'none') or `entity_group`, and the covered span of the input. */
export interface Entity {
  entity?: string;
  entity_group?: string;
  score: number;
  word: string;
  start: number;
  end: number;
  /** 1 when the span is in text_pair. */
  sequence?: 1;
}

export type Prediction =
  | { type: 'classification'; label: string; score: number; scores: { label: string; score: number }[] }
  | {
      type: 'token_classification';
      tokens: { token: string; label: string; score: number; start: number; end: number }[];
      entities: Entity[];
      aggregation_strategy: 'none' | 'simple' | 'first' | 'average' | 'max';
    }
  | { type: 'fill_mask'; masks: { position: number; candidates: { token: string; token_id: number; score: number }[] }[] }
  | { type: 'embedding'; embedding: number[]; pooling: 'cls' | 'mean' | 'max'; normalized: boolean };

export interface InferResponse {
  /** One entry per input, each with one prediction per branch (`parallel` gives several). */
  results: { branches: Prediction[] }[];
  /** The modules each branch ran (`id@version`). */
  modules: string[][];
  took_ms: number;
}

export interface ServedBase {
  family: string;
  fingerprint: string;
  hidden_size: number;
  num_layers: number;
  num_heads: number;
  intermediate_size: number;
  vocab_size: number;
  max_length: number;
  device: string;
}
