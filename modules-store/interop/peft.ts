/**
 * Hugging Face PEFT folders in and out: `adapter_config.json` (`peft_type` LORA / IA3, `target_modules`, `r`,
 * `lora_alpha`, `modules_to_save`, `base_model_name_or_path`, ...) + `adapter_model.safetensors` / `.bin`.
 * Keys (peft/utils/save_and_load.py: the adapter name is dropped, modules_to_save copies lose their wrapper):
 *   base_model.model.{module path}.lora_A.weight [r, in]   .lora_B.weight [out, r]
 *   base_model.model.{module path}.ia3_l   [out, 1] (scales the output) or [1, in] (a feedforward module: its input)
 *   base_model.model.classifier.{...}      the head, saved whole through modules_to_save
 * Module paths are the wrapped task model's (`bert.encoder.layer.0.attention.self.query`, DistilBERT
 * `distilbert.transformer.layer.0.attention.q_lin`); bare-encoder paths (`encoder.layer.0...`) are read too.
 * Heads: RoBERTa / XLM-R `classifier.dense` + `classifier.out_proj` and BERT `bert.pooler.dense` + `classifier`
 * are a 2-layer tanh classification head on the first token; `classifier` alone with task_type TOKEN_CLS is a
 * token-classification head.
 * Example: `importPeft(files, base)`; `exportPeft(manifest, tensors)`.
 */
import type { Family } from '../hf-names';
import { StoreError } from '../errors';
import { HEAD, type HeadConfig } from '../kinds/heads';
import { ia3Scales, IA3 } from '../kinds/ia3';
import { LINEAR_TARGETS, LORA, type LinearTarget } from '../kinds/lora';
import type { BaseRef, Manifest } from '../manifest';
import { serializeSafetensors, type Tensor } from '../safetensors';
import { familyOf, familyPrefix, floatAt, jsonFile, labelsOf, leaveOutOf, linearOf, linearPath, unsupported, weightsOf } from './names';
import type { ConvertedModule, FileSet } from './types';

export const PEFT_CONFIG = 'adapter_config.json';
export const PEFT_WEIGHTS = ['adapter_model.safetensors', 'adapter_model.bin'];
const WRAP = 'base_model.model.';

interface HeadOut {
  head: HeadConfig;
  labels: string[];
  tensors: Map<string, Tensor>;
  task: string;
}

