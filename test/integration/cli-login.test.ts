/**
 * The CLI's identity and scripting surface against a real hub on a socket: `login` (token checked, then stored
 * with mode 0600 under XDG_CONFIG_HOME), `whoami` with where the token came from (flag > MODHUB_TOKEN > config),
 * the stored token never sent to another hub, `logout`, `token list` / `revoke`, and `--json` on every hub
 * command that prints a result.
 */
import { promises as fsp } from 'node:fs';
import * as fs from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import pino from 'pino';
import client from 'prom-client';
import { registerAuthCommands } from '../../server/cli/auth';
import { registerBaseCommands } from '../../server/cli/base';
import { registerModuleCommands } from '../../server/cli/module';
import { registerTrainCommands } from '../../server/cli/train';
import { configPath } from '../../server/cli/config';
import { registerHubCommands } from '../../server/cli/hub';
import { createHubServer } from '../../server/http/app';
import { runCommand } from '../helpers/cli';
import { makePackageFiles, registerTestBase } from '../helpers/hub';

let root: string;
let server: Server;
let url: string;
let close: () => Promise<void>;
let admin: { token: string; id: string };
let reader: { token: string; id: string };

const cli = (...args: string[]) =>
  runCommand((p) => {
    registerHubCommands(p);
    registerAuthCommands(p);
    registerBaseCommands(p);
    registerModuleCommands(p);
    registerTrainCommands(p);
  }, args);
const json = async (...args: string[]) => JSON.parse(await cli(...args, '--json')) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'modhub-login-'));
  process.env.XDG_CONFIG_HOME = path.join(root, 'config');
  delete process.env.MODHUB_TOKEN;
  delete process.env.MODHUB_HUB;
  const dataDir = path.join(root, 'data');
  const hub = await createHubServer({ dataDir, logger: pino({ level: 'silent' }), metrics: new client.Registry() });
  await registerTestBase(hub.registry);
  close = hub.close;
  server = await new Promise<Server>((resolve) => {
    const s = hub.app.listen(0, '127.0.0.1', () => resolve(s));
  });
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  admin = JSON.parse(await cli('token', 'create', '--scope', 'admin', '--data', dataDir, '--json'));
  reader = JSON.parse(await cli('token', 'create', '--scope', 'read', '--data', dataDir, '--description', 'ci reader', '--json'));
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  await close();
  await fsp.rm(root, { recursive: true, force: true });
});

describe('login, whoami, logout', () => {
  it('refuses an unknown token and stores nothing', async () => {
    await expect(cli('login', '--hub', url, '--token', 'mh_not_a_token')).rejects.toThrow(/^UNAUTHORIZED: /);
    expect(fs.existsSync(configPath())).toBe(false);
    await expect(cli('login', '--hub', url)).rejects.toThrow(/^INVALID_ARGUMENT: login: give the token with '--token mh_\.\.\.'/);
    await expect(cli('whoami', '--hub', 'localhost:8080')).rejects.toThrow(/^INVALID_ARGUMENT: '--hub' must be an http\(s\) URL/);
  });

  it('stores hub and token with mode 0600; whoami says where the token came from: flag > env > config', async () => {
    const r = await json('login', '--hub', url, '--token', admin.token);
    expect(r).toMatchObject({ hub: url, token: { id: admin.id, scopes: ['admin'] }, config: configPath() });
    expect(configPath()).toBe(path.join(root, 'config', 'modhub', 'config.json'));
    expect(fs.statSync(configPath()).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(configPath())).mode & 0o777).toBe(0o700);
    expect(JSON.parse(fs.readFileSync(configPath(), 'utf8'))).toEqual({ hub: url, token: admin.token });

    expect(await json('whoami')).toMatchObject({ hub: url, hub_from: 'config', token: { id: admin.id }, token_from: 'config' });
    expect(await cli('whoami')).toContain(`${url}: token ${admin.id} (admin) from ${configPath()}`);
    process.env.MODHUB_TOKEN = reader.token;
    try {
      expect(await json('whoami')).toMatchObject({ token: { id: reader.id, scopes: ['read'] }, token_from: 'env' });
      expect(await json('whoami', '--token', admin.token)).toMatchObject({ token: { id: admin.id }, token_from: 'flag' });
    } finally {
      delete process.env.MODHUB_TOKEN;
    }
  });

  it('never sends the stored token to another hub', async () => {
    const other = url.replace('127.0.0.1', 'localhost');
    expect(await json('whoami', '--hub', other)).toMatchObject({ hub: other, hub_from: 'flag', token: null, token_from: 'none' });
  });

  it("login reads the token from stdin with '--token -'", async () => {
    const stdin = Object.getOwnPropertyDescriptor(process, 'stdin')!;
    Object.defineProperty(process, 'stdin', { value: Readable.from([`${reader.token}\n`]), configurable: true });
    try {
      expect(await json('login', '--hub', url, '--token', '-')).toMatchObject({ token: { id: reader.id } });
    } finally {
      Object.defineProperty(process, 'stdin', stdin);
    }
    expect(JSON.parse(fs.readFileSync(configPath(), 'utf8'))).toEqual({ hub: url, token: reader.token });
  });

  it('logout forgets both; afterwards the CLI is anonymous on the default hub', async () => {
    expect(await cli('logout')).toContain(`logged out of ${url}`);
    expect(fs.existsSync(configPath())).toBe(false);
    expect(await json('logout')).toEqual({ logged_out: false, hub: null });
    expect(await json('whoami', '--hub', url)).toMatchObject({ token: null, token_from: 'none' });
  });
});

