#!/usr/bin/env node
/**
 * `modhub` command line: one entry point, each command group registered from its own file in server/cli/.
 * Example: `modhub base tiny --out ./base && modhub serve --base ./base`.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Command } from 'commander';
import { configureProgram, runProgram } from './cli/errors';
import { registerCommands } from './cli/index';

/** The version in package.json (found from the sources or from dist/). */
function packageVersion(): string {
  for (const p of [path.join(__dirname, '..', 'package.json'), path.join(__dirname, '..', '..', 'package.json')]) {
    if (fs.existsSync(p)) return (JSON.parse(fs.readFileSync(p, 'utf8')) as { version: string }).version;
  }
  return '0.0.0';
}

export function buildProgram(): Command {
  // Before any command is added: subcommands inherit the error handling.
  const program = configureProgram(new Command());
  program
    .name('modhub')
    .description('Hub, server, trainer and client for modular fine-tuning of transformer encoders')
    .version(packageVersion())
    .showHelpAfterError()
    // Root options only before the subcommand, so `module init --version 1.0.0` reaches the subcommand.
    .enablePositionalOptions();
  registerCommands(program);
  return program;
}

if (require.main === module) {
  // Exit at once on failure: a half-started command (e.g. `serve` whose port is taken) may hold handles open.
  // On success leave the process alone: `serve` keeps running.
  void runProgram(buildProgram(), process.argv).then((status) => {
    if (status !== 0) process.exit(status);
  });
}
