/**
 * Hub commands of the `modhub` CLI: push, pull, ls, info, tag, yank (talking to a hub through the SDK; `--hub`
 * or MODHUB_HUB, `--token` or MODHUB_TOKEN) and `token create` (opening a local data dir directly, which is how
 * the first admin token is made). Failures reach the one CLI handler (errors.ts), which prints the server's code.
 * Example: `modhub token create --scope admin --data ./.modhub && modhub push ./my-module --token mh_...`.
 */
import cliProgress from 'cli-progress';
import { Command, Option } from 'commander';
import { ModhubClient, type ModuleKind, type Scope, type SearchSort } from '../../client-sdk';
import { MODULE_KINDS, openRegistry } from '../../modules-store';
import { usage } from './errors';

const DEFAULT_HUB = 'http://127.0.0.1:8080';

interface HubOpts {
  hub?: string;
  token?: string;
}

function withHubOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--hub <url>', 'hub URL').env('MODHUB_HUB').default(DEFAULT_HUB))
    .addOption(new Option('--token <token>', 'bearer token (mh_...)').env('MODHUB_TOKEN'));
}

function clientOf(o: HubOpts): ModhubClient {
  return new ModhubClient({ baseUrl: o.hub ?? DEFAULT_HUB, token: o.token });
}

function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

function human(n: number): string {
  return n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`;
}

/** Adds the hub commands to `program`. */
export function registerHubCommands(program: Command): void {
  withHubOptions(
    program
      .command('push')
      .description('publish a module package (folder or .tar / .tar.gz) to a hub')
      .argument('<path>', 'package folder or archive')
      .option('--allow-unknown-base', 'accept a base this hub has not registered (admin token)'),
  ).action(async (p: string, o: HubOpts & { allowUnknownBase?: boolean }) => {
    const r = await clientOf(o).publish(p, { allowUnknownBase: o.allowUnknownBase });
    out(`published ${r.id}@${r.version} (${human(r.size)}, ${r.digest})`);
  });

  withHubOptions(
    program
      .command('pull')
      .description('download a module version into a folder (files verified by sha256)')
      .argument('<ref>', 'ns/name, ns/name@version or ns/name@tag')
      .requiredOption('--out <dir>', 'destination folder'),
  ).action(async (ref: string, o: HubOpts & { out: string }) => {
    // A progress bar on a terminal (downloads can be hundreds of MB); nothing extra when piped.
    const bar = process.stderr.isTTY ? new cliProgress.SingleBar({ format: ' {file} [{bar}] {percentage}% {value}/{total} bytes', stream: process.stderr }, cliProgress.Presets.shades_classic) : null;
    let current = '';
    const v = await clientOf(o)
      .pull(ref, o.out, bar ? (p) => {
        if (p.file !== current) {
          if (current) bar.stop();
          current = p.file;
          bar.start(p.total, 0, { file: p.file });
        }
        bar.update(p.received, { file: p.file });
      } : undefined)
      .finally(() => bar?.stop());
    out(`pulled ${v.id}@${v.version} into ${o.out} (${v.files.map((f) => f.name).join(', ')})`);
  });

  withHubOptions(
    program
      .command('ls')
      .description('search modules')
      .argument('[query]', 'free text over name and description')
      .option('--kind <kind>', MODULE_KINDS.join(' | '))
      .option('--task <task>')
      .option('--language <code>')
      .option('--base <fingerprint>', 'base fingerprint sha256:<hex>')
      .option('--namespace <ns>')
      .addOption(new Option('--sort <sort>').choices(['downloads', 'recent', 'name']).default('downloads'))
      .option('--limit <n>', 'results per page (1-100)', '20')
      .option('--offset <n>', 'skip this many', '0')
      .option('--json', 'print the JSON page'),
  ).action(async (query: string | undefined, o: HubOpts & Record<string, string | boolean | undefined>) => {
    const page = await clientOf(o).search({
      q: query,
      kind: o.kind as ModuleKind | undefined,
      task: o.task as string | undefined,
      language: o.language as string | undefined,
      base: o.base as string | undefined,
      namespace: o.namespace as string | undefined,
      sort: o.sort as SearchSort,
      limit: Number(o.limit),
      offset: Number(o.offset),
    });
    if (o.json) return out(JSON.stringify(page, null, 2));
    for (const m of page.items) out(`${m.id.padEnd(32)} ${m.kind.padEnd(10)} ${m.task.padEnd(24)} ${(m.language ?? '-').padEnd(5)} ${String(m.downloads).padStart(7)}  ${m.description}`);
    out(`${page.offset + 1}-${page.offset + page.items.length} of ${page.total}`);
  });

  withHubOptions(program.command('info').description('show a module with its versions and tags').argument('<id>', 'ns/name')).action(async (id: string, o: HubOpts) => {
    const m = await clientOf(o).info(id);
    out(`${m.id}  ${m.kind}  ${m.task}${m.language ? `  ${m.language}` : ''}  downloads ${m.downloads}`);
    if (m.description) out(m.description);
    out(`tags: ${Object.entries(m.tags).map(([t, v]) => `${t}=${v}`).join(', ') || '-'}`);
    for (const v of m.versions) out(`  ${v.version.padEnd(16)} ${human(v.size).padStart(10)}  ${v.created_at}${v.yanked ? `  YANKED${v.yank_reason ? ` (${v.yank_reason})` : ''}` : ''}`);
  });

  withHubOptions(
    program
      .command('tag')
      .description('point a tag at a version, or remove it with --remove')
      .argument('<id>', 'ns/name')
      .argument('<tag>', 'tag name')
      .argument('[version]', 'exact version (omit with --remove)')
      .option('--remove', 'remove the tag'),
  ).action(async (id: string, tag: string, version: string | undefined, o: HubOpts & { remove?: boolean }) => {
    const c = clientOf(o);
    if (o.remove) {
      const tags = await c.removeTag(id, tag);
      return out(`removed ${id}@${tag}; tags: ${JSON.stringify(tags)}`);
    }
    if (!version) throw usage('tag: give the version to tag, or --remove');
    const tags = await c.setTag(id, tag, version);
    out(`${id}@${tag} -> ${version}; tags: ${JSON.stringify(tags)}`);
  });

  withHubOptions(
    program
      .command('yank')
      .description('hide a version from tag/latest resolution (still downloadable by exact version)')
      .argument('<ref>', 'ns/name@version')
      .option('--reason <text>')
      .option('--undo', 'unyank'),
  ).action(async (ref: string, o: HubOpts & { reason?: string; undo?: boolean }) => {
    if (!ref.includes('@')) throw usage(`yank: '${ref}' must name an exact version (ns/name@1.2.3)`);
    const r = await clientOf(o).yank(ref, { reason: o.reason, yanked: !o.undo });
    out(`${r.id}@${r.version} ${r.yanked ? 'yanked' : 'restored'}`);
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
      if (bad.length) throw usage(`token create: unknown scope(s) ${bad.join(', ')}; use read, write or admin`);
      // sweep: false — a running server may be publishing into the same data dir.
      const reg = await openRegistry({ dataDir: o.data, sweep: false });
      try {
        const t = await reg.createToken({ scopes: scopes as Scope[], namespace: o.namespace ?? null, description: o.description });
        if (o.json) out(JSON.stringify({ token: t.token, ...t.info }));
        else out(`${t.token}\n(id ${t.info.id}, scopes ${t.info.scopes.join(',')}${t.info.namespace ? `, namespace ${t.info.namespace}` : ''}; shown once, store it now)`);
      } finally {
        await reg.close();
      }
    });
}
