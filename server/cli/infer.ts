/**
 * `modhub infer`: runs texts through a modhub server with a composition of hub modules, via the client SDK.
 * Example: `modhub infer --compose '{"stack": ["lang/de", "task/topic"]}' "Der Hund schläft"`.
 */
import { Option, type Command } from 'commander';
import { ModhubClient, type Composition } from '../../client-sdk';
import { usage } from './errors';

interface InferFlags {
  hub: string;
  token?: string;
  compose?: string;
  pair?: string[];
  task: 'auto' | 'embedding' | 'fill_mask';
  topK?: string;
  json?: boolean;
}

/** A composition given as JSON, or as a plain module ref. */
function parseCompose(s: string | undefined): Composition | null {
  if (!s) return null;
  const t = s.trim();
  if (!t.startsWith('{') && !t.startsWith('"')) return t;
  try {
    return JSON.parse(t) as Composition;
  } catch (e) {
    throw usage(`'--compose' is not valid JSON: ${(e as Error).message}`);
  }
}

export function registerInferCommand(program: Command): void {
  program
    .command('infer')
    .description('run texts through a modhub server with a composition of modules')
    .argument('<texts...>', 'input texts')
    .addOption(new Option('--hub <url>', 'server URL').env('MODHUB_HUB').default('http://127.0.0.1:8080'))
    .addOption(new Option('--token <token>', 'bearer token').env('MODHUB_TOKEN'))
    .option('--compose <composition>', 'a module ref or a JSON composition, e.g. \'{"stack": ["lang/de", "task/topic"]}\' (default: the bare base)')
    .option('--pair <texts...>', 'second segments (one per text)')
    .addOption(new Option('--task <task>', 'what to return').choices(['auto', 'embedding', 'fill_mask']).default('auto'))
    .option('--top-k <n>', 'labels / tokens per prediction')
    .option('--json', 'print the raw JSON response')
    .action(async (texts: string[], f: InferFlags) => {
      if (f.pair && f.pair.length !== texts.length) throw usage(`'--pair' needs one text per input (${texts.length}), got ${f.pair.length}`);
      const client = new ModhubClient({ baseUrl: f.hub, token: f.token });
      const res = await client.infer({
        inputs: texts.map((text, i) => ({ text, ...(f.pair ? { text_pair: f.pair[i] } : {}) })),
        composition: parseCompose(f.compose),
        task: f.task,
        ...(f.topK ? { top_k: Number(f.topK) } : {}),
      });
      if (f.json) {
        process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
        return;
      }
      res.results.forEach((r, i) => {
        r.branches.forEach((p, b) => {
          const where = `${JSON.stringify(texts[i])}${r.branches.length > 1 ? ` [branch ${b}: ${res.modules[b].join(' + ') || 'base'}]` : ''}`;
          if (p.type === 'classification') process.stdout.write(`${where} -> ${p.label} (${p.score.toFixed(3)})\n`);
          else if (p.type === 'token_classification') process.stdout.write(`${where} -> ${p.tokens.map((t) => `${t.token}/${t.label}`).join(' ')}\n`);
          else if (p.type === 'fill_mask') process.stdout.write(`${where} -> ${p.masks.map((m) => m.candidates.map((c) => `${c.token} (${c.score.toFixed(3)})`).join(', ')).join(' | ')}\n`);
          else process.stdout.write(`${where} -> embedding[${p.embedding.length}] ${p.embedding.slice(0, 4).map((x) => x.toFixed(4)).join(' ')} ...\n`);
        });
      });
    });
}