/** modules_to_save tensors → a modhub head (or a refusal naming the tensors). */
function importHead(rest: Map<string, Tensor>, c: Record<string, unknown>, family: Family, base: BaseRef, file: string): HeadOut | null {
  if (rest.size === 0) return null;
  const D = base.hidden_size;
  const p = familyPrefix(family);
  const get = (k: string) => rest.get(k) ?? rest.get(k.startsWith(p) ? k.slice(p.length) : k);
  const out = new Map<string, Tensor>();
  const put = (to: string, from: string, shape: number[]) => {
    const t = get(from);
    if (!t) throw new StoreError('INVALID_WEIGHTS', `${file} has no tensor '${WRAP}${from}'`);
    out.set(to, floatAt(new Map([[from, t]]), from, file, shape));
  };
  const labels = (n: number) => labelsOf(n, c.label2id, c.id2label);
  if (get('classifier.out_proj.weight') && get('classifier.dense.weight')) {
    const C = get('classifier.out_proj.weight')!.shape[0];
    put(`${HEAD.clsDense}.weight`, 'classifier.dense.weight', [D, D]);
    put(`${HEAD.clsDense}.bias`, 'classifier.dense.bias', [D]);
    put(`${HEAD.outProj}.weight`, 'classifier.out_proj.weight', [C, D]);
    put(`${HEAD.outProj}.bias`, 'classifier.out_proj.bias', [C]);
    if (rest.size !== 4) throw new StoreError('INVALID_WEIGHTS', `${file}: modules_to_save holds tensors besides the classifier: ${[...rest.keys()].join(', ')}`);
    return { head: { type: 'classification', num_labels: C, layers: 2, activation: 'tanh' }, labels: labels(C), tensors: out, task: 'text-classification' };
  }
  const cls = get('classifier.weight');
  if (!cls) return unsupported(PEFT_CONFIG, 'modules_to_save', c.modules_to_save, `its tensors (${[...rest.keys()].slice(0, 3).join(', ')}) are not a classifier head modhub knows`);
  const C = cls.shape[0];
  if (get(`${p}pooler.dense.weight`) || get('pooler.dense.weight')) {
    put(`${HEAD.clsDense}.weight`, `${p}pooler.dense.weight`, [D, D]);
    put(`${HEAD.clsDense}.bias`, `${p}pooler.dense.bias`, [D]);
    put(`${HEAD.outProj}.weight`, 'classifier.weight', [C, D]);
    put(`${HEAD.outProj}.bias`, 'classifier.bias', [C]);
    if (rest.size !== 4) throw new StoreError('INVALID_WEIGHTS', `${file}: modules_to_save holds tensors besides pooler and classifier`);
    return { head: { type: 'classification', num_labels: C, layers: 2, activation: 'tanh' }, labels: labels(C), tensors: out, task: 'text-classification' };
  }
  if (c.task_type !== 'TOKEN_CLS') {
    return unsupported(PEFT_CONFIG, 'task_type', c.task_type ?? null, "a bare 'classifier' is read as a token-classification head (TOKEN_CLS); a sequence classifier also needs the pooler (BERT: add 'pooler' to modules_to_save) or classifier.dense (RoBERTa)");
  }
  put(`${HEAD.outProj}.weight`, 'classifier.weight', [C, D]);
  put(`${HEAD.outProj}.bias`, 'classifier.bias', [C]);
  if (rest.size !== 2) throw new StoreError('INVALID_WEIGHTS', `${file}: modules_to_save holds tensors besides the classifier`);
  return { head: { type: 'token_classification', num_labels: C }, labels: labels(C), tensors: out, task: 'token-classification' };
}

