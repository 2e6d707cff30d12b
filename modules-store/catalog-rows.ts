/**
 * What the SQL catalogs (catalog-sqlite.ts, catalog-pg.ts) share: the `modules` table's row as the database returns
 * it, its mapping to the Catalog interface's ModuleRow, and LIKE escaping for free-text search.
 */
import type { ModuleRow } from './catalog';

/** A `modules` row as both databases return it (snake_case columns). */
export interface ModuleDb {
  id: number;
  namespace: string;
  name: string;
  kind: string;
  task: string;
  language: string | null;
  base_fingerprint: string;
  description: string;
  downloads: number;
  created_at: string;
  updated_at: string;
}

export function moduleRow(r: ModuleDb): ModuleRow {
  return {
    namespace: r.namespace,
    name: r.name,
    kind: r.kind,
    task: r.task,
    language: r.language,
    baseFingerprint: r.base_fingerprint,
    description: r.description,
    downloads: r.downloads,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

/** Escapes LIKE's wildcards (`%`, `_`) and the escape character itself, for `LIKE ? ESCAPE '\'`. */
export function likeEscape(s: string): string {
  return s.replace(/[\\%_]/g, (c) => `\\${c}`);
}
