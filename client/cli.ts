/**
 * diskseq-open: open block devices by diskseq through diskseqd and run a command with the
 * fds; list and watch the daemon's devices; run a path-only tool with the LD_PRELOAD shim.
 * The usage text (cli-usage.ts) is the reference; exit statuses are listed there.
 *
 * Every module this program needs is imported here, statically: tests start the CLI as
 * root and drop privileges before main() runs, and the dropped user may not be able to
 * read the checkout.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { connect, type Client } from './client.js';
import { parseCliArgs, UsageError, type CliCommand } from './cli-args.js';
import { listDevices } from './cli-list.js';
import { describeError, EXIT_FAILED, EXIT_QUERY_FAILED, fail, PROGRAM } from './cli-messages.js';
import { openAndRun, runPreloaded } from './cli-run.js';
import { printStatus } from './cli-status.js';
import { USAGE } from './cli-usage.js';
import { formatDeviceSpec } from './device-spec.js';
import { currentInstance } from './kernel-name.js';
import { watchEventToJSON } from './watch.js';

export { EXIT_CANNOT_EXECUTE, EXIT_COMMAND_NOT_FOUND, EXIT_FAILED, EXIT_QUERY_FAILED } from './cli-messages.js';
export { PRELOAD_LIBRARY } from './cli-run.js';

/** The repository (or installed package) root: dist/client/cli.js is two levels below. */
const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Runs diskseq-open with `argv` (without node and the script); resolves to the exit status. */
export async function main(argv: readonly string[]): Promise<number> {
  let command: CliCommand;
  try {
    command = parseCliArgs(argv, { nameHint: kernelNameHint });
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    return fail(error.query ? EXIT_QUERY_FAILED : EXIT_FAILED, `${error.message} (see ${PROGRAM} --help)`);
  }
  const failed = command.kind === 'open' || command.kind === 'preload' ? EXIT_FAILED : EXIT_QUERY_FAILED;
  try {
    return await run(command);
  } catch (error) {
    // Nothing should get here; if it does, the status still says whose failure it was.
    return fail(failed, `internal error: ${(error as Error)?.stack ?? String(error)}`);
  }
}

function run(command: CliCommand): Promise<number> {
  switch (command.kind) {
    case 'help':
      process.stdout.write(USAGE);
      return Promise.resolve(0);
    case 'version':
      process.stdout.write(`${PROGRAM} ${packageVersion()}\n`);
      return Promise.resolve(0);
    case 'list':
      return withClient(command.socketPath, (client) => listDevices(client, command));
    case 'watch':
      return withClient(command.socketPath, watchDevices);
    case 'status':
      return withClient(command.socketPath, (client) => printStatus(client, command.json));
    case 'preload':
      return runPreloaded(command.command, command.socketPath);
    case 'open':
      return openAndRun(command);
  }
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(`${PACKAGE_ROOT}package.json`, 'utf8')) as { version?: string };
  return pkg.version ?? 'unknown';
}

/**
 * The message for a DEVICE that is a kernel name or device path: refused (a name is not a
 * disk instance), but saying which diskseq that name has now.
 */
export function kernelNameHint(text: string, sysfsRoot?: string): string | undefined {
  if (text.startsWith('/dev/disk/by-diskseq/')) return undefined;
  const now = currentInstance(text, sysfsRoot);
  if (now === undefined) return undefined;
  const what = `invalid DEVICE ${JSON.stringify(text)}: a kernel name stands for whichever disk has it, not one disk instance`;
  if (!now.bound) return `${what}; ${now.name} is an unbound loop device now (no disk instance to open)`;
  return `${what}; ${now.name} is ${formatDeviceSpec(now)} now: pass ${formatDeviceSpec(now)}`;
}

/** Runs a mode without COMMAND on one connection: 0, or 1 with one line when anything fails. */
async function withClient(socketPath: string | undefined, run: (client: Client) => Promise<number>): Promise<number> {
  let client: Client;
  try {
    client = await connect({ socketPath });
  } catch (error) {
    return fail(EXIT_QUERY_FAILED, describeError('', error));
  }
  try {
    return await run(client);
  } catch (error) {
    return fail(EXIT_QUERY_FAILED, describeError('', error));
  } finally {
    client.close();
  }
}

async function watchDevices(client: Client): Promise<number> {
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const signal of signals) process.on(signal, onSignal);
  // A closed stdout (e.g. `| head`) ends the watch quietly.
  process.stdout.on('error', onSignal);
  try {
    for await (const event of client.watch({ signal: stop.signal })) {
      process.stdout.write(`${JSON.stringify(watchEventToJSON(event))}\n`);
    }
    return 0;
  } catch (error) {
    if (stop.signal.aborted) return 0;
    throw error;
  } finally {
    for (const signal of signals) process.off(signal, onSignal);
    process.stdout.off('error', onSignal);
  }
}
