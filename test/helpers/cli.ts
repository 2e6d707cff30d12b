/** Runs `modhub` commands in-process for tests: stdout is captured; errors reject as the top-level handler sees them. */
import { Command } from 'commander';

export async function runCommand(register: (program: Command) => void, args: string[]): Promise<string> {
  const program = new Command().exitOverride().configureOutput({ writeErr: () => undefined });
  register(program);
  let output = '';
  const spy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    output += String(chunk);
    return true;
  });
  try {
    await program.parseAsync(['node', 'modhub', ...args]);
  } finally {
    spy.mockRestore();
  }
  return output;
}
