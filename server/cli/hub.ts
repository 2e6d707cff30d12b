/**
 * Hub commands of the `modhub` CLI: push (with a progress bar), pull, ls, info, tag, yank — talking to a hub
 * through the SDK (`--hub`, `--token`: flag > MODHUB_HUB / MODHUB_TOKEN > `modhub login`). Each prints a line for
 * people or, with `--json`, the API's answer for scripts. Failures reach the one CLI handler (errors.ts).
 * Example: `modhub login --hub http://127.0.0.1:8080 --token mh_... && modhub push ./my-module`.
 */
import { Option, type Command } from 'commander';
import type { ModuleKind, SearchSort } from '../../client-sdk/node';
import { MODULE_KINDS } from '../../modules-store';
import { usage } from './errors';
import { byteBar, clientOf, human, print, withHubOptions, withJson, type HubOpts } from './hub-options';

/** A whole number from a flag, checked here so the error names the flag. */
function whole(name: string, v: string, min: number, max: number): number {
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw usage(`'--${name}' must be a whole number from ${min} to ${max}, got '${v}'`);
  return Number(v);
}

/** A byte count from a flag: digits with an optional binary suffix (`8M` = 8 MiB; K, M, G), checked here so the error names the flag. */
export function byteCount(name: string, v: string, min: number): number {
  const m = /^(\d+)\s*([kmg]?)(?:i?b)?$/i.exec(v.trim());
  const n = m ? Number(m[1]) * 1024 ** ' kmg'.indexOf((m[2] || ' ').toLowerCase()) : NaN;
  if (!Number.isSafeInteger(n) || n < min) throw usage(`'--${name}' must be a byte count of at least ${min} (digits, optionally with K, M or G: '8M'), got '${v}'`);
  return n;
}

