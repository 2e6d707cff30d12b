/**
 * The OpenAPI 3.1 document served at /openapi.json, written by hand. Exported as a mutable object so other
 * parts of the server (the engine's inference routes) can add their paths and schemas before the app starts:
 * `openapi.paths['/v1/infer'] = {...}` or `addOpenApiPaths({...})`.
 */

type Json = Record<string, unknown>;

const err = (description: string): Json => ({ description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } });
const ok = (description: string, schema: Json): Json => ({ description, content: { 'application/json': { schema } } });
const ref = (name: string): Json => ({ $ref: `#/components/schemas/${name}` });
const pathParam = (name: string, description: string): Json => ({ name, in: 'path', required: true, description, schema: { type: 'string' } });
const NS = pathParam('ns', 'namespace, [a-z0-9][a-z0-9._-]*');
const NAME = pathParam('name', 'module name, [a-z0-9][a-z0-9._-]*');
const REV = pathParam('rev', 'exact version (1.2.0) or tag (latest, stable, ...)');
const BYTES = (description: string): Json => ({
  description,
  headers: {
    ETag: { schema: { type: 'string' }, description: 'strong ETag (sha256 of the file, or of the version for archives)' },
    'Content-Length': { schema: { type: 'integer' } },
    'Accept-Ranges': { schema: { type: 'string', const: 'bytes' } },
  },
  content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } },
});
const RANGE_HEADERS: Json[] = [
  { name: 'Range', in: 'header', required: false, schema: { type: 'string', example: 'bytes=0-1023' }, description: 'a single byte range; 206 with Content-Range, 416 when outside' },
  { name: 'If-None-Match', in: 'header', required: false, schema: { type: 'string' }, description: '304 when it matches the ETag' },
];
const STD_ERRORS = { '400': err('bad input (code says what)'), '401': err('missing or invalid token'), '403': err('token lacks the scope or namespace') };

