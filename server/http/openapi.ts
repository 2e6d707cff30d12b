/**
 * The OpenAPI 3.1 document served at /openapi.json, generated — no schema text is written by hand. Each router
 * describes its routes as `RouteDoc`s next to its handlers, naming the zod schemas (client-sdk/wire.ts) that
 * validate its requests and type its answers; `buildOpenApi` turns them into paths and renders the schemas with
 * zod's own `z.toJSONSchema` (JSON Schema 2020-12, which OpenAPI 3.1 uses) as `components.schemas`.
 * Example: `res.json(buildOpenApi([{ prefix: '/v1', docs: hubRouteDocs }]))`.
 */
import type { Router } from 'express';
import { z } from 'zod';
import { ERROR_CODES, type ErrorCode } from '../../modules-store';
import { WIRE_SCHEMAS } from '../../client-sdk/wire';

export type HttpMethod = 'get' | 'head' | 'post' | 'put' | 'delete';
/** Who may call a route: anyone, readers (anonymous when the hub allows it), or a token with that scope. */
export type Access = 'public' | 'read' | 'write' | 'admin';

export interface ResponseDoc {
  description: string;
  /** A named schema of the JSON answer (omit for an empty body). */
  schema?: z.ZodType;
  /** The answer is bytes of this media type (downloads). */
  bytes?: string;
  /** Response headers worth knowing (name → description). */
  headers?: Record<string, string>;
}

export interface RouteDoc {
  method: HttpMethod;
  /** OpenAPI path relative to where the router is mounted, `{param}` style. */
  path: string;
  summary: string;
  description?: string;
  access: Access;
  /** A named object schema whose fields are the query parameters. */
  query?: z.ZodType;
  /** A named schema of the request body, per media type. */
  body?: Record<string, z.ZodType>;
  /** Request headers the route reads (name → description). */
  headers?: Record<string, string>;
  responses: Record<string, ResponseDoc>;
  /** Codes this route may answer with beyond the ones every route may (UNAUTHORIZED, FORBIDDEN, INTERNAL, ...). */
  errors?: ErrorCode[];
  /** Schema of error bodies (default: Error; the HF paths use HF's shape). */
  errorSchema?: z.ZodType;
}

/** A router's routes and any schemas of its own (beyond client-sdk/wire.ts), for the generated document. */
export interface RouterDocs {
  routes: RouteDoc[];
  schemas?: Record<string, z.ZodType>;
}

/** A router that says what it serves; createApp documents it wherever it mounts it. */
export type DocumentedRouter = Router & { docs: RouterDocs };

export function documented(router: Router, docs: RouterDocs): DocumentedRouter {
  return Object.assign(router, { docs });
}

const PATH_PARAMS: Record<string, string> = {
  ns: 'namespace, [a-z0-9][a-z0-9._-]*',
  name: 'module name, [a-z0-9][a-z0-9._-]*',
  rev: 'exact version (1.2.0) or tag (latest, stable, ...)',
  file: 'file name in the package (module.json, weights.safetensors, README.md)',
  tag: 'tag name',
  id: 'token id',
  path: 'folder path inside the repository',
};

type Json = Record<string, unknown>;

/** Renders a set of named zod schemas as OpenAPI components (refs between them stay refs). */
function components(named: Record<string, z.ZodType>, io: 'input' | 'output'): Record<string, Json> {
  const reg = z.registry<{ id: string }>();
  for (const [id, s] of Object.entries(named)) reg.add(s, { id });
  const out = z.toJSONSchema(reg, { io, target: 'draft-2020-12', uri: (id) => `#/components/schemas/${id}` }).schemas;
  const result: Record<string, Json> = {};
  for (const [id, s] of Object.entries(out)) {
    const { $schema: _s, $id: _i, ...rest } = s as Json;
    result[id] = rest;
  }
  return result;
}

