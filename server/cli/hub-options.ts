/**
 * What every command that talks to a hub shares: the `--hub` / `--token` options (flag > MODHUB_HUB /
 * MODHUB_TOKEN > `modhub login`'s config file), the SDK client they make, `--json` printing, and a progress bar
 * on a terminal (nothing extra when piped).
 * Example: `withHubOptions(program.command('ls')).action(async (o, cmd) => print(o, await clientOf(o, cmd).search(), human))`.
 */
import cliProgress from 'cli-progress';
import { Option, type Command } from 'commander';
import { NodeModhubClient } from '../../client-sdk/node';
import { hubSettings } from './config';

export interface HubOpts {
  hub?: string;
  token?: string;
  json?: boolean;
}

export function withHubOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--hub <url>', 'hub URL (default: from `modhub login`, else http://127.0.0.1:8080)').env('MODHUB_HUB'))
    .addOption(new Option('--token <token>', 'bearer token mh_... (default: from `modhub login`)').env('MODHUB_TOKEN'));
}

/** Adds `--json`. */
export function withJson(cmd: Command, what = 'print the result as JSON'): Command {
  return cmd.option('--json', what);
}

export function clientOf(o: HubOpts, cmd?: Command): NodeModhubClient {
  const s = hubSettings(o, cmd);
  return new NodeModhubClient({ baseUrl: s.hub, token: s.token });
}

export function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** Prints `value` as JSON with `--json`, else the human lines. */
export function print(o: { json?: boolean }, value: unknown, human: () => string | string[]): void {
  if (o.json) return out(JSON.stringify(value, null, 2));
  const h = human();
  out(Array.isArray(h) ? h.join('\n') : h);
}

export function human(n: number): string {
  return n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`;
}

/**
 * A byte progress bar on stderr when it is a terminal and the output is not JSON; null otherwise. `update` takes
 * a label (a file name) and restarts the bar when the label changes.
 */
export function byteBar(o: { json?: boolean }, format = ' {label} [{bar}] {percentage}% {value}/{total} bytes'): { update: (label: string, loaded: number, total: number) => void; stop: () => void } | null {
  if (!process.stderr.isTTY || o.json) return null;
  const bar = new cliProgress.SingleBar({ format, stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic);
  let current: string | null = null;
  return {
    update(label, loaded, total) {
      if (label !== current) {
        if (current !== null) bar.stop();
        current = label;
        bar.start(total, 0, { label });
      }
      bar.setTotal(total);
      bar.update(loaded, { label });
    },
    stop() {
      if (current !== null) bar.stop();
      current = null;
    },
  };
}
