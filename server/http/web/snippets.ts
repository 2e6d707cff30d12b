/**
 * The copyable snippets on a module page: curl (download + inference), the `modhub` CLI, the TypeScript SDK, and
 * Python — `huggingface_hub` against the hub's HF-compatible paths for every module, plus a PEFT loader for LoRA
 * modules on BERT / RoBERTa / XLM-R bases (tensor names mapped per docs/module-format.md). Plain text: the page
 * escapes them.
 * Example: `snippetsFor({ origin: 'http://localhost:8080', manifest, version: '1.0.0', composition: 'lang/de' })`.
 */
import type { Manifest } from '../../../modules-store';

export interface Snippet {
  id: string;
  title: string;
  language: 'sh' | 'ts' | 'python';
  code: string;
}

export interface SnippetInput {
  /** The hub's origin as the browser sees it, e.g. http://localhost:8080. */
  origin: string;
  manifest: Manifest;
  version: string;
  /** A composition that makes sense for this module (what "Try it" starts with). */
  composition: unknown;
  /** A sample input text. */
  sample: string;
}

const PEFT_TARGET: Record<string, string> = {
  query: 'attention.self.query',
  key: 'attention.self.key',
  value: 'attention.self.value',
  attn_output: 'attention.output.dense',
  ffn_in: 'intermediate.dense',
  ffn_out: 'output.dense',
};

const PEFT_PREFIX: Record<string, string> = { bert: 'bert', roberta: 'roberta', 'xlm-roberta': 'roberta' };

/** A shell single-quoted string. */
function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The snippets for one module version. */
export function snippetsFor(o: SnippetInput): Snippet[] {
  const m = o.manifest;
  const ref = `${m.id}@${o.version}`;
  const dir = m.id.replace('/', '-');
  const body = JSON.stringify({ inputs: [{ text: o.sample }], composition: o.composition });
  const out: Snippet[] = [
    {
      id: 'curl',
      title: 'curl',
      language: 'sh',
      code:
        `# download the package (tar of module.json, weights.safetensors, README.md)\n` +
        `curl -fLO ${shq(`${o.origin}/v1/modules/${m.id}/versions/${o.version}/archive`)}\n\n` +
        `# run it on the server's base\n` +
        `curl -s ${shq(`${o.origin}/v1/infer`)} -H 'Content-Type: application/json' \\\n  -d ${shq(body)}`,
    },
    {
      id: 'cli',
      title: 'CLI',
      language: 'sh',
      code:
        `export MODHUB_HUB=${shq(o.origin)}\n` +
        `modhub pull ${ref} --out ./${dir}\n` +
        `modhub infer ${shq(o.sample)} --compose ${shq(typeof o.composition === 'string' ? o.composition : JSON.stringify(o.composition))}`,
    },
    {
      id: 'ts',
      title: 'TypeScript SDK',
      language: 'ts',
      code:
        `// npm install @modhub/client (from a modhub checkout: npm run pack:sdk)\n` +
        `import { NodeModhubClient } from '@modhub/client/node';\n\n` +
        `const hub = new NodeModhubClient({ baseUrl: ${JSON.stringify(o.origin)}, token: process.env.MODHUB_TOKEN });\n` +
        `await hub.pull(${JSON.stringify(ref)}, ${JSON.stringify(`./${dir}`)});\n` +
        `const res = await hub.infer({ inputs: [{ text: ${JSON.stringify(o.sample)} }], composition: ${JSON.stringify(o.composition)} });\n` +
        `console.log(res.results[0].branches[0]);`,
    },
    {
      id: 'python',
      title: 'Python (huggingface_hub)',
      language: 'python',
      code:
        `from huggingface_hub import snapshot_download\n\n` +
        `# modhub serves the Hugging Face Hub's read paths, so huggingface_hub downloads from it as is\n` +
        `path = snapshot_download(${JSON.stringify(m.id)}, revision=${JSON.stringify(o.version)}, endpoint=${JSON.stringify(o.origin)})\n` +
        `print(path)  # module.json, weights.safetensors, README.md`,
    },
  ];
  const prefix = PEFT_PREFIX[m.base.family];
  if (m.kind === 'lora' && prefix) {
    const cfg = m.config as { r: number; lora_alpha: number; target_modules: string[] };
    const targets = cfg.target_modules.map((t) => PEFT_TARGET[t]).filter(Boolean);
    out.push({
      id: 'peft',
      title: 'Python (PEFT)',
      language: 'python',
      code:
        `# the LoRA matrices under PEFT's names (the module's head.* tensors are not part of PEFT's state)\n` +
        `import re\nfrom huggingface_hub import snapshot_download\nfrom peft import LoraConfig, get_peft_model, set_peft_model_state_dict\nfrom safetensors.torch import load_file\nfrom transformers import AutoModelForMaskedLM\n\n` +
        `# the base checkpoint with fingerprint ${m.base.fingerprint}\n` +
        `base_model = AutoModelForMaskedLM.from_pretrained("path/to/base")\n` +
        `path = snapshot_download(${JSON.stringify(m.id)}, revision=${JSON.stringify(o.version)}, endpoint=${JSON.stringify(o.origin)})\n` +
        `sites = ${JSON.stringify(PEFT_TARGET)}\n` +
        `state = {}\n` +
        `for name, t in load_file(f"{path}/weights.safetensors").items():\n` +
        `    m = re.fullmatch(r"layers\\.(\\d+)\\.(\\w+)\\.lora_([AB])", name)\n` +
        `    if m:\n` +
        `        state[f"base_model.model.${prefix}.encoder.layer.{m[1]}.{sites[m[2]]}.lora_{m[3]}.weight"] = t\n` +
        `config = LoraConfig(r=${cfg.r}, lora_alpha=${cfg.lora_alpha}, target_modules=${JSON.stringify(targets)})\n` +
        `model = get_peft_model(base_model, config)\n` +
        `set_peft_model_state_dict(model, state)`,
    });
  }
  return out;
}