/** Builds the document from the routers mounted at each prefix. */
export function buildOpenApi(mounted: Array<{ prefix: string; docs: RouterDocs }>): Json {
  // Requests are rendered as clients send them (defaults optional), answers as the server sends them.
  const requestSchemas: Record<string, z.ZodType> = { ...WIRE_SCHEMAS.requests, ModuleKind: WIRE_SCHEMAS.responses.ModuleKind, Scope: WIRE_SCHEMAS.responses.Scope };
  const responseSchemas: Record<string, z.ZodType> = { ...WIRE_SCHEMAS.responses };
  const nameOf = new Map<z.ZodType, string>();
  for (const [id, s] of [...Object.entries(requestSchemas), ...Object.entries(responseSchemas)]) nameOf.set(s, id);
  for (const m of mounted) {
    for (const [id, s] of Object.entries(m.docs.schemas ?? {})) {
      if (nameOf.has(s) || id in requestSchemas || id in responseSchemas) throw new Error(`openapi: schema '${id}' is named twice`);
      nameOf.set(s, id);
      // A router's own schemas are bodies or answers; which one is known from where the routes use them.
      const asRequest = m.docs.routes.some((r) => r.query === s || Object.values(r.body ?? {}).includes(s));
      (asRequest ? requestSchemas : responseSchemas)[id] = s;
    }
  }
  const ref = (s: z.ZodType, where: string): Json => {
    const id = nameOf.get(s);
    if (!id) throw new Error(`openapi: ${where} uses a schema that is not named in client-sdk/wire.ts or the router's docs.schemas`);
    return { $ref: `#/components/schemas/${id}` };
  };

  const paths: Record<string, Record<string, Json>> = {};
  for (const { prefix, docs } of mounted) {
    for (const r of docs.routes) {
      const full = `${prefix}${r.path}`;
      const where = `${r.method.toUpperCase()} ${full}`;
      const parameters: Json[] = [];
      for (const [, p] of full.matchAll(/\{(\w+)\}/g)) {
        parameters.push({ name: p, in: 'path', required: true, description: PATH_PARAMS[p] ?? p, schema: { type: 'string' } });
      }
      if (r.query) {
        const q = components({ Q: r.query }, 'input').Q as { properties?: Record<string, Json>; required?: string[] };
        for (const [name, schema] of Object.entries(q.properties ?? {})) {
          const { description, ...rest } = schema;
          parameters.push({ name, in: 'query', required: q.required?.includes(name) ?? false, ...(description ? { description } : {}), schema: rest });
        }
      }
      for (const [name, description] of Object.entries(r.headers ?? {})) parameters.push({ name, in: 'header', required: false, description, schema: { type: 'string' } });
      const responses: Record<string, Json> = {};
      for (const [status, d] of Object.entries(r.responses)) {
        const headers = d.headers ? Object.fromEntries(Object.entries(d.headers).map(([h, desc]) => [h, { description: desc, schema: { type: 'string' } }])) : undefined;
        const content = d.schema
          ? { 'application/json': { schema: ref(d.schema, where) } }
          : d.bytes
            ? { [d.bytes]: { schema: { type: 'string', format: 'binary' } } }
            : undefined;
        responses[status] = { description: d.description, ...(headers ? { headers } : {}), ...(content ? { content } : {}) };
      }
      // Error answers, grouped by the status the code table gives them.
      const codes: ErrorCode[] = [...(r.errors ?? [])];
      if (r.access !== 'public') codes.push('UNAUTHORIZED');
      if (r.access === 'write' || r.access === 'admin') codes.push('FORBIDDEN');
      codes.push('INTERNAL');
      const byStatus = new Map<number, ErrorCode[]>();
      for (const c of new Set(codes)) byStatus.set(ERROR_CODES[c].status, [...(byStatus.get(ERROR_CODES[c].status) ?? []), c]);
      for (const [status, cs] of [...byStatus].sort((a, b) => a[0] - b[0])) {
        responses[String(status)] = { description: cs.join(', '), content: { 'application/json': { schema: ref(r.errorSchema ?? WIRE_SCHEMAS.responses.Error, where) } } };
      }
      const op: Json = {
        summary: r.summary,
        ...(r.description ? { description: r.description } : {}),
        operationId: `${r.method}${full.replace(/\{(\w+)\}/g, (_m, p: string) => `By_${p}`).replace(/[^A-Za-z0-9_]+/g, '_')}`,
        security: r.access === 'public' ? [] : r.access === 'read' ? [{}, { bearer: [] }] : [{ bearer: [] }],
        ...(parameters.length ? { parameters } : {}),
        ...(r.body ? { requestBody: { required: true, content: Object.fromEntries(Object.entries(r.body).map(([type, s]) => [type, { schema: ref(s, where) }])) } } : {}),
        responses,
      };
      paths[full] ??= {};
      if (paths[full][r.method]) throw new Error(`openapi: ${where} is documented twice`);
      paths[full][r.method] = op;
    }
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'modhub',
      version: '1',
      description:
        'Hub for modular fine-tuning modules (bottleneck adapters, LoRA, sparse diffs, fusion): upload, search, download, and inference ' +
        'over a served base. JSON bodies are snake_case. Errors are {"error": {"code", "message", "request_id"}} with the code also in ' +
        'X-Modhub-Error-Code; every answer carries X-Request-Id. Auth: `Authorization: Bearer <token>`, scopes read < write < admin.',
    },
    servers: [{ url: '/' }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: { ...components(responseSchemas, 'output'), ...components(requestSchemas, 'input') },
    },
    paths,
  };
}
