/**
 * The CLI's config file, written by `modhub login`: the hub URL and token in
 * `$XDG_CONFIG_HOME/modhub/config.json` (default `~/.config/modhub/config.json`), the folder 0700 and the file
 * 0600 (it holds a secret). `hubSettings` picks each setting as flag > environment > config file > default.
 * Example: `saveConfig({ hub: 'http://127.0.0.1:8080', token: 'mh_...' })`; `hubSettings(opts, cmd)`.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Command } from 'commander';
import { usage } from './errors';

export const DEFAULT_HUB = 'http://127.0.0.1:8080';

export interface CliConfig {
  hub?: string;
  token?: string;
}

/** Where the config file lives (read at call time: tests point XDG_CONFIG_HOME elsewhere). */
export function configPath(): string {
  const base = process.env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config');
  return path.join(base, 'modhub', 'config.json');
}

export function loadConfig(): CliConfig {
  const file = configPath();
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw e;
  }
  try {
    const c = JSON.parse(text) as unknown;
    if (!c || typeof c !== 'object' || Array.isArray(c)) throw new Error('not an object');
    const { hub, token } = c as Record<string, unknown>;
    return { ...(typeof hub === 'string' ? { hub } : {}), ...(typeof token === 'string' ? { token } : {}) };
  } catch (e) {
    throw usage(`the config file ${file} is not valid JSON (${(e as Error).message}): fix it, or delete it and run 'modhub login' again`);
  }
}

/** Writes the config atomically with mode 0600 (a temp file in the same folder, then rename). */
export function saveConfig(c: CliConfig): string {
  const file = configPath();
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(c, null, 2)}\n`, { mode: 0o600 });
  fs.chmodSync(tmp, 0o600); // the umask may have narrowed it further, never widened; make it exact
  fs.renameSync(tmp, file);
  return file;
}

/** Removes the config file; true when there was one. */
export function removeConfig(): boolean {
  try {
    fs.unlinkSync(configPath());
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

export type Source = 'flag' | 'env' | 'config' | 'default' | 'none';

export interface HubSettings {
  hub: string;
  token?: string;
  hubFrom: Source;
  tokenFrom: Source;
}

/**
 * `--hub` and `--token` as given (commander has merged MODHUB_HUB / MODHUB_TOKEN), else the config file, else the
 * default hub and no token. The config's token is used only with the config's hub.
 */
export function hubSettings(o: { hub?: string; token?: string }, cmd?: Command): HubSettings {
  const from = (name: string): Source => {
    const s = cmd?.getOptionValueSource(name);
    return s === 'env' ? 'env' : 'flag';
  };
  const cfg = o.hub !== undefined && o.token !== undefined ? {} : loadConfig();
  const hub = o.hub ?? cfg.hub;
  // The stored token belongs to the stored hub: never send it to another one.
  const same = cfg.hub !== undefined && (hub ?? DEFAULT_HUB).replace(/\/+$/, '') === cfg.hub.replace(/\/+$/, '');
  const token = o.token ?? (same ? cfg.token : undefined);
  if (hub !== undefined && !/^https?:\/\/[^\s/]+/.test(hub)) {
    throw usage(`'--hub' must be an http(s) URL such as ${DEFAULT_HUB}, got '${hub}'${o.hub === undefined ? ` (from ${configPath()})` : ''}`);
  }
  return {
    hub: hub ?? DEFAULT_HUB,
    token: token || undefined,
    hubFrom: o.hub !== undefined ? from('hub') : hub !== undefined ? 'config' : 'default',
    tokenFrom: o.token !== undefined ? from('token') : token !== undefined ? 'config' : 'none',
  };
}
