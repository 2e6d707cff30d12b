/**
 * The base families modhub serves and each family's Hugging Face tensor names ↔ the ONE canonical naming the
 * engine uses. Pure tables, here (not in server/) because the package format needs them too: sparse diffs and
 * foreign formats (interop/) name base parameters by their HF names. server/model/weights.ts builds on them.
 * Example: `canonicalToHf('bert', 'layers.3.ffn_out.weight')` → 'bert.encoder.layer.3.output.dense.weight'.
 */

export const FAMILIES = ['bert', 'roberta', 'xlm-roberta', 'distilbert'] as const;
export type Family = (typeof FAMILIES)[number];

export interface FamilyNames {
  /** Prefix of the encoder in *ForMaskedLM checkpoints; bare *Model checkpoints omit it. */
  prefix: string;
  /** Non-layer encoder names, canonical → HF (without prefix). */
  encoder: Record<string, string>;
  /** HF path of the layer stack, before `.{l}.`. */
  layerPath: string;
  /** Per-layer module paths, canonical → HF (each gets .weight and .bias). */
  layer: Record<string, string>;
  /** MLM head names, canonical → HF (never prefixed). */
  head: Record<string, string>;
  /** Extra HF names accepted on load (duplicates of a canonical tensor). */
  aliases: Record<string, string>;
  /** HF names that are known and deliberately not loaded (buffers, task heads of other architectures). */
  ignored: RegExp[];
}

const BERT_LAYER: Record<string, string> = {
  'attn.q': 'attention.self.query',
  'attn.k': 'attention.self.key',
  'attn.v': 'attention.self.value',
  'attn.o': 'attention.output.dense',
  attn_ln: 'attention.output.LayerNorm',
  ffn_in: 'intermediate.dense',
  ffn_out: 'output.dense',
  ffn_ln: 'output.LayerNorm',
};

const BERT_ENCODER: Record<string, string> = {
  'embeddings.word': 'embeddings.word_embeddings.weight',
  'embeddings.position': 'embeddings.position_embeddings.weight',
  'embeddings.token_type': 'embeddings.token_type_embeddings.weight',
  'embeddings.ln.weight': 'embeddings.LayerNorm.weight',
  'embeddings.ln.bias': 'embeddings.LayerNorm.bias',
  'pooler.dense.weight': 'pooler.dense.weight',
  'pooler.dense.bias': 'pooler.dense.bias',
};

const ROBERTA: FamilyNames = {
  prefix: 'roberta.',
  encoder: BERT_ENCODER,
  layerPath: 'encoder.layer',
  layer: BERT_LAYER,
  head: {
    'mlm.dense.weight': 'lm_head.dense.weight',
    'mlm.dense.bias': 'lm_head.dense.bias',
    'mlm.ln.weight': 'lm_head.layer_norm.weight',
    'mlm.ln.bias': 'lm_head.layer_norm.bias',
    'mlm.decoder.bias': 'lm_head.bias',
    'mlm.decoder.weight': 'lm_head.decoder.weight',
  },
  aliases: { 'lm_head.decoder.bias': 'mlm.decoder.bias' },
  ignored: [/(^|\.)embeddings\.position_ids$/, /^classifier\./, /^qa_outputs\./],
};

