/**
 * diskseq-open: open a block device by diskseq through diskseqd and run a command with the
 * fd; list and watch the daemon's devices; run a path-only tool with the LD_PRELOAD shim.
 * The usage text below is the reference; exit statuses are listed there.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { native } from '../native/index.js';
import { connect, type Client } from './client.js';
import { deviceToJSON, type DeviceInfo } from './device.js';
import { formatDeviceSpec } from './device-spec.js';
import { ConnectionError, DiskseqError, type DiskseqErrorCode } from './errors.js';
import { MAX_TARGET_FD, parseCliArgs, substituteFd, UsageError, type OpenCommand } from './cli-args.js';
import { printStatus } from './cli-status.js';
import { watchEventToJSON } from './watch.js';

// Exit statuses of diskseq-open's own failures (COMMAND's status is passed through).
/** diskseqd refused the request or could not be reached; COMMAND was not run. */
export const EXIT_DAEMON_ERROR = 1;
/** The command line was not understood; COMMAND was not run. */
export const EXIT_USAGE = 2;
/** COMMAND exists but could not be executed (as a shell reports it). */
export const EXIT_CANNOT_EXECUTE = 126;
/** COMMAND was not found (as a shell reports it). */
export const EXIT_COMMAND_NOT_FOUND = 127;

const PROGRAM = 'diskseq-open';
/** The repository (or installed package) root: dist/client/cli.js is two levels below. */
const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The LD_PRELOAD shim built by `npm ci` (docs/preload.md). */
export const PRELOAD_LIBRARY = `${PACKAGE_ROOT}build/Release/libdiskseq-preload.so`;

const USAGE = `Usage:
  ${PROGRAM} [OPTIONS] DEVICE -- COMMAND [ARG...]
  ${PROGRAM} --list [--json] [--socket PATH]
  ${PROGRAM} --watch [--socket PATH]
  ${PROGRAM} --status [--json] [--socket PATH]
  ${PROGRAM} --preload [--socket PATH] -- COMMAND [ARG...]
  ${PROGRAM} --help | --version

Opens DEVICE through diskseqd, which verifies on the fd that it is that disk instance (and
${PROGRAM} checks BLKGETDISKSEQ on the fd again), then runs COMMAND with the fd at
number N (default 3). Every {} inside an ARG becomes /dev/fd/N. ${PROGRAM} keeps its own
copy of the fd open until COMMAND ends, and forwards SIGINT, SIGTERM and SIGHUP to it.

DEVICE (a diskseq, optionally a partition of that disk):
  42  42p1  42-part1  /dev/disk/by-diskseq/42  /dev/disk/by-diskseq/42-part1

Options (before DEVICE):
  --rw              open read-write (default read-only)
  --wo              open write-only
  --exclusive       open with O_EXCL (fails with BUSY if the device is in use)
  --direct          open with O_DIRECT
  --sync            open with O_SYNC
  --dsync           open with O_DSYNC
  --wait SEC        wait up to SEC seconds (decimals allowed) for DEVICE to appear
  --expect KEY=VAL  require a sysfs attribute of DEVICE to equal VAL (repeatable),
                    e.g. --expect loop/backing_file=/srv/vm.img
  --fd N            give COMMAND the device at fd N, 3 <= N <= ${MAX_TARGET_FD} (default 3)
  --socket PATH     daemon socket (default: $DISKSEQD_SOCKET, else /run/diskseqd.sock)

Other modes:
  --list            list the daemon's disks and partitions as a table
  --json            with --list: print a JSON array instead (diskseq and sizeBytes are
                    decimal strings)
  --watch           print one JSON line per device event until interrupted (SIGINT,
                    SIGTERM, SIGHUP or a closed stdout end it with status 0)
  --status          how the daemon is doing: version, uptime, devices indexed,
                    connections, requests answered by outcome, waiting opens, watchers,
                    uevent overruns; with --json, as one JSON object. Other users'
                    numbers need root or the policy's status_viewers
  --preload         run COMMAND with LD_PRELOAD=<package>/build/Release/libdiskseq-preload.so
                    prepended, so that its opens of /dev/disk/by-diskseq/... go through
                    diskseqd (with --socket, DISKSEQD_SOCKET is set for COMMAND)
  --help            show this text
  --version         show the version

Exit status:
  COMMAND's own status; 128+N if COMMAND was killed by signal N
  1    diskseqd refused the request or could not be reached (one line on stderr; COMMAND
       was not run), or --list/--watch/--status/--preload failed
  2    usage error (COMMAND was not run)
  126  COMMAND could not be executed; 127  COMMAND was not found
`;

