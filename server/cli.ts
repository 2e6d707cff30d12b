#!/usr/bin/env node
/**
 * `modhub` command line: one entry point, each command group registered from its own file in server/cli/.
 * Example: `modhub base tiny --out ./base && modhub serve --base ./base`.
 */
import { Command } from 'commander';
import { registerCommands } from './cli/index';

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('modhub')
    .description('Hub, server, trainer and client for modular fine-tuning of transformer encoders')
    .version(require('../package.json').version as string)
    .showHelpAfterError();
  registerCommands(program);
  return program;
}

if (require.main === module) {
  buildProgram()
    .parseAsync(process.argv)
    .catch((err: unknown) => {
      process.stderr.write(`modhub: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    });
}