/** A PEFT LoRA / IA³ folder → a modhub module. */
export function importPeft(files: FileSet, base: BaseRef): ConvertedModule {
  const family = familyOf(base);
  const c = jsonFile(files, PEFT_CONFIG);
  const f = PEFT_CONFIG;
  const type = c.peft_type;
  if (type !== 'LORA' && type !== 'IA3') unsupported(f, 'peft_type', type, 'modhub imports LORA and IA3 (prefix tuning, prompt tuning, AdaLoRA, LoHa, ... have no modhub kind)');
  if (type === 'LORA') {
    if (c.use_dora === true) unsupported(f, 'use_dora', true, 'DoRA has no modhub kind');
    if (c.bias !== undefined && c.bias !== 'none') unsupported(f, 'bias', c.bias, "only bias 'none' (trained biases would be a diff)");
    for (const k of ['rank_pattern', 'alpha_pattern'] as const) {
      if (c[k] && typeof c[k] === 'object' && Object.keys(c[k] as object).length) unsupported(f, k, c[k], 'one rank and alpha for all layers');
    }
    if (c.fan_in_fan_out === true) unsupported(f, 'fan_in_fan_out', true, 'encoder Linear layers store [out, in]');
  }
  const { file, tensors } = weightsOf(files, PEFT_WEIGHTS);
  const found = new Map<string, { layer: number; target: LinearTarget; part: string; t: Tensor }>();
  const rest = new Map<string, Tensor>();
  for (const [k, t] of tensors) {
    const key = k.startsWith(WRAP) ? k.slice(WRAP.length) : k;
    const mm = /^(.*)\.(lora_A\.weight|lora_B\.weight|ia3_l|lora_embedding_A|lora_embedding_B|lora_magnitude_vector)$/.exec(key);
    if (!mm) {
      rest.set(key, t);
      continue;
    }
    const lin = linearOf(family, mm[1]);
    if (!lin || mm[2].startsWith('lora_embedding') || mm[2] === 'lora_magnitude_vector') {
      unsupported(f, 'target_modules', c.target_modules, `'${mm[1]}' (${mm[2]}) is not an encoder Linear modhub can target (query, key, value, attn_output, ffn_in, ffn_out)`);
    }
    found.set(`${lin.layer}.${lin.target}.${mm[2]}`, { ...lin, part: mm[2], t });
  }
  if (found.size === 0) throw new StoreError('INVALID_WEIGHTS', `${file} has no ${type === 'LORA' ? 'lora_A / lora_B' : 'ia3_l'} tensors`);
  const layers = new Set([...found.values()].map((x) => x.layer));
  const present = new Set([...found.values()].map((x) => x.target));
  const targets = LINEAR_TARGETS.filter((t) => present.has(t)); // modhub's order, not the file's
  const out = new Map<string, Tensor>();
  let kind: 'lora' | 'ia3';
  let config: Record<string, unknown>;
  const get = (l: number, t: LinearTarget, part: string): Tensor => {
    const x = found.get(`${l}.${t}.${part}`);
    if (!x) throw new StoreError('INVALID_WEIGHTS', `${file}: layer ${l} has ${t} adapted in other layers but not here (${part} missing); modhub modules adapt the same targets in every covered layer`);
    return floatAt(new Map([['t', x.t]]), 't', file);
  };
  if (type === 'LORA') {
    const r = Number(c.r);
    if (!Number.isInteger(r) || r < 1) unsupported(f, 'r', c.r, 'r must be a positive integer');
    let alpha = Number(c.lora_alpha ?? r);
    if (c.use_rslora === true) alpha = alpha * Math.sqrt(r); // rsLoRA scales by alpha / sqrt(r) = (alpha·sqrt(r)) / r
    for (const l of layers) {
      for (const t of targets) {
        out.set(LORA.A(l, t), get(l, t, 'lora_A.weight'));
        out.set(LORA.B(l, t), get(l, t, 'lora_B.weight'));
      }
    }
    kind = 'lora';
    config = { r, lora_alpha: alpha, target_modules: targets, leave_out: leaveOutOf(base.num_layers, layers) };
  } else {
    for (const l of layers) {
      for (const t of targets) {
        const v = get(l, t, 'ia3_l');
        const side = v.shape[0] === 1 && v.shape[1] !== 1 ? 'input' : 'output';
        if (side !== ia3Scales(t)) {
          unsupported(f, 'feedforward_modules', c.feedforward_modules, `'${linearPath(family, l, t)}' is scaled at its ${side}; modhub's ${t} IA³ target scales the ${ia3Scales(t)}`);
        }
        out.set(IA3.l(l, t), v);
      }
    }
    kind = 'ia3';
    config = { target_modules: targets, leave_out: leaveOutOf(base.num_layers, layers) };
  }
  const head = importHead(rest, c, family, base, file);
  return {
    kind,
    config,
    tensors: new Map([...out, ...(head?.tensors ?? [])]),
    head: head?.head ?? null,
    labels: head?.labels ?? [],
    task: head?.task ?? 'adapter',
    description: `PEFT ${type} adapter${typeof c.base_model_name_or_path === 'string' ? ` for ${c.base_model_name_or_path}` : ''}, imported`,
  };
}

// ---- export -------------------------------------------------------------------------------------------------

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** A regex (PEFT fullmatches a string target_modules) selecting exactly these Linear layers. */
function modulesRegex(family: Family, layers: number[], targets: LinearTarget[]): string {
  const paths = layers.flatMap((l) => targets.map((t) => escapeRe(linearPath(family, l, t))));
  return `(${paths.join('|')})`;
}