/** Runs diskseq-open with `argv` (without node and the script); resolves to the exit status. */
export async function main(argv: readonly string[]): Promise<number> {
  let command;
  try {
    command = parseCliArgs(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    return fail(EXIT_USAGE, `${error.message} (see ${PROGRAM} --help)`);
  }
  switch (command.kind) {
    case 'help':
      process.stdout.write(USAGE);
      return 0;
    case 'version':
      process.stdout.write(`${PROGRAM} ${packageVersion()}\n`);
      return 0;
    case 'list':
      return withClient(command.socketPath, (client) => listDevices(client, command.json));
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

/** Prints one line to stderr and returns `status`. */
function fail(status: number, message: string): number {
  process.stderr.write(`${PROGRAM}: ${message.replace(/\s*\n\s*/g, ' ')}\n`);
  return status;
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(`${PACKAGE_ROOT}package.json`, 'utf8')) as { version?: string };
  return pkg.version ?? 'unknown';
}

const CODE_TEXT: Record<DiskseqErrorCode, string> = {
  UNSPECIFIED: 'request failed',
  NOT_FOUND: 'not found',
  STALE: 'stale (the device changed while it was being opened)',
  PERMISSION_DENIED: 'permission denied',
  BUSY: 'device or resource busy',
  INVALID_ARGUMENT: 'invalid argument',
  TIMEOUT: 'timed out waiting for the device',
  EXPECTATION_FAILED: 'expectation failed',
  RESOURCE_EXHAUSTED: 'diskseqd is out of resources',
  UNSUPPORTED: 'not supported by this diskseqd',
  INTERNAL: 'internal error',
};

function errnoName(errno: number): string | undefined {
  return Object.entries(osConstants.errno).find(([, value]) => value === errno)?.[0];
}

/** One line for a failed request: `42p3: not found (NOT_FOUND): <daemon's message>`. */
function describeError(subject: string, error: unknown): string {
  if (error instanceof DiskseqError) {
    const errno = error.osErrno !== 0 ? `, ${errnoName(error.osErrno) ?? `errno ${error.osErrno}`}` : '';
    return `${subject}${CODE_TEXT[error.code]} (${error.code}${errno}): ${error.message}`;
  }
  if (error instanceof ConnectionError || error instanceof Error) return `${subject}${error.message}`;
  return `${subject}${String(error)}`;
}

async function withClient(socketPath: string | undefined, run: (client: Client) => Promise<number>): Promise<number> {
  let client: Client;
  try {
    client = await connect({ socketPath });
  } catch (error) {
    return fail(EXIT_DAEMON_ERROR, describeError('', error));
  }
  try {
    return await run(client);
  } catch (error) {
    return fail(EXIT_DAEMON_ERROR, describeError('', error));
  } finally {
    client.close();
  }
}

async function listDevices(client: Client, json: boolean): Promise<number> {
  const devices = await client.list({ includePartitions: true });
  devices.sort((a, b) => (a.diskseq === b.diskseq ? a.partition - b.partition : a.diskseq < b.diskseq ? -1 : 1));
  process.stdout.write(json ? `${JSON.stringify(devices.map(deviceToJSON), null, 2)}\n` : formatTable(devices));
  return 0;
}

function formatTable(devices: DeviceInfo[]): string {
  const header = ['DEVICE', 'NAME', 'MAJ:MIN', 'SIZE', 'RO', 'RM', 'DRIVER'];
  const rows = devices.map((d) => [formatDeviceSpec(d), d.name, `${d.major}:${d.minor}`, d.sizeBytes.toString(),
    d.readOnly ? '1' : '0', d.removable ? '1' : '0', d.driver]);
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  return [header, ...rows].map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd() + '\n').join('');
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

async function openAndRun(command: OpenCommand): Promise<number> {
  const subject = `${command.deviceText}: `;
  let client: Client;
  try {
    client = await connect({ socketPath: command.socketPath });
  } catch (error) {
    return fail(EXIT_DAEMON_ERROR, describeError(subject, error));
  }
  let fd: number;
  try {
    ({ fd } = await client.open({
      diskseq: command.device.diskseq, partition: command.device.partition, access: command.access,
      exclusive: command.exclusive, direct: command.direct, sync: command.sync, dsync: command.dsync,
      waitMs: command.waitMs, expect: command.expect,
    }));
  } catch (error) {
    return fail(EXIT_DAEMON_ERROR, describeError(subject, error));
  } finally {
    // The daemon connection is not needed while COMMAND runs.
    client.close();
  }
  try {
    const stdio: StdioOptions = ['inherit', 'inherit', 'inherit'];
    while (stdio.length < command.fd) stdio.push('ignore');
    stdio.push(fd);
    return await runCommand(substituteFd(command.command, command.fd), stdio, process.env);
  } finally {
    native.close(fd);
  }
}

async function runPreloaded(command: string[], socketPath: string | undefined): Promise<number> {
  if (!existsSync(PRELOAD_LIBRARY)) {
    return fail(EXIT_DAEMON_ERROR, `the preload library ${PRELOAD_LIBRARY} is missing (build it with npm rebuild)`);
  }
  const existing = process.env['LD_PRELOAD'];
  const env: NodeJS.ProcessEnv = { ...process.env, LD_PRELOAD: existing ? `${PRELOAD_LIBRARY}:${existing}` : PRELOAD_LIBRARY };
  if (socketPath !== undefined) env['DISKSEQD_SOCKET'] = socketPath;
  return runCommand(command, 'inherit', env);
}

/**
 * Spawns COMMAND, forwards SIGINT/SIGTERM/SIGHUP to it, and resolves to its exit status
 * (128+signo when a signal killed it; 126/127 when it could not be started).
 */
function runCommand(command: string[], stdio: StdioOptions, env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve) => {
    // Handlers first: a signal that arrives while (or right after) the child starts must
    // reach the child, not kill this wrapper by the default action. Node runs the handler
    // on a later turn of the loop, by when `child` is set.
    const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
    let child: ChildProcess | undefined;
    const forward = (signal: NodeJS.Signals): void => {
      child?.kill(signal);
    };
    for (const signal of signals) process.on(signal, forward);
    child = spawn(command[0]!, command.slice(1), { stdio, env });
    let done = false;
    const finish = (status: number): void => {
      if (done) return;
      done = true;
      for (const signal of signals) process.off(signal, forward);
      resolve(status);
    };
    child.once('error', (error: NodeJS.ErrnoException) => {
      const status = error.code === 'ENOENT' ? EXIT_COMMAND_NOT_FOUND : EXIT_CANNOT_EXECUTE;
      finish(fail(status, `cannot run ${command[0]}: ${error.message}`));
    });
    child.once('exit', (code, signal) => {
      finish(signal !== null ? 128 + (osConstants.signals[signal] ?? 0) : code ?? 0);
    });
  });
}
