/** Registers every command group; each group lives in its own file so that they evolve independently. */
import type { Command } from 'commander';
import { registerBaseCommands } from './base';
import { registerModuleCommands } from './module';
import { registerServeCommand } from './serve';

export function registerCommands(program: Command): void {
  registerServeCommand(program);
  registerBaseCommands(program);
  registerModuleCommands(program);
}
