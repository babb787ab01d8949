/**
 * The forms of diskseq-open that run COMMAND: with verified device fds (DEVICE... --
 * COMMAND), or with the LD_PRELOAD shim (--preload). Every failure of diskseq-open's own
 * here exits EXIT_FAILED without running COMMAND; otherwise the status is COMMAND's.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { closeSync, constants as fsConstants, existsSync, openSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { connect, type Client } from './client.js';
import { substituteFds, type DeviceRequest, type OpenCommand } from './cli-args.js';
import { describeError, EXIT_CANNOT_EXECUTE, EXIT_COMMAND_NOT_FOUND, EXIT_FAILED, fail } from './cli-messages.js';
import { AbortError } from './errors.js';
import type { Opened } from './opened.js';

/** The repository (or installed package) root: dist/client/cli-run.js is two levels below. */
const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The LD_PRELOAD shim built by `npm ci` (docs/preload.md). */
export const PRELOAD_LIBRARY = `${PACKAGE_ROOT}build/Release/libdiskseq-preload.so`;

/**
 * Opens every DEVICE through one connection (pipelined), and once all of them are open and
 * verified runs COMMAND with each fd at its number, holding its own copies until COMMAND
 * ends. When any open fails, the others are aborted or closed, one line per failed DEVICE
 * is printed, and COMMAND never runs.
 */
export async function openAndRun(command: OpenCommand): Promise<number> {
  let client: Client;
  try {
    client = await connect({ socketPath: command.socketPath });
  } catch (error) {
    return fail(EXIT_FAILED, describeError(`${command.devices.map((d) => d.deviceText).join(' ')}: `, error));
  }
  const opened = await openAll(client, command);
  if (!opened.ok) return EXIT_FAILED;
  try {
    for (const [i, request] of command.devices.entries()) {
      const unreopenable = reopenFailure(command, i, request, opened.devices[i]!.fd);
      if (unreopenable !== undefined) return fail(EXIT_FAILED, `${request.deviceText}: ${unreopenable}`);
    }
    const stdio: StdioOptions = ['inherit', 'inherit', 'inherit'];
    const byFd = new Map(command.devices.map((request, i) => [request.fd, opened.devices[i]!.fd]));
    const highest = Math.max(...byFd.keys());
    // Numbers between the devices' are closed in COMMAND ('ignore' above stdio).
    for (let fd = 3; fd <= highest; fd++) stdio.push(byFd.get(fd) ?? 'ignore');
    return await runCommand(substituteFds(command.command, command.devices.map((d) => d.fd)), stdio, process.env);
  } finally {
    for (const device of opened.devices) device.close();
  }
}

/**
 * Why COMMAND's `{}` or `{N}` (/dev/fd/N) of the `index`th DEVICE would not work, or
 * undefined. Tools reopen that path, and for a non-root peer the daemon delivers an fd that
 * can be reopened only under a grant that includes "exclusive" (a reopen could claim the
 * device with O_EXCL; docs/policy.md). So when the path is used, try the reopen here, with
 * the fd's own access mode, before COMMAND runs and fails in a way that does not say why.
 */
function reopenFailure(command: OpenCommand, index: number, request: DeviceRequest, fd: number): string | undefined {
  if (process.getuid?.() === 0) return undefined;
  const named = new RegExp(`(^|[^$])\\{${request.fd}\\}`);
  const used = command.command.slice(1).some((arg) => (index === 0 && /(^|[^$])\{\}/.test(arg)) || named.test(arg));
  if (!used) return undefined;
  const { O_RDONLY, O_RDWR, O_WRONLY } = fsConstants;
  const flags = request.access === 'read-write' ? O_RDWR : request.access === 'write-only' ? O_WRONLY : O_RDONLY;
  try {
    closeSync(openSync(`/proc/self/fd/${fd}`, flags));
    return undefined;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    return `/dev/fd/${request.fd} cannot be reopened (${code}): the policy grants this user the device but not ` +
      `"exclusive", and only an exclusive grant lets the fd be reopened. Either get a rule with "exclusive": true, or ` +
      `pass the fd itself instead of its path (e.g. <&${request.fd} in a shell, or a tool that takes an fd, such as QEMU's -add-fd)`;
  }
}

/** Opens every DEVICE; on any failure closes what did open and prints each failure. */
async function openAll(client: Client, command: OpenCommand): Promise<{ ok: true; devices: Opened[] } | { ok: false }> {
  // The first failure aborts the opens still pending (a --wait on another DEVICE would
  // otherwise keep COMMAND's fate open for nothing); an fd that arrives after is closed.
  const abort = new AbortController();
  let results: PromiseSettledResult<Opened>[];
  try {
    results = await Promise.allSettled(command.devices.map(async (request) => {
      try {
        return await client.open({
          diskseq: request.device.diskseq, partition: request.device.partition, access: request.access,
          exclusive: request.exclusive, direct: request.direct, sync: request.sync, dsync: request.dsync,
          waitMs: request.waitMs, expect: request.expect, signal: abort.signal,
        });
      } catch (error) {
        if (!abort.signal.aborted) abort.abort();
        throw error;
      }
    }));
  } finally {
    // The daemon connection is not needed while COMMAND runs.
    client.close();
  }
  const devices = results.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  if (devices.length === results.length) return { ok: true, devices };
  for (const device of devices) device.close();
  results.forEach((result, i) => {
    // Opens this process aborted because another DEVICE failed say nothing of their own.
    if (result.status === 'rejected' && !(result.reason instanceof AbortError)) {
      fail(EXIT_FAILED, describeError(`${command.devices[i]!.deviceText}: `, result.reason));
    }
  });
  return { ok: false };
}

/** Runs COMMAND with the shim preloaded (and DISKSEQD_SOCKET set when --socket is given). */
export async function runPreloaded(command: string[], socketPath: string | undefined): Promise<number> {
  // Another copy, for a COMMAND whose user cannot read the package's (e.g. one under /root).
  const library = process.env['DISKSEQD_PRELOAD_LIBRARY'] || PRELOAD_LIBRARY;
  if (!existsSync(library)) {
    const hint = library === PRELOAD_LIBRARY ? 'build it with npm rebuild' : 'from DISKSEQD_PRELOAD_LIBRARY';
    return fail(EXIT_FAILED, `the preload library ${library} is missing (${hint})`);
  }
  const existing = process.env['LD_PRELOAD'];
  const env: NodeJS.ProcessEnv = { ...process.env, LD_PRELOAD: existing ? `${library}:${existing}` : library };
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
