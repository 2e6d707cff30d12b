/**
 * Reads a Hugging Face `config.json` of a supported encoder family (bert, roberta, xlm-roberta, distilbert)
 * into one normalised `BaseConfig` that the graph builder, the trainer and the hub use, whatever the family's
 * own field names are. Example: `const cfg = parseConfig(JSON.parse(fs.readFileSync('config.json', 'utf8')))`.
 */
import * as fs from 'fs';

import { FAMILIES, type Family } from '../../modules-store/hf-names';

export { FAMILIES, type Family };

/** 'gelu' = exact erf form; 'gelu_new' = tanh approximation; 'relu'. */
export type HiddenAct = 'gelu' | 'gelu_new' | 'relu';

export interface BaseConfig {
  family: Family;
  /** D */
  hiddenSize: number;
  /** L */
  numLayers: number;
  /** H */
  numHeads: number;
  /** F */
  intermediateSize: number;
  /** V */
  vocabSize: number;
  /** Rows of the position embedding table (HF `max_position_embeddings`). */
  maxPositions: number;
  /** Longest token sequence the position table allows: maxPositions - positionOffset. */
  maxSequenceLength: number;
  /** Rows of the token-type table; 0 when the family has none (DistilBERT). */
  typeVocabSize: number;
  layerNormEps: number;
  hiddenAct: HiddenAct;
  /**
   * First position id of a real token. RoBERTa / XLM-R: padding_idx + 1 (= 2), ids counted over non-pad tokens
   * (HF `create_position_ids_from_input_ids`, see `positionIds`); BERT / DistilBERT: 0.
   */
  positionOffset: number;
  padTokenId: number;
  /** The config.json object as read. */
  raw: Record<string, unknown>;
}

type Raw = Record<string, unknown>;

function where(source: string): string {
  return source ? `${source}: ` : '';
}

function intField(raw: Raw, name: string, source: string, opts: { min?: number; def?: number } = {}): number {
  const v = raw[name];
  if (v === undefined || v === null) {
    if (opts.def !== undefined) return opts.def;
    throw new TypeError(`${where(source)}config field '${name}' is missing`);
  }
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new TypeError(`${where(source)}config field '${name}' must be an integer, got ${JSON.stringify(v)}`);
  const min = opts.min ?? 1;
  if (v < min) throw new RangeError(`${where(source)}config field '${name}' must be >= ${min}, got ${v}`);
  return v;
}

function numField(raw: Raw, name: string, source: string, def: number): number {
  const v = raw[name];
  if (v === undefined || v === null) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new RangeError(`${where(source)}config field '${name}' must be a positive number, got ${JSON.stringify(v)}`);
  return v;
}

function actField(raw: Raw, name: string, source: string): HiddenAct {
  const v = raw[name] ?? 'gelu';
  switch (v) {
    case 'gelu':
      return 'gelu';
    case 'gelu_new':
    case 'gelu_pytorch_tanh':
    case 'gelu_fast':
      return 'gelu_new'; // all three are the tanh approximation
    case 'relu':
      return 'relu';
    default:
      throw new RangeError(`${where(source)}config field '${name}' must be one of gelu, gelu_new, gelu_pytorch_tanh, relu; got ${JSON.stringify(v)}`);
  }
}

