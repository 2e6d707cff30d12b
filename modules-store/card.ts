/**
 * Model cards: `README.md` with YAML front matter using the HF Hub card fields (language, tags, license,
 * base_model, library_name, pipeline_tag, metrics, datasets). Generated from the manifest when a package
 * ships none; parsed so search and the HF-compatible API can expose `cardData`.
 * Example: `const { data, body } = parseCard(readme); const text = generateCard(manifest);`
 */
import YAML from 'yaml';
import { StoreError } from './errors';
import type { Manifest } from './manifest';
import { kindOf } from './kinds';

export interface Card {
  /** The YAML front matter (empty when the card has none). */
  data: Record<string, unknown>;
  /** The Markdown after the front matter. */
  body: string;
}

const FRONT = /^---\r?\n([\s\S]*?)\r?\n---[ \t]*(?:\r?\n|$)/;

/** Splits a model card into front matter and body; INVALID_PACKAGE when the YAML does not parse to a mapping. */
export function parseCard(text: string): Card {
  const m = FRONT.exec(text);
  if (!m) return { data: {}, body: text };
  let data: unknown;
  try {
    data = YAML.parse(m[1], { maxAliasCount: 50 });
  } catch (e) {
    throw new StoreError('INVALID_PACKAGE', `README.md front matter is not valid YAML: ${(e as Error).message}`);
  }
  if (data === null || data === undefined) data = {};
  if (typeof data !== 'object' || Array.isArray(data)) throw new StoreError('INVALID_PACKAGE', 'README.md front matter must be a YAML mapping');
  return { data: data as Record<string, unknown>, body: text.slice(m[0].length) };
}

const PIPELINE: Record<string, string> = {
  mlm: 'fill-mask',
  'masked_lm': 'fill-mask',
  ner: 'token-classification',
  pos: 'token-classification',
};

/** The HF card fields that follow from a manifest. */
export function cardDataFor(m: Manifest): Record<string, unknown> {
  const data: Record<string, unknown> = {};
  if (m.language) data.language = [m.language];
  if (m.license) data.license = m.license;
  data.library_name = 'modhub';
  data.tags = ['modhub', `modhub-${m.kind}`, m.task, ...kindOf(m.kind).cardTags];
  data.base_model = `${m.base.family} (${m.base.fingerprint})`;
  const head = m.head?.type;
  data.pipeline_tag =
    head === 'classification' ? 'text-classification' : head === 'token_classification' ? 'token-classification' : head === 'masked_lm' ? 'fill-mask' : (PIPELINE[m.task] ?? 'feature-extraction');
  if (m.metrics && Object.keys(m.metrics).length) data.metrics = Object.keys(m.metrics);
  return data;
}

/** Generates a README.md model card (front matter + a short description and usage) for a manifest. */
export function generateCard(m: Manifest): string {
  const front = YAML.stringify(cardDataFor(m)).trimEnd();
  const metrics = m.metrics && Object.keys(m.metrics).length
    ? `\n## Metrics\n\n| metric | value |\n|---|---|\n${Object.entries(m.metrics).map(([k, v]) => `| ${k} | ${v} |`).join('\n')}\n`
    : '';
  const labels = m.labels.length ? `\n## Labels\n\n${m.labels.map((l, i) => `${i}. ${l}`).join('\n')}\n` : '';
  return `---\n${front}\n---\n\n# ${m.id}@${m.version}\n\n${m.description || `A ${m.kind} module for ${m.task}.`}\n\n` +
    `- kind: \`${m.kind}\`\n- task: \`${m.task}\`\n${m.language ? `- language: \`${m.language}\`\n` : ''}` +
    `- base: ${m.base.family}, hidden ${m.base.hidden_size}, ${m.base.num_layers} layers (\`${m.base.fingerprint}\`)\n` +
    `${metrics}${labels}\n## Use\n\n\`\`\`sh\nmodhub pull ${m.id}@${m.version} --out ./${m.id.replace('/', '-')}\n\`\`\`\n`;
}