/** Adds the hub commands to `program`. */
export function registerHubCommands(program: Command): void {
  withJson(
    withHubOptions(
      program
        .command('push')
        .description('publish a module package (folder or .tar / .tar.gz) to a hub; a progress bar on a terminal')
        .argument('<path>', 'package folder or archive')
        .option('--allow-unknown-base', 'accept a base this hub has not registered (admin token)')
        .option('--resumable-above <bytes>', 'packages bigger than this go up in resumable chunks that survive a dropped connection (default 64M; 0 = always)')
        .option('--chunk-size <bytes>', 'bytes per chunk of a resumable upload (default 8M)'),
    ),
  ).action(async (p: string, o: HubOpts & { allowUnknownBase?: boolean; resumableAbove?: string; chunkSize?: string }, cmd: Command) => {
    const resumableAbove = o.resumableAbove === undefined ? undefined : byteCount('resumable-above', o.resumableAbove, 0);
    const chunkBytes = o.chunkSize === undefined ? undefined : byteCount('chunk-size', o.chunkSize, 1);
    const bar = byteBar(o, ' upload [{bar}] {percentage}% {value}/{total} bytes');
    const r = await clientOf(o, cmd)
      .publish(p, { allowUnknownBase: o.allowUnknownBase, resumableAbove, chunkBytes, onProgress: bar ? (x) => bar.update(p, x.loaded, x.total) : undefined })
      .finally(() => bar?.stop());
    print(o, r, () => `published ${r.id}@${r.version} (${human(r.size)}, ${r.digest})`);
  });

  withJson(
    withHubOptions(
      program
        .command('pull')
        .description('download a module version into a folder (resumable; files verified by sha256)')
        .argument('<ref>', 'ns/name, ns/name@version or ns/name@tag')
        .requiredOption('--out <dir>', 'destination folder'),
    ),
  ).action(async (ref: string, o: HubOpts & { out: string }, cmd: Command) => {
    const bar = byteBar(o);
    const v = await clientOf(o, cmd)
      .pull(ref, o.out, { onProgress: bar ? (p) => bar.update(p.file, p.loaded, p.total) : undefined })
      .finally(() => bar?.stop());
    print(o, { id: v.id, version: v.version, digest: v.digest, out: o.out, files: v.files }, () => `pulled ${v.id}@${v.version} into ${o.out} (${v.files.map((f) => f.name).join(', ')})`);
  });

  withJson(
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
        .option('--offset <n>', 'skip this many', '0'),
    ),
    'print the JSON page',
  ).action(async (query: string | undefined, o: HubOpts & Record<string, string | undefined>, cmd: Command) => {
    if (o.kind !== undefined && !(MODULE_KINDS as readonly string[]).includes(o.kind)) throw usage(`'--kind' must be one of ${MODULE_KINDS.join(', ')}, got '${o.kind}'`);
    const page = await clientOf(o, cmd).search({
      q: query,
      kind: o.kind as ModuleKind | undefined,
      task: o.task,
      language: o.language,
      base: o.base,
      namespace: o.namespace,
      sort: o.sort as SearchSort,
      limit: whole('limit', o.limit!, 1, 100),
      offset: whole('offset', o.offset!, 0, 1e9),
    });
    print(o, page, () => [
      ...page.items.map((m) => `${m.id.padEnd(32)} ${m.kind.padEnd(10)} ${m.task.padEnd(24)} ${(m.language ?? '-').padEnd(5)} ${String(m.downloads).padStart(7)}  ${m.description}`),
      page.items.length ? `${page.offset + 1}-${page.offset + page.items.length} of ${page.total}` : `0 of ${page.total}`,
    ]);
  });

  withJson(withHubOptions(program.command('info').description('show a module with its versions and tags').argument('<id>', 'ns/name'))).action(async (id: string, o: HubOpts, cmd: Command) => {
    const m = await clientOf(o, cmd).info(id);
    print(o, m, () => [
      `${m.id}  ${m.kind}  ${m.task}${m.language ? `  ${m.language}` : ''}  downloads ${m.downloads}`,
      ...(m.description ? [m.description] : []),
      `tags: ${Object.entries(m.tags).map(([t, v]) => `${t}=${v}`).join(', ') || '-'}`,
      ...m.versions.map((v) => `  ${v.version.padEnd(16)} ${human(v.size).padStart(10)}  ${v.created_at}${v.yanked ? `  YANKED${v.yank_reason ? ` (${v.yank_reason})` : ''}` : ''}`),
    ]);
  });

  withJson(
    withHubOptions(
      program
        .command('tag')
        .description('point a tag at a version, or remove it with --remove')
        .argument('<id>', 'ns/name')
        .argument('<tag>', 'tag name')
        .argument('[version]', 'exact version (omit with --remove)')
        .option('--remove', 'remove the tag'),
    ),
  ).action(async (id: string, tag: string, version: string | undefined, o: HubOpts & { remove?: boolean }, cmd: Command) => {
    const c = clientOf(o, cmd);
    if (o.remove) {
      const tags = await c.removeTag(id, tag);
      return print(o, { tags }, () => `removed ${id}@${tag}; tags: ${JSON.stringify(tags)}`);
    }
    if (!version) throw usage(`tag: give the version to point '${tag}' at (modhub tag ${id} ${tag} 1.0.0), or --remove`);
    const tags = await c.setTag(id, tag, version);
    print(o, { tags }, () => `${id}@${tag} -> ${version}; tags: ${JSON.stringify(tags)}`);
  });

  withJson(
    withHubOptions(
      program
        .command('yank')
        .description('hide a version from tag/latest resolution (still downloadable by exact version)')
        .argument('<ref>', 'ns/name@version')
        .option('--reason <text>')
        .option('--undo', 'unyank'),
    ),
  ).action(async (ref: string, o: HubOpts & { reason?: string; undo?: boolean }, cmd: Command) => {
    if (!ref.includes('@')) throw usage(`yank: '${ref}' must name an exact version (ns/name@1.2.3)`);
    const r = await clientOf(o, cmd).yank(ref, { reason: o.reason, yanked: !o.undo });
    print(o, r, () => `${r.id}@${r.version} ${r.yanked ? 'yanked' : 'restored'}`);
  });
}
