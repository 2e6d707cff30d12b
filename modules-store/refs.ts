/**
 * Module names and references: name rules for namespaces, names and tags, and parsing of `ns/name`,
 * `ns/name@1.2.0`, `ns/name@tag`. Kept apart from manifest.ts so module kinds can check references without
 * importing the manifest schema that is built from them.
 * Example: `parseRef('lang/de@1.0.0')` → `{ namespace: 'lang', name: 'de', kind: 'version', version: '1.0.0' }`.
 */
import semver from 'semver';
import { StoreError } from './errors';

/** One path segment of a module id (namespace or name), a tag name: lowercase, no leading punctuation. */
export const NAME_RE = /^[a-z0-9][a-z0-9._-]*$/;
export const NAME_MAX = 64;

/** True when `s` is a valid namespace, name or tag. */
export function isValidName(s: string): boolean {
  return s.length > 0 && s.length <= NAME_MAX && NAME_RE.test(s);
}

/** Throws INVALID_NAME naming `what` when `s` is not a valid name. */
export function assertName(s: string, what: string): void {
  if (!isValidName(s)) {
    throw new StoreError('INVALID_NAME', `${what} '${s}' is invalid: use 1-${NAME_MAX} characters from [a-z0-9._-], starting with a letter or digit`);
  }
}

/** Splits `ns/name` into its parts. */
export function splitId(id: string): { namespace: string; name: string } {
  const parts = id.split('/');
  if (parts.length !== 2) throw new StoreError('INVALID_REF', `module id '${id}' must be namespace/name`);
  assertName(parts[0], 'namespace');
  assertName(parts[1], 'name');
  return { namespace: parts[0], name: parts[1] };
}

/** A parsed module reference: an exact version, or a tag (`latest` when the ref names none). */
export type ModuleRef =
  | { namespace: string; name: string; kind: 'version'; version: string }
  | { namespace: string; name: string; kind: 'tag'; tag: string };

/** Parses `ns/name`, `ns/name@1.2.0` or `ns/name@tag`. */
export function parseRef(ref: string): ModuleRef {
  if (typeof ref !== 'string' || ref.length === 0 || ref.length > 256) {
    throw new StoreError('INVALID_REF', `module reference '${String(ref)}' must be ns/name, ns/name@version or ns/name@tag`);
  }
  const at = ref.indexOf('@');
  const id = at < 0 ? ref : ref.slice(0, at);
  const rev = at < 0 ? '' : ref.slice(at + 1);
  let parts: { namespace: string; name: string };
  try {
    parts = splitId(id);
  } catch (e) {
    throw new StoreError('INVALID_REF', `module reference '${ref}' is invalid: ${(e as Error).message}`);
  }
  if (at < 0) return { ...parts, kind: 'tag', tag: 'latest' };
  if (semver.valid(rev) === rev) return { ...parts, kind: 'version', version: rev };
  if (!isValidName(rev)) {
    throw new StoreError('INVALID_REF', `module reference '${ref}': '${rev}' is neither a semver version nor a valid tag name`);
  }
  return { ...parts, kind: 'tag', tag: rev };
}

/** Validates a tag name: a valid name that is not itself a semver version (that would make refs ambiguous). */
export function assertTagName(tag: string): void {
  assertName(tag, 'tag');
  if (semver.valid(tag)) throw new StoreError('INVALID_NAME', `tag '${tag}' looks like a version; tags must not be semver versions`);
}