export const openapi = {
  openapi: '3.1.0',
  info: {
    title: 'modhub',
    version: '1',
    description:
      'Hub for modular fine-tuning modules (bottleneck adapters, LoRA, sparse diffs, fusion): upload, search, download. ' +
      'Errors are {"error": {"code", "message"}}. Auth: `Authorization: Bearer <token>` with scopes read < write < admin.',
  },
  servers: [{ url: '/' }],
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
    schemas: {
      Error: {
        type: 'object',
        required: ['error'],
        properties: { error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string', example: 'VERSION_EXISTS' }, message: { type: 'string' } } } },
      },
      File: { type: 'object', properties: { name: { type: 'string' }, digest: { type: 'string', example: 'sha256:…' }, size: { type: 'integer' } } },
      PublishResult: {
        type: 'object',
        properties: { id: { type: 'string' }, version: { type: 'string' }, digest: { type: 'string' }, size: { type: 'integer' }, files: { type: 'array', items: ref('File') } },
      },
      ModuleSummary: {
        type: 'object',
        properties: {
          id: { type: 'string', example: 'lang/de' },
          namespace: { type: 'string' },
          name: { type: 'string' },
          kind: { type: 'string', enum: ['bottleneck', 'lora', 'diff', 'fusion'] },
          task: { type: 'string' },
          language: { type: ['string', 'null'] },
          baseFingerprint: { type: 'string' },
          description: { type: 'string' },
          downloads: { type: 'integer' },
          createdAt: { type: 'string', format: 'date-time' },
          updatedAt: { type: 'string', format: 'date-time' },
        },
      },
      SearchPage: { type: 'object', properties: { total: { type: 'integer' }, limit: { type: 'integer' }, offset: { type: 'integer' }, items: { type: 'array', items: ref('ModuleSummary') } } },
      Version: {
        type: 'object',
        properties: {
          version: { type: 'string' },
          digest: { type: 'string' },
          size: { type: 'integer' },
          yanked: { type: 'boolean' },
          yankReason: { type: ['string', 'null'] },
          downloads: { type: 'integer' },
          createdAt: { type: 'string' },
          files: { type: 'array', items: ref('File') },
        },
      },
      ModuleInfo: {
        allOf: [
          ref('ModuleSummary'),
          {
            type: 'object',
            properties: {
              versions: { type: 'array', items: ref('Version') },
              tags: { type: 'object', additionalProperties: { type: 'string' }, example: { latest: '1.1.0' } },
              manifest: { type: 'object', description: 'module.json of the highest version (docs/module-format.md)' },
            },
          },
        ],
      },
      Token: {
        type: 'object',
        properties: {
          id: { type: 'string' },
          scopes: { type: 'array', items: { type: 'string', enum: ['read', 'write', 'admin'] } },
          namespace: { type: ['string', 'null'] },
          description: { type: 'string' },
          createdAt: { type: 'string' },
        },
      },
      Base: {
        type: 'object',
        properties: {
          fingerprint: { type: 'string' },
          family: { type: 'string' },
          hiddenSize: { type: 'integer' },
          numLayers: { type: 'integer' },
          vocabSize: { type: 'integer' },
          description: { type: 'string' },
        },
      },
    },
  },
  security: [{ bearer: [] }, {}],
  paths: {
    '/healthz': { get: { summary: 'Liveness', security: [], responses: { '200': ok('ok', { type: 'object', properties: { status: { const: 'ok' } } }) } } },
    '/readyz': {
      get: {
        summary: 'Readiness: the catalog answers (503 NOT_READY when its database is unreachable)',
        security: [],
        responses: { '200': ok('ready', { type: 'object', properties: { status: { const: 'ready' } } }), '503': { description: 'NOT_READY' } },
      },
    },
    '/metrics': { get: { summary: 'Prometheus metrics', security: [], responses: { '200': { description: 'text exposition format' } } } },
    '/openapi.json': { get: { summary: 'This document', security: [], responses: { '200': { description: 'OpenAPI 3.1' } } } },
    '/v1/modules': {
      post: {
        summary: 'Upload a module package (write token for its namespace)',
        description:
          'multipart/form-data with a file field `archive` (tar or tar.gz of module.json, weights.safetensors, README.md at the root) or the files as fields named ' +
          'after them; optional text fields `sha256` (of the archive) / `sha256.<file>`, `allow_unknown_base=true` (admin). Or a raw application/x-tar / application/gzip ' +
          'body with optional X-Content-Sha256. Versions are immutable: publishing an existing id@version is 409.',
        requestBody: {
          required: true,
          content: {
            'multipart/form-data': {
              schema: {
                type: 'object',
                properties: {
                  archive: { type: 'string', format: 'binary' },
                  'module.json': { type: 'string', format: 'binary' },
                  'weights.safetensors': { type: 'string', format: 'binary' },
                  'README.md': { type: 'string', format: 'binary' },
                  sha256: { type: 'string' },
                  allow_unknown_base: { type: 'string', enum: ['true', 'false'] },
                },
              },
            },
            'application/x-tar': { schema: { type: 'string', format: 'binary' } },
            'application/gzip': { schema: { type: 'string', format: 'binary' } },
          },
        },
        responses: {
          '201': ok('published', ref('PublishResult')),
          ...STD_ERRORS,
          '409': err('VERSION_EXISTS'),
          '413': err('TOO_LARGE'),
          '415': err('UNSUPPORTED_MEDIA_TYPE'),
          '422': err('INVALID_MANIFEST / INVALID_WEIGHTS / INVALID_ARCHIVE / INVALID_PACKAGE / UNSUPPORTED_FORMAT_VERSION / UNKNOWN_BASE / BASE_MISMATCH'),
        },
      },
      get: {
        summary: 'Search modules',
        parameters: [
          { name: 'q', in: 'query', schema: { type: 'string' }, description: 'substring of ns/name or description' },
          { name: 'kind', in: 'query', schema: { type: 'string', enum: ['bottleneck', 'lora', 'diff', 'fusion'] } },
          { name: 'task', in: 'query', schema: { type: 'string' } },
          { name: 'language', in: 'query', schema: { type: 'string' } },
          { name: 'base', in: 'query', schema: { type: 'string' }, description: 'base fingerprint sha256:<hex>' },
          { name: 'namespace', in: 'query', schema: { type: 'string' } },
          { name: 'sort', in: 'query', schema: { type: 'string', enum: ['downloads', 'recent', 'name'], default: 'downloads' } },
          { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 100, default: 20 } },
          { name: 'offset', in: 'query', schema: { type: 'integer', minimum: 0, default: 0 } },
        ],
        responses: { '200': ok('a page of results (Link: rel="next" when more)', ref('SearchPage')), ...STD_ERRORS },
      },
    },
    '/v1/modules/{ns}/{name}': {
      parameters: [NS, NAME],
      get: { summary: 'Module info with versions and tags', responses: { '200': ok('module', ref('ModuleInfo')), ...STD_ERRORS, '404': err('MODULE_NOT_FOUND') } },
      delete: { summary: 'Delete a module with all versions (admin)', responses: { '204': { description: 'deleted' }, ...STD_ERRORS, '404': err('MODULE_NOT_FOUND') } },
    },
    '/v1/modules/{ns}/{name}/versions/{rev}': {
      parameters: [NS, NAME, REV],
      delete: { summary: 'Delete a version (admin; `rev` must be the exact version); the version number is never reused', responses: { '204': { description: 'deleted' }, ...STD_ERRORS, '404': err('VERSION_NOT_FOUND') } },
      get: {
        summary: 'One version (by version or tag) with its manifest',
        responses: { '200': ok('version', { allOf: [ref('Version'), { type: 'object', properties: { id: { type: 'string' }, manifest: { type: 'object' } } }] }), ...STD_ERRORS, '404': err('MODULE_NOT_FOUND / VERSION_NOT_FOUND') },
      },
    },
    '/v1/modules/{ns}/{name}/versions/{rev}/archive': {
      parameters: [NS, NAME, REV],
      get: {
        summary: 'Download a version as a tar archive (counts a download when served whole)',
        parameters: RANGE_HEADERS,
        responses: { '200': BYTES('tar archive'), '206': BYTES('partial content'), '304': { description: 'not modified' }, '404': err('not found'), '416': err('RANGE_NOT_SATISFIABLE') },
      },
    },
    '/v1/modules/{ns}/{name}/versions/{rev}/files/{file}': {
      parameters: [NS, NAME, REV, pathParam('file', 'module.json, weights.safetensors or README.md')],
      get: {
        summary: 'Download one file of a version',
        parameters: RANGE_HEADERS,
        responses: { '200': BYTES('file'), '206': BYTES('partial content'), '304': { description: 'not modified' }, '404': err('FILE_NOT_FOUND'), '416': err('RANGE_NOT_SATISFIABLE') },
      },
    },
    '/v1/modules/{ns}/{name}/tags/{tag}': {
      parameters: [NS, NAME, pathParam('tag', 'tag name (not a semver version)')],
      put: {
        summary: 'Point a tag at a version (write token for the namespace); setting latest pins it',
        requestBody: { required: true, content: { 'application/json': { schema: { type: 'object', required: ['version'], properties: { version: { type: 'string' } } } } } },
        responses: { '200': ok('tags', { type: 'object', properties: { tags: { type: 'object' } } }), ...STD_ERRORS, '404': err('VERSION_NOT_FOUND') },
      },
      delete: { summary: 'Remove a tag (removing latest makes it follow the highest release again)', responses: { '200': ok('tags', { type: 'object' }), ...STD_ERRORS, '404': err('TAG_NOT_FOUND') } },
    },
    '/v1/modules/{ns}/{name}/versions/{rev}/yank': {
      parameters: [NS, NAME, pathParam('rev', 'exact version')],
      post: {
        summary: 'Yank (hide from tag/latest resolution; still downloadable by exact version) or unyank',
        requestBody: { content: { 'application/json': { schema: { type: 'object', properties: { yanked: { type: 'boolean', default: true }, reason: { type: 'string' } } } } } },
        responses: { '200': ok('state', { type: 'object' }), ...STD_ERRORS, '404': err('VERSION_NOT_FOUND') },
      },
    },
    '/v1/tokens': {
      post: {
        summary: 'Create a token (admin); the secret is returned once',
        requestBody: {
          required: true,
          content: { 'application/json': { schema: { type: 'object', required: ['scopes'], properties: { scopes: { type: 'array', items: { type: 'string' } }, namespace: { type: ['string', 'null'] }, description: { type: 'string' } } } } },
        },
        responses: { '201': ok('token', { allOf: [ref('Token'), { type: 'object', properties: { token: { type: 'string' } } }] }), ...STD_ERRORS },
      },
      get: { summary: 'List tokens (admin; no secrets)', responses: { '200': ok('tokens', { type: 'object', properties: { tokens: { type: 'array', items: ref('Token') } } }), ...STD_ERRORS } },
    },
    '/v1/tokens/{id}': { parameters: [pathParam('id', 'token id')], delete: { summary: 'Revoke a token (admin)', responses: { '204': { description: 'revoked' }, ...STD_ERRORS, '404': err('TOKEN_NOT_FOUND') } } },
    '/v1/bases': {
      get: { summary: 'Registered bases', responses: { '200': ok('bases', { type: 'object', properties: { bases: { type: 'array', items: ref('Base') } } }) } },
      post: {
        summary: 'Register a base modules may be published against (admin)',
        requestBody: {
          required: true,
          content: {
            'application/json': {
              schema: {
                type: 'object',
                required: ['fingerprint', 'family', 'hidden_size', 'num_layers', 'vocab_size'],
                properties: { fingerprint: { type: 'string' }, family: { type: 'string' }, hidden_size: { type: 'integer' }, num_layers: { type: 'integer' }, vocab_size: { type: 'integer' }, description: { type: 'string' } },
              },
            },
          },
        },
        responses: { '201': ok('base', ref('Base')), ...STD_ERRORS },
      },
    },
    '/v1/whoami': { get: { summary: 'The token of this request (null when anonymous)', responses: { '200': ok('token', { type: 'object', properties: { token: { oneOf: [ref('Token'), { type: 'null' }] } } }) } } },
    '/api/models': {
      get: {
        summary: 'HF-compatible model list',
        parameters: ['search', 'author', 'filter', 'sort', 'direction', 'limit', 'offset'].map((n) => ({ name: n, in: 'query', schema: { type: 'string' } })),
        responses: { '200': { description: 'array of models (HF shape)' } },
      },
    },
    '/api/models/{ns}/{name}': { parameters: [NS, NAME], get: { summary: 'HF-compatible model info (latest)', responses: { '200': { description: 'HF model info' }, '404': err('not found') } } },
    '/api/models/{ns}/{name}/revision/{rev}': {
      parameters: [NS, NAME, REV],
      get: { summary: 'HF-compatible model info at a revision', responses: { '200': { description: 'HF model info' }, '404': err('not found') } },
    },
    '/api/models/{ns}/{name}/tree/{rev}': {
      parameters: [NS, NAME, REV],
      get: { summary: 'HF-compatible file list (listFiles, snapshotDownload)', responses: { '200': { description: 'array of {type, path, oid, size, lfs}' }, '404': err('not found') } },
    },
    '/api/models/{ns}/{name}/tree/{rev}/{path}': {
      parameters: [NS, NAME, REV, pathParam('path', 'sub-folder (packages are flat: always 404)')],
      get: { summary: 'HF-compatible folder listing', responses: { '404': err('EntryNotFound') } },
    },
    '/api/models/{ns}/{name}/paths-info/{rev}': {
      parameters: [NS, NAME, REV],
      post: {
        summary: 'HF-compatible paths info (downloadFileToCacheDir)',
        requestBody: { content: { 'application/json': { schema: { type: 'object', properties: { paths: { type: 'array', items: { type: 'string' } }, expand: { type: 'boolean' } } } } } },
        responses: { '200': { description: 'array of {type, path, oid, size, lfs, lastCommit}' }, '400': err('INVALID_BODY'), '404': err('not found') },
      },
    },
    '/{ns}/{name}/resolve/{rev}/{file}': {
      parameters: [NS, NAME, { ...REV, description: 'version, tag, main/HEAD (= latest) or 40-hex commit' }, pathParam('file', 'file name')],
      get: {
        summary: 'HF-compatible file download (ETag, X-Repo-Commit, Range)',
        parameters: RANGE_HEADERS,
        responses: { '200': BYTES('file'), '206': BYTES('partial'), '404': err('X-Error-Code: RepoNotFound / RevisionNotFound / EntryNotFound') },
      },
      head: { summary: 'Headers of the file download', responses: { '200': { description: 'headers only' } } },
    },
    '/{ns}/{name}/raw/{rev}/{file}': {
      parameters: [NS, NAME, REV, pathParam('file', 'file name')],
      get: { summary: 'Same as resolve (modhub stores no LFS pointers)', parameters: RANGE_HEADERS, responses: { '200': BYTES('file'), '404': err('not found') } },
      head: { summary: 'Headers of the file download (what fileExists calls)', responses: { '200': { description: 'headers only' }, '404': { description: 'missing' } } },
    },
  } as Record<string, Json>,
};

/** Adds (or replaces) paths in the served document. */
export function addOpenApiPaths(paths: Record<string, Json>): void {
  Object.assign(openapi.paths, paths);
}
