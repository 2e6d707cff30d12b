/** Registers every command group; each group lives in its own file so that they evolve independently. */
import type { Command } from 'commander';

export function registerCommands(program: Command): void {
  void program;
}