describe('token list / revoke, and --json on the hub commands', () => {
  it('lists and revokes tokens on a hub (admin), with clear errors', async () => {
    const hubArgs = ['--hub', url, '--token', admin.token];
    const listed = await json('token', 'list', ...hubArgs);
    expect(listed.tokens.map((t: { id: string }) => t.id).sort()).toEqual([admin.id, reader.id].sort());
    expect(JSON.stringify(listed)).not.toContain(admin.token);
    expect(await cli('token', 'list', ...hubArgs)).toMatch(new RegExp(`${reader.id}\\s+read\\s+\\*\\s+\\S+\\s+ci reader`));
    await expect(cli('token', 'list', '--hub', url, '--token', reader.token)).rejects.toThrow(/^FORBIDDEN: /);
    expect(await json('token', 'revoke', reader.id, ...hubArgs)).toEqual({ revoked: reader.id });
    await expect(cli('whoami', '--hub', url, '--token', reader.token)).rejects.toThrow(/^UNAUTHORIZED: /);
    await expect(cli('token', 'revoke', 'tok_nope', ...hubArgs)).rejects.toThrow(/^TOKEN_NOT_FOUND: /);
  });

  it('push, ls, info, tag, yank and pull print the API answer with --json', async () => {
    const hubArgs = ['--hub', url, '--token', admin.token];
    const pkg = path.join(root, 'pkg');
    await fsp.mkdir(pkg);
    for (const [n, b] of makePackageFiles({ id: 'lang/de', version: '1.0.0' })) await fsp.writeFile(path.join(pkg, n), b);
    const pushed = await json('push', pkg, ...hubArgs);
    expect(pushed).toMatchObject({ id: 'lang/de', version: '1.0.0', digest: expect.stringMatching(/^sha256:/) });
    expect((await json('ls', 'lang', '--hub', url)).items.map((m: { id: string }) => m.id)).toEqual(['lang/de']);
    expect(await json('info', 'lang/de', '--hub', url)).toMatchObject({ id: 'lang/de', tags: { latest: '1.0.0' } });
    expect(await json('tag', 'lang/de', 'stable', '1.0.0', ...hubArgs)).toEqual({ tags: { latest: '1.0.0', stable: '1.0.0' } });
    expect(await json('yank', 'lang/de@1.0.0', '--reason', 'test', ...hubArgs)).toEqual({ id: 'lang/de', version: '1.0.0', yanked: true });
    const pulled = await json('pull', 'lang/de@1.0.0', '--out', path.join(root, 'pulled'), '--hub', url);
    expect(pulled).toMatchObject({ id: 'lang/de', version: '1.0.0', digest: pushed.digest, files: expect.arrayContaining([expect.objectContaining({ name: 'weights.safetensors' })]) });
    await expect(cli('ls', '--limit', '500', '--hub', url)).rejects.toThrow(/^INVALID_ARGUMENT: '--limit' must be a whole number from 1 to 100, got '500'$/);
    await expect(cli('ls', '--kind', 'adapter', '--hub', url)).rejects.toThrow(/^INVALID_ARGUMENT: '--kind' must be one of bottleneck, lora/);
  });
});

describe('--json on the local commands', () => {
  it('base tiny and module init print what they wrote', async () => {
    const baseDir = path.join(root, 'base');
    expect(await json('base', 'tiny', '--out', baseDir, '--layers', '1', '--hidden', '16', '--heads', '2')).toMatchObject({ dir: baseDir, family: 'bert', layers: 1, hidden_size: 16, parameters: expect.any(Number) });
    const init = await json('module', 'init', '--base', baseDir, '--kind', 'lora', '--id', 'task/x', '--head', 'classification', '--labels', 'a,b', '--out', path.join(root, 'x'));
    expect(init).toMatchObject({ files: ['module.json', 'weights.safetensors', 'README.md'], manifest: { id: 'task/x', kind: 'lora', labels: ['a', 'b'] } });
  });

  it("train takes --format when the extension does not tell, names the flag when it is missing, and prints --json", async () => {
    const baseDir = path.join(root, 'base');
    const data = path.join(root, 'train.data');
    fs.writeFileSync(data, 'text,label\nthe cat sat,a\nthe dog ran,b\na cat slept,a\na dog barked,b\n');
    const args = ['train', '--method', 'lora', '--task', 'classification', '--base', baseDir, '--data', data, '--out', path.join(root, 'trained'), '--id', 'task/y', '--epochs', '1', '--batch-size', '2', '--threads', '1'];
    await expect(cli(...args)).rejects.toThrow(/^INVALID_ARGUMENT: '--format' is needed: cannot tell the format of .*train\.data/);
    await expect(cli(...args, '--format', 'xml')).rejects.toThrow(/^INVALID_ARGUMENT: '--format' must be jsonl, csv or tsv, got 'xml'$/);
    const r = await json(...args, '--format', 'csv');
    expect(r).toMatchObject({ id: 'task/y', version: '0.1.0', method: 'lora', steps: 2, out: path.join(root, 'trained'), published: null });
  });
});
