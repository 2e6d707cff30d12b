/**
 * The CLI's one error handler: every `modhub` command that fails prints one line `CODE: message` on stderr and
 * exits 1. Codes come from the shared table (modules-store/errors.ts) through the typed errors that carry them
 * (CodedError / StoreError, ModuleError, the SDK's ModhubError with the server's code); commander's usage errors
 * and our TypeError / RangeError argument checks (STYLE.md item 3) are INVALID_ARGUMENT; Node's system errors
 * keep their own code (ENOENT, EACCES); anything else is INTERNAL, with the stack when MODHUB_DEBUG is set.
 * Example: `process.exitCode = await runProgram(configureProgram(new Command()), process.argv)`.
 */
import { CommanderError, type Command } from 'commander';
import { ModhubError } from '../../client-sdk';
import { CodedError } from '../../modules-store';

/** A bad flag or argument: `INVALID_ARGUMENT: <message>`. */
export function usage(message: string): CodedError {
  return new CodedError('INVALID_ARGUMENT', message);
}

/** The one line printed for `err`. */
export function cliErrorLine(err: unknown): string {
  if (err instanceof CodedError || err instanceof ModhubError) return `${err.code}: ${err.message}`;
  if (err instanceof CommanderError) return `INVALID_ARGUMENT: ${err.message.replace(/^error: /, '')}`;
  // Duck-typed, not `instanceof Error`: Node's system errors may come from another realm (vm, jest).
  const sys = (err ?? {}) as NodeJS.ErrnoException;
  if (typeof sys.message === 'string' && typeof sys.code === 'string' && typeof sys.syscall === 'string') {
    return sys.message.startsWith(`${sys.code}:`) ? sys.message : `${sys.code}: ${sys.message}`;
  }
  if (err instanceof RangeError || err instanceof TypeError) return `INVALID_ARGUMENT: ${err.message}`;
  return `INTERNAL: ${err instanceof Error ? err.message : String(err)}`;
}

/**
 * Makes `program` (and every command added to it afterwards) report through {@link runProgram}: commander
 * throws instead of exiting, and its own error text goes out as the `INVALID_ARGUMENT:` line.
 */
export function configureProgram(program: Command, writeErr: (s: string) => void = (s) => process.stderr.write(s)): Command {
  return program.exitOverride().configureOutput({
    writeErr,
    outputError: (str, write) => write(`${cliErrorLine(new CommanderError(1, 'commander.error', str.trimEnd()))}\n`),
  });
}

/**
 * Parses and runs `argv`; resolves with the exit status (0, or 1 after printing `CODE: message`). Help and
 * --version exit 0; usage errors were printed by commander through {@link configureProgram}'s output.
 */
export async function runProgram(program: Command, argv: string[], writeErr: (s: string) => void = (s) => process.stderr.write(s)): Promise<number> {
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    writeErr(`${cliErrorLine(err)}\n`);
    if (process.env.MODHUB_DEBUG && err instanceof Error && err.stack) writeErr(`${err.stack}\n`);
    else if (cliErrorLine(err).startsWith('INTERNAL:')) writeErr('(an unexpected error: run with MODHUB_DEBUG=1 for the stack, and report it)\n');
    return 1;
  }
}