/** The head as modules_to_save tensors (null without a head), per family's task-model layout. */
function exportHead(m: Manifest, tensors: Map<string, Tensor>, family: Family): { modules: string[]; tensors: Map<string, Tensor>; taskType: string } | null {
  const h = m.head;
  if (!h) return null;
  const t = (n: string) => tensors.get(n)!;
  const out = new Map<string, Tensor>();
  if (h.type === 'token_classification') {
    out.set(`${WRAP}classifier.weight`, t(`${HEAD.outProj}.weight`));
    out.set(`${WRAP}classifier.bias`, t(`${HEAD.outProj}.bias`));
    return { modules: ['classifier'], tensors: out, taskType: 'TOKEN_CLS' };
  }
  if (h.type === 'classification' && h.layers === 2 && h.activation === 'tanh' && family !== 'distilbert') {
    if (family === 'bert') {
      out.set(`${WRAP}bert.pooler.dense.weight`, t(`${HEAD.clsDense}.weight`));
      out.set(`${WRAP}bert.pooler.dense.bias`, t(`${HEAD.clsDense}.bias`));
      out.set(`${WRAP}classifier.weight`, t(`${HEAD.outProj}.weight`));
      out.set(`${WRAP}classifier.bias`, t(`${HEAD.outProj}.bias`));
      return { modules: ['classifier', 'pooler'], tensors: out, taskType: 'SEQ_CLS' };
    }
    for (const [to, from] of [
      ['dense', HEAD.clsDense],
      ['out_proj', HEAD.outProj],
    ]) {
      out.set(`${WRAP}classifier.${to}.weight`, t(`${from}.weight`));
      out.set(`${WRAP}classifier.${to}.bias`, t(`${from}.bias`));
    }
    return { modules: ['classifier'], tensors: out, taskType: 'SEQ_CLS' };
  }
  throw new StoreError('INVALID_ARGUMENT', `${m.id}: its ${h.type} head has no ${family} task-model equivalent for PEFT's modules_to_save (BERT / RoBERTa / XLM-R 2-layer tanh classification and token classification do)`);
}

/** A modhub LoRA / IA³ module → the files `peft.PeftModel.from_pretrained` reads. */
export function exportPeft(m: Manifest, tensors: Map<string, Tensor>): Map<string, Buffer> {
  if (m.kind !== 'lora' && m.kind !== 'ia3') throw new StoreError('INVALID_ARGUMENT', `${m.id}: kind '${m.kind}' has no PEFT form (lora and ia3 do)`);
  const family = familyOf(m.base);
  const leave = new Set(m.config.leave_out ?? []);
  const layers = Array.from({ length: m.base.num_layers }, (_, l) => l).filter((l) => !leave.has(l));
  const targets = [...new Set(m.config.target_modules)];
  const head = exportHead(m, tensors, family);
  const w = new Map<string, Tensor>(head?.tensors ?? []);
  // The module's tensors by the descriptors' own names (kinds/lora.ts, kinds/ia3.ts), under PEFT's module paths.
  const take = (name: string): Tensor => {
    const t = tensors.get(name);
    if (!t) throw new StoreError('INVALID_WEIGHTS', `${m.id}: weights.safetensors lacks '${name}'`);
    return t;
  };
  for (const l of layers) {
    for (const t of targets) {
      const p = `${WRAP}${linearPath(family, l, t)}`;
      if (m.kind === 'lora') {
        w.set(`${p}.lora_A.weight`, take(LORA.A(l, t)));
        w.set(`${p}.lora_B.weight`, take(LORA.B(l, t)));
      } else {
        w.set(`${p}.ia3_l`, take(IA3.l(l, t)));
      }
    }
  }
  const common = {
    base_model_name_or_path: null,
    inference_mode: true,
    modules_to_save: head?.modules ?? null,
    target_modules: modulesRegex(family, layers, targets),
    task_type: head?.taskType ?? 'FEATURE_EXTRACTION',
    fan_in_fan_out: false,
    revision: null,
  };
  const config =
    m.kind === 'lora'
      ? { ...common, peft_type: 'LORA', r: m.config.r, lora_alpha: m.config.lora_alpha ?? m.config.r, lora_dropout: 0.0, bias: 'none', init_lora_weights: true, use_rslora: false, use_dora: false, rank_pattern: {}, alpha_pattern: {}, layers_to_transform: null, layers_pattern: null }
      : { ...common, peft_type: 'IA3', feedforward_modules: targets.includes('ffn_out') ? modulesRegex(family, layers, ['ffn_out']) : [], init_ia3_weights: true };
  return new Map<string, Buffer>([
    [PEFT_CONFIG, Buffer.from(JSON.stringify(config, null, 2) + '\n', 'utf8')],
    ['adapter_model.safetensors', serializeSafetensors(w, { format: 'pt' })],
  ]);
}
