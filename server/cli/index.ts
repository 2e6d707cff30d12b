/** Registers every command group; each group lives in its own file so that they evolve independently. */
import type { Command } from 'commander';
import { registerBaseCommands } from './base';
import { registerHubCommands } from './hub';
import { registerModuleCommands } from './module';
import { registerServeCommand } from './serve';
import { registerTrainCommands } from './train';

export function registerCommands(program: Command): void {
  registerServeCommand(program);
  registerTrainCommands(program);
  registerHubCommands(program);
  registerBaseCommands(program);
  registerModuleCommands(program);
}
