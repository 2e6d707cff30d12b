/**
 * Runs `modhub` commands in-process for tests, through the same error handler as the real CLI
 * (server/cli/errors.ts): resolves with stdout, or rejects with an Error whose message is the `CODE: message`
 * line the CLI would print on stderr (and `exitCode` its exit status).
 */
import { Command } from 'commander';
import { configureProgram, runProgram } from '../../server/cli/errors';

export async function runCommand(register: (program: Command) => void, args: string[]): Promise<string> {
  let stderr = '';
  const program = configureProgram(new Command(), (s) => {
    stderr += s;
  });
  register(program);
  let output = '';
  const spy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    output += String(chunk);
    return true;
  });
  let status: number;
  try {
    status = await runProgram(program, ['node', 'modhub', ...args], (s) => {
      stderr += s;
    });
  } finally {
    spy.mockRestore();
  }
  if (status !== 0) throw Object.assign(new Error(stderr.trimEnd()), { exitCode: status });
  return output;
}