/** Normalises a parsed config.json object; `source` (e.g. the file path) prefixes error messages. */
export function parseConfig(raw: unknown, source = ''): BaseConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new TypeError(`${where(source)}config must be a JSON object`);
  const r = raw as Raw;
  const mt = r.model_type;
  if (typeof mt !== 'string') throw new TypeError(`${where(source)}config field 'model_type' is missing; expected one of ${FAMILIES.join(', ')}`);
  if (!(FAMILIES as readonly string[]).includes(mt)) {
    throw new RangeError(`${where(source)}config field 'model_type' is '${mt}'; supported: ${FAMILIES.join(', ')}`);
  }
  const family = mt as Family;
  let cfg: Omit<BaseConfig, 'maxSequenceLength'>;
  if (family === 'distilbert') {
    if (r.sinusoidal_pos_embds === true) {
      throw new RangeError(`${where(source)}config field 'sinusoidal_pos_embds' is true; modhub supports learned position embeddings only`);
    }
    cfg = {
      family,
      hiddenSize: intField(r, 'dim', source),
      numLayers: intField(r, 'n_layers', source),
      numHeads: intField(r, 'n_heads', source),
      intermediateSize: intField(r, 'hidden_dim', source),
      vocabSize: intField(r, 'vocab_size', source),
      maxPositions: intField(r, 'max_position_embeddings', source, { def: 512 }),
      typeVocabSize: 0,
      layerNormEps: 1e-12, // fixed in HF's DistilBERT modelling code
      hiddenAct: actField(r, 'activation', source),
      positionOffset: 0,
      padTokenId: intField(r, 'pad_token_id', source, { min: 0, def: 0 }),
      raw: r,
    };
  } else {
    const pet = r.position_embedding_type;
    if (pet !== undefined && pet !== null && pet !== 'absolute') {
      throw new RangeError(`${where(source)}config field 'position_embedding_type' is ${JSON.stringify(pet)}; only 'absolute' is supported`);
    }
    const isRoberta = family !== 'bert';
    const padTokenId = intField(r, 'pad_token_id', source, { min: 0, def: isRoberta ? 1 : 0 });
    cfg = {
      family,
      hiddenSize: intField(r, 'hidden_size', source),
      numLayers: intField(r, 'num_hidden_layers', source),
      numHeads: intField(r, 'num_attention_heads', source),
      intermediateSize: intField(r, 'intermediate_size', source),
      vocabSize: intField(r, 'vocab_size', source),
      maxPositions: intField(r, 'max_position_embeddings', source, { def: 512 }),
      typeVocabSize: intField(r, 'type_vocab_size', source, { min: 0, def: isRoberta ? 1 : 2 }),
      layerNormEps: numField(r, 'layer_norm_eps', source, 1e-12),
      hiddenAct: actField(r, 'hidden_act', source),
      positionOffset: isRoberta ? padTokenId + 1 : 0,
      padTokenId,
      raw: r,
    };
  }
  const headsField = family === 'distilbert' ? 'n_heads' : 'num_attention_heads';
  const dimField = family === 'distilbert' ? 'dim' : 'hidden_size';
  if (cfg.hiddenSize % cfg.numHeads !== 0) {
    throw new RangeError(`${where(source)}config field '${dimField}' (${cfg.hiddenSize}) must be divisible by '${headsField}' (${cfg.numHeads})`);
  }
  if (cfg.padTokenId >= cfg.vocabSize) {
    throw new RangeError(`${where(source)}config field 'pad_token_id' (${cfg.padTokenId}) must be < 'vocab_size' (${cfg.vocabSize})`);
  }
  const maxSequenceLength = cfg.maxPositions - cfg.positionOffset;
  if (maxSequenceLength < 1) {
    throw new RangeError(`${where(source)}config field 'max_position_embeddings' (${cfg.maxPositions}) leaves no positions after the offset ${cfg.positionOffset}`);
  }
  return { ...cfg, maxSequenceLength };
}

/** Reads and normalises `<file>` (a config.json path). */
export function readConfig(file: string): BaseConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new TypeError(`${file}: cannot read config (${(e as Error).message})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new TypeError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  return parseConfig(raw, file);
}

/**
 * Position ids for a padded batch [B*T] of token ids, as the family's HF model computes them: BERT/DistilBERT
 * 0..T-1 per row; RoBERTa/XLM-R `create_position_ids_from_input_ids` (cumulative count of non-pad tokens,
 * plus padding_idx, pad tokens get padding_idx).
 */
export function positionIds(config: Pick<BaseConfig, 'positionOffset' | 'padTokenId'>, inputIds: ArrayLike<number>, seqLen: number): Int32Array {
  if (!Number.isInteger(seqLen) || seqLen <= 0 || inputIds.length % seqLen !== 0) {
    throw new RangeError(`'seqLen' must divide the number of ids (${inputIds.length}), got ${seqLen}`);
  }
  const out = new Int32Array(inputIds.length);
  if (config.positionOffset === 0) {
    for (let i = 0; i < out.length; i++) out[i] = i % seqLen;
    return out;
  }
  const pad = config.padTokenId;
  for (let b = 0; b < inputIds.length / seqLen; b++) {
    let count = 0;
    for (let t = 0; t < seqLen; t++) {
      const i = b * seqLen + t;
      if (inputIds[i] !== pad) {
        count++;
        out[i] = count + pad;
      } else {
        out[i] = pad;
      }
    }
  }
  return out;
}
