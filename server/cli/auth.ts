/**
 * Who the CLI is: `modhub login` (checks the token against the hub, then stores hub URL and token in the config
 * file, mode 0600: config.ts), `logout`, `whoami` (which hub, which token and where each came from), and the
 * `token` commands: `create` in a local data dir (how the first admin token is made), `list` and `revoke` against
 * a hub (admin token).
 * Example: `modhub login --hub http://127.0.0.1:8080 --token mh_... && modhub whoami && modhub token list`.
 */
import { Option, type Command } from 'commander';
import type { Scope } from '../../client-sdk/node';
import { openStore } from '../../modules-store';
import { configPath, hubSettings, loadConfig, removeConfig, saveConfig } from './config';
import { usage } from './errors';
import { clientOf, out, print, withHubOptions, withJson, type HubOpts } from './hub-options';

async function readStdin(): Promise<string> {
  let s = '';
  for await (const chunk of process.stdin) s += String(chunk);
  return s;
}

export function registerAuthCommands(program: Command): void {
  withJson(
    withHubOptions(
      program
        .command('login')
        .description(`check a token against a hub and store both in ${configPath().replace(process.env.HOME ?? '\0', '~')} (mode 0600); '--token -' reads it from stdin`),
    ),
  ).action(async (o: HubOpts, cmd: Command) => {
    let token = o.token;
    if (token === '-') token = (await readStdin()).trim();
    if (!token) throw usage("login: give the token with '--token mh_...', '--token -' (stdin) or MODHUB_TOKEN");
    const s = hubSettings({ ...o, token }, cmd);
    const info = await clientOf({ hub: s.hub, token }).whoami();
    if (!info) throw usage(`login: ${s.hub} does not know this token`);
    const file = saveConfig({ hub: s.hub, token });
    print(o, { hub: s.hub, token: info, config: file }, () => `logged in to ${s.hub} with token ${info.id} (${info.scopes.join(', ')}${info.namespace ? `, namespace ${info.namespace}` : ''}); saved in ${file}`);
  });

  withJson(program.command('logout').description('forget the hub and token that `modhub login` stored')).action((o: { json?: boolean }) => {
    const had = loadConfig();
    const removed = removeConfig();
    print(o, { logged_out: removed, hub: had.hub ?? null }, () => (removed ? `logged out of ${had.hub ?? 'the hub'} (removed ${configPath()})` : 'not logged in'));
  });

  withJson(withHubOptions(program.command('whoami').description('show the hub and token the CLI would use, as the hub sees the token'))).action(async (o: HubOpts, cmd: Command) => {
    const s = hubSettings(o, cmd);
    const info = await clientOf(o, cmd).whoami();
    const where = { flag: '--token', env: 'MODHUB_TOKEN', config: configPath(), default: '', none: '' }[s.tokenFrom];
    print(o, { hub: s.hub, hub_from: s.hubFrom, token: info, token_from: s.tokenFrom }, () =>
      info
        ? `${s.hub}: token ${info.id} (${info.scopes.join(', ')}${info.namespace ? `, namespace ${info.namespace}` : ''}) from ${where}`
        : `${s.hub}: anonymous (no token; run 'modhub login')`,
    );
  });

  const token = program.command('token').description('manage API tokens');
  token
    .command('create')
    .description('create a token in a local data dir (prints the secret once)')
    .requiredOption('--scope <scopes...>', 'read, write and/or admin')
    .option('--namespace <ns>', 'limit writes to this namespace')
    .option('--description <text>', 'what the token is for', '')
    .addOption(new Option('--data <dir>', 'hub data folder (as given to `modhub serve --data`)').env('MODHUB_DATA').default('.modhub'))
    .option('--json', 'print JSON')
    .action(async (o: { scope: string[]; namespace?: string; description: string; data: string; json?: boolean }) => {
      const scopes = o.scope.flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
      const bad = scopes.filter((s) => !['read', 'write', 'admin'].includes(s));
      if (bad.length) throw usage(`token create: unknown scope(s) ${bad.join(', ')} in '--scope'; use read, write or admin`);
      // sweep: false — a running server may be publishing into the same data dir.
      // The same store as `modhub serve`: the data dir, or MODHUB_DATABASE_URL / MODHUB_BLOB_URL when set.
      const reg = await openStore({ dataDir: o.data, sweep: false });
      try {
        const t = await reg.createToken({ scopes: scopes as Scope[], namespace: o.namespace ?? null, description: o.description });
        if (o.json) out(JSON.stringify({ token: t.token, ...t.info }));
        else out(`${t.token}\n(id ${t.info.id}, scopes ${t.info.scopes.join(',')}${t.info.namespace ? `, namespace ${t.info.namespace}` : ''}; shown once, store it now)`);
      } finally {
        await reg.close();
      }
    });

  withJson(withHubOptions(token.command('list').description("list a hub's tokens (admin token; secrets are never shown)"))).action(async (o: HubOpts, cmd: Command) => {
    const tokens = await clientOf(o, cmd).listTokens();
    print(o, { tokens }, () => (tokens.length ? tokens.map((t) => `${t.id.padEnd(24)} ${t.scopes.join(',').padEnd(18)} ${(t.namespace ?? '*').padEnd(12)} ${t.created_at}  ${t.description}`) : 'no tokens'));
  });

  withJson(withHubOptions(token.command('revoke').description('revoke a token on a hub (admin token)').argument('<id>', "the token's id (from `modhub token list`)"))).action(async (id: string, o: HubOpts, cmd: Command) => {
    await clientOf(o, cmd).revokeToken(id);
    print(o, { revoked: id }, () => `revoked ${id}`);
  });
}