const NAMES: Record<Family, FamilyNames> = {
  bert: {
    prefix: 'bert.',
    encoder: BERT_ENCODER,
    layerPath: 'encoder.layer',
    layer: BERT_LAYER,
    head: {
      'mlm.dense.weight': 'cls.predictions.transform.dense.weight',
      'mlm.dense.bias': 'cls.predictions.transform.dense.bias',
      'mlm.ln.weight': 'cls.predictions.transform.LayerNorm.weight',
      'mlm.ln.bias': 'cls.predictions.transform.LayerNorm.bias',
      'mlm.decoder.bias': 'cls.predictions.bias',
      'mlm.decoder.weight': 'cls.predictions.decoder.weight',
    },
    aliases: { 'cls.predictions.decoder.bias': 'mlm.decoder.bias' },
    ignored: [/(^|\.)embeddings\.position_ids$/, /^cls\.seq_relationship\./, /^classifier\./, /^qa_outputs\./],
  },
  roberta: ROBERTA,
  'xlm-roberta': ROBERTA,
  distilbert: {
    prefix: 'distilbert.',
    encoder: {
      'embeddings.word': 'embeddings.word_embeddings.weight',
      'embeddings.position': 'embeddings.position_embeddings.weight',
      'embeddings.ln.weight': 'embeddings.LayerNorm.weight',
      'embeddings.ln.bias': 'embeddings.LayerNorm.bias',
    },
    layerPath: 'transformer.layer',
    layer: {
      'attn.q': 'attention.q_lin',
      'attn.k': 'attention.k_lin',
      'attn.v': 'attention.v_lin',
      'attn.o': 'attention.out_lin',
      attn_ln: 'sa_layer_norm',
      ffn_in: 'ffn.lin1',
      ffn_out: 'ffn.lin2',
      ffn_ln: 'output_layer_norm',
    },
    head: {
      'mlm.dense.weight': 'vocab_transform.weight',
      'mlm.dense.bias': 'vocab_transform.bias',
      'mlm.ln.weight': 'vocab_layer_norm.weight',
      'mlm.ln.bias': 'vocab_layer_norm.bias',
      'mlm.decoder.bias': 'vocab_projector.bias',
      'mlm.decoder.weight': 'vocab_projector.weight',
    },
    aliases: {},
    ignored: [/(^|\.)embeddings\.position_ids$/, /^pre_classifier\./, /^classifier\./, /^qa_outputs\./],
  },
};

export const LAYER_MODULES = Object.keys(BERT_LAYER);
export const CANONICAL_LAYER = /^layers\.(\d+)\.(attn\.[qkvo]|attn_ln|ffn_in|ffn_out|ffn_ln)\.(weight|bias)$/;

export function familyNames(family: Family): FamilyNames {
  const n = NAMES[family];
  if (!n) throw new RangeError(`'family' must be one of ${Object.keys(NAMES).join(', ')}, got '${family}'`);
  return n;
}

/** HF name for a canonical name; `prefixed` (default true) adds the encoder prefix as in *ForMaskedLM checkpoints. */
export function canonicalToHf(family: Family, canonical: string, prefixed = true): string {
  const n = familyNames(family);
  const p = prefixed ? n.prefix : '';
  if (canonical in n.head) return n.head[canonical];
  if (canonical in n.encoder) return p + n.encoder[canonical];
  const m = CANONICAL_LAYER.exec(canonical);
  if (m) return `${p}${n.layerPath}.${m[1]}.${n.layer[m[2]]}.${m[3]}`;
  throw new RangeError(`'canonical' is not a ${family} tensor name: '${canonical}'`);
}

/** Normalises legacy LayerNorm names (`gamma`/`beta` → `weight`/`bias`). */
function normaliseLegacy(name: string): string {
  if (!/(LayerNorm|layer_norm)\.(gamma|beta)$/.test(name)) return name;
  return name.replace(/\.gamma$/, '.weight').replace(/\.beta$/, '.bias');
}

/**
 * Canonical name for an HF tensor name of `family`, or null when the name is not part of the encoder / MLM head.
 * Accepts names with or without the encoder prefix and legacy `gamma`/`beta` LayerNorm names.
 */
export function hfToCanonical(family: Family, hfName: string): string | null {
  const n = familyNames(family);
  const name = normaliseLegacy(hfName);
  for (const [c, h] of Object.entries(n.head)) if (h === name) return c;
  if (name in n.aliases) return n.aliases[name];
  const bare = name.startsWith(n.prefix) ? name.slice(n.prefix.length) : name;
  for (const [c, h] of Object.entries(n.encoder)) if (h === bare) return c;
  const lp = `${n.layerPath}.`;
  if (bare.startsWith(lp)) {
    const m = /^(\d+)\.(.+)\.(weight|bias)$/.exec(bare.slice(lp.length));
    if (m) {
      for (const mod of LAYER_MODULES) if (n.layer[mod] === m[2]) return `layers.${Number(m[1])}.${mod}.${m[3]}`;
    }
  }
  return null;
}
