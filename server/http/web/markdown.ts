/**
 * Model cards to HTML: the README.md front matter is split off (modules-store's parseCard), the Markdown body is
 * rendered with `marked` (GitHub-flavoured) and the result is sanitised with `sanitize-html` against a small
 * allowlist, because cards are user content. Raw HTML in a card survives only as far as the allowlist permits:
 * no scripts, no event handlers, no styles, no iframes, links only to http(s)/mailto and relative paths.
 * Example: `const { data, html } = renderCard(readmeText); html`<article>${html}</article>``
 */
import { Marked, type Tokens } from 'marked';
import sanitizeHtml from 'sanitize-html';
import { parseCard } from '../../../modules-store';
import { SafeHtml } from './html';

// One parser instance with our options, so a global marked.setOptions elsewhere cannot change card rendering.
const marked = new Marked({ gfm: true, breaks: false, async: false });
// GFM turns bare `name@host` into mailto links, and module refs (`lang/de@1.0.0`) look like that: keep them text.
// Explicit autolinks (`<someone@example.org>`) still link.
const BARE_EMAIL = /^[A-Za-z0-9._+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*/;
marked.use({
  tokenizer: {
    url(src) {
      const m = BARE_EMAIL.exec(src);
      // marked types this hook as returning a link; a text token is rendered as (escaped) text all the same
      if (m) return { type: 'text', raw: m[0], text: m[0] } as unknown as Tokens.Link;
      return false;
    },
  },
});

const SANITIZE: sanitizeHtml.IOptions = {
  allowedTags: [
    'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'p', 'a', 'ul', 'ol', 'li', 'blockquote', 'code', 'pre', 'em', 'strong', 'del', 's',
    'table', 'thead', 'tbody', 'tr', 'th', 'td', 'hr', 'br', 'img', 'sup', 'sub', 'kbd', 'details', 'summary', 'dl', 'dt', 'dd',
  ],
  allowedAttributes: {
    a: ['href', 'title'],
    img: ['src', 'alt', 'title', 'width', 'height'],
    th: ['align'],
    td: ['align'],
    code: ['class'],
    ol: ['start'],
  },
  allowedClasses: { code: [/^language-[\w-]+$/] as unknown as string[] },
  allowedSchemes: ['http', 'https', 'mailto'],
  allowedSchemesByTag: { img: ['http', 'https'] },
  allowProtocolRelative: false,
  disallowedTagsMode: 'discard',
  transformTags: {
    // Links in user content must not pass our origin as referrer nor gain rank from the hub.
    a: sanitizeHtml.simpleTransform('a', { rel: 'nofollow noopener noreferrer' }),
  },
};
// rel is added by the transform; let it through the attribute filter.
(SANITIZE.allowedAttributes as Record<string, string[]>).a.push('rel');

export interface RenderedCard {
  /** The YAML front matter (empty when the card has none or it does not parse). */
  data: Record<string, unknown>;
  html: SafeHtml;
}

/** Sanitises HTML produced from user Markdown (exported for tests). */
export function sanitizeCardHtml(dirty: string): string {
  return sanitizeHtml(dirty, SANITIZE);
}

/** Renders a README.md model card (front matter + Markdown) to sanitised HTML. */
export function renderCard(text: string): RenderedCard {
  let data: Record<string, unknown> = {};
  let body = text;
  try {
    ({ data, body } = parseCard(text));
  } catch {
    // A card that was stored has passed validation; if its front matter still fails, show it as text.
  }
  const dirty = marked.parse(body) as string;
  return { data, html: new SafeHtml(sanitizeCardHtml(dirty)) };
}
