/**
 * `modhub infer`: runs texts through a modhub server with a composition of hub modules, via the client SDK.
 * Texts come as arguments, from a file (`--file texts.txt`, one per line) or from stdin (`-`, or `--file -`); a
 * line `text<TAB>pair` carries a second segment, as does `--pair` (once per text, in order — it takes one value
 * each time, so it never swallows the texts after it).
 * Example: `modhub infer --compose '{"stack": ["lang/de", "task/topic"]}' "Der Hund schläft"`;
 *          `cat texts.txt | modhub infer --compose task/topic - --json`.
 */
import * as fs from 'fs';
import { Option, type Command } from 'commander';
import { INFER_LIMITS, ModhubError, type Composition } from '../../client-sdk/node';
import { usage } from './errors';
import { clientOf, print, withHubOptions, type HubOpts } from './hub-options';

interface InferFlags extends HubOpts {
  compose?: string;
  pair: string[];
  file?: string;
  task: 'auto' | 'embedding' | 'fill_mask';
  topK?: string;
  maxLength?: string;
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

/** Non-empty lines of `text` as inputs; a tab splits text and pair. */
function linesOf(text: string, where: string): { text: string; text_pair?: string }[] {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  if (lines.length === 0) throw usage(`${where} has no texts (one per line; text<TAB>pair for pairs)`);
  return lines.map((l) => {
    const tab = l.indexOf('\t');
    return tab < 0 ? { text: l } : { text: l.slice(0, tab), text_pair: l.slice(tab + 1) };
  });
}

async function readStdin(): Promise<string> {
  let s = '';
  for await (const chunk of process.stdin) s += String(chunk);
  return s;
}

/** The request fields the server names in its errors, as the flags the user typed. */
const FLAG_OF: Record<string, string> = { max_length: '--max-length', top_k: '--top-k', composition: '--compose', text_pair: '--pair' };

/** A server error about a request field, re-worded to name the flag that set it. */
function inFlagTerms(e: unknown): unknown {
  if (!(e instanceof ModhubError)) return e;
  const message = e.message.replace(/'(max_length|top_k|composition|text_pair)'/g, (_m, k: string) => `'${FLAG_OF[k]}'`);
  return message === e.message ? e : new ModhubError(e.status, e.code, message, e.requestId);
}

function whole(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw usage(`'--${name}' must be a whole number from ${min} to ${max}, got '${v}'`);
  return Number(v);
}

export function registerInferCommand(program: Command): void {
  withHubOptions(
    program
      .command('infer')
      .description('run texts through a modhub server with a composition of modules')
      .argument('[texts...]', "input texts; '-' reads them from stdin, one per line")
      .option('--file <path>', "read the texts from a file, one per line (text<TAB>pair for pairs); '-' = stdin")
      .option('--compose <composition>', 'a module ref or a JSON composition, e.g. \'{"stack": ["lang/de", "task/topic"]}\' (default: the bare base)')
      .option('--pair <text>', 'second segment of the next text (repeat once per text, in order)', (v: string, prev: string[]) => [...prev, v], [] as string[])
      .addOption(new Option('--task <task>', 'what to return').choices(['auto', 'embedding', 'fill_mask']).default('auto'))
      .option('--top-k <n>', 'labels / tokens per prediction')
      .option('--max-length <n>', "longest tokenised input (at most the base's)")
      .option('--json', 'print the raw JSON response'),
  ).action(async (args: string[], f: InferFlags, cmd: Command) => {
    if (f.file !== undefined && args.length > 0) throw usage(`give the texts as arguments or with '--file', not both`);
    let inputs: { text: string; text_pair?: string }[];
    if (f.file !== undefined) inputs = linesOf(f.file === '-' ? await readStdin() : fs.readFileSync(f.file, 'utf8'), f.file === '-' ? 'stdin' : `'--file' ${f.file}`);
    else if (args.length === 1 && args[0] === '-') inputs = linesOf(await readStdin(), 'stdin');
    else if (args.length > 0) inputs = args.map((text) => ({ text }));
    else throw usage(`give texts as arguments, '-' to read them from stdin, or '--file <path>'`);
    if (f.pair.length > 0) {
      if (f.pair.length !== inputs.length) throw usage(`'--pair' needs one value per text (${inputs.length}), got ${f.pair.length}`);
      if (inputs.some((x) => x.text_pair !== undefined)) throw usage(`the texts already have pairs (tab-separated lines): leave out '--pair'`);
      inputs = inputs.map((x, i) => ({ ...x, text_pair: f.pair[i] }));
    }
    if (inputs.length > INFER_LIMITS.maxInputs) throw usage(`at most ${INFER_LIMITS.maxInputs} texts per call, got ${inputs.length}: split the input`);
    const topK = whole('top-k', f.topK, 1, INFER_LIMITS.maxTopK);
    const maxLength = whole('max-length', f.maxLength, 2, 1e6);
    const res = await clientOf(f, cmd)
      .infer({
        inputs,
        composition: parseCompose(f.compose),
        task: f.task,
        ...(topK !== undefined ? { top_k: topK } : {}),
        ...(maxLength !== undefined ? { max_length: maxLength } : {}),
      })
      .catch((e: unknown) => {
        throw inFlagTerms(e);
      });
    print(f, res, () =>
      res.results.flatMap((r, i) =>
        r.branches.map((p, b) => {
          const where = `${JSON.stringify(inputs[i].text)}${r.branches.length > 1 ? ` [branch ${b}: ${res.modules[b].join(' + ') || 'base'}]` : ''}`;
          if (p.type === 'classification') return `${where} -> ${p.label} (${p.score.toFixed(3)})`;
          if (p.type === 'token_classification') return `${where} -> ${p.tokens.map((t) => `${t.token}/${t.label}`).join(' ')}`;
          if (p.type === 'fill_mask') return `${where} -> ${p.masks.map((m) => m.candidates.map((c) => `${c.token} (${c.score.toFixed(3)})`).join(', ')).join(' | ')}`;
          return `${where} -> embedding[${p.embedding.length}] ${p.embedding.slice(0, 4).map((x) => x.toFixed(4)).join(' ')} ...`;
        }),
      ),
    );
  });
}
