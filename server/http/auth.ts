/**
 * Bearer-token auth. Tokens are looked up by their sha256 in the catalog; scopes are `read` < `write` < `admin`
 * (each implies the ones before it); a write token may be limited to one namespace. Anonymous reads are allowed
 * unless `anonymousRead: false`. `@huggingface/hub` insists on tokens starting with `hf_`, so `hf_<token>` is
 * accepted as `<token>`.
 * Example: `router.delete('/x', requireScope('admin'), handler)`.
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Registry, Scope, TokenRow } from '../../modules-store';
import { forbidden, unauthorized } from './errors';

export interface AuthConfig {
  /** Allow reads without a token (default true). */
  anonymousRead?: boolean;
}

export interface AuthState {
  token: Omit<TokenRow, 'hash'> | null;
}

const RANK: Record<Scope, number> = { read: 1, write: 2, admin: 3 };

/** The auth state the middleware attached to this response. */
export function authOf(res: Response): AuthState {
  return (res.locals.auth as AuthState | undefined) ?? { token: null };
}

/** True when the token carries `scope` or a higher one. */
export function hasScope(token: Omit<TokenRow, 'hash'> | null, scope: Scope): boolean {
  return !!token && token.scopes.some((s) => RANK[s] >= RANK[scope]);
}

/** Parses `Authorization: Bearer <token>` and attaches the token row; 401 for a malformed or unknown token. */
export function authenticate(registry: Registry): RequestHandler {
  return async (req: Request, res: Response, next: NextFunction) => {
    const h = req.headers.authorization;
    if (!h) {
      res.locals.auth = { token: null } satisfies AuthState;
      return next();
    }
    const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
    if (!m) throw unauthorized("the Authorization header must be 'Bearer <token>'");
    const secret = m[1].startsWith('hf_mh_') ? m[1].slice(3) : m[1];
    const row = secret.length <= 256 ? await registry.verifyToken(secret) : null;
    if (!row) throw unauthorized('the bearer token is not valid (unknown or revoked); create one with `modhub token create`');
    const { hash: _h, ...token } = row;
    void _h;
    res.locals.auth = { token } satisfies AuthState;
    next();
  };
}

/** Requires read access (anonymous when allowed). */
export function requireRead(cfg: AuthConfig): RequestHandler {
  return (_req, res, next) => {
    if (cfg.anonymousRead !== false) return next();
    if (!authOf(res).token) throw unauthorized('this hub does not allow anonymous reads: send a bearer token with read scope');
    next();
  };
}

/** Requires a token with `scope` (namespace limits are checked separately by {@link assertCanWrite}). */
export function requireScope(scope: Scope): RequestHandler {
  return (_req, res, next) => {
    const { token } = authOf(res);
    if (!token) throw unauthorized(`this endpoint needs a bearer token with ${scope} scope`);
    if (!hasScope(token, scope)) throw forbidden(`token ${token.id} has scopes [${token.scopes.join(', ')}]; this endpoint needs ${scope}`);
    next();
  };
}

/** Throws 401/403 unless the request's token may write to `namespace`. */
export function assertCanWrite(res: Response, namespace: string): void {
  const { token } = authOf(res);
  if (!token) throw unauthorized('writing needs a bearer token with write scope');
  if (!hasScope(token, 'write')) throw forbidden(`token ${token.id} has scopes [${token.scopes.join(', ')}]; writing needs write`);
  if (token.namespace !== null && token.namespace !== namespace && !hasScope(token, 'admin')) {
    throw forbidden(`token ${token.id} may write to namespace '${token.namespace}' only, not '${namespace}'`);
  }
}
