/** Registers every command group; each group lives in its own file so that they evolve independently. */
import type { Command } from 'commander';
import { registerAuthCommands } from './auth';
import { registerBaseCommands } from './base';
import { registerHubCommands } from './hub';
import { registerInferCommand } from './infer';
import { registerModuleCommands } from './module';
import { registerServeCommand } from './serve';
import { registerTrainCommands } from './train';

export function registerCommands(program: Command): void {
  registerServeCommand(program);
  registerTrainCommands(program);
  registerInferCommand(program);
  registerHubCommands(program);
  registerAuthCommands(program);
  registerBaseCommands(program);
  registerModuleCommands(program);
}
