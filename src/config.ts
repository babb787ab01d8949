/**
 * The daemon's command line: every option, its default, and the --help text that
 * describes exactly these. Parsing is strict: an unknown option or a bad value is a usage
 * error, never silently ignored.
 */
import { parseArgs } from 'node:util';
import { LOG_LEVELS } from './log.js';
import { DEFAULT_POLICY_FILE } from './policy/index.js';
import { parseIdleExit } from './systemd/idle-exit.js';
import { DEFAULT_SOCKET_PATH } from '../proto/contract.js';

/** The daemon's settings after parsing. */
export interface Config {
  socketPath: string;
  /** The policy file, and whether the user named it (a named file must exist). */
  policyFile: string;
  policyFileGiven: boolean;
  logLevel: string;
  sysfsRoot: string;
  maxConnections: number;
  maxConnectionsPerUid: number;
  maxInFlight: number;
  maxQueuedBytes: number;
  stallTimeoutMs: number;
  maxWaiting: number;
  maxWaitMs: number;
  maxWatchers: number;
  ueventBufferBytes: number;
  /** Device work (docs/design.md, "Hung devices"). */
  deviceStallMs: number;
  deviceTimeoutMs: number;
  maxDeviceJobsPerUid: number;
  maxDeviceThreads: number;
  deviceThreadIdleMs: number;
  /** --idle-exit: exit after this many ms with no connections and no requests; undefined = never. */
  idleExitMs: number | undefined;
}

/** What the command line asks for. */
export type Command =
  | { kind: 'run'; config: Config }
  | { kind: 'check-policy'; file: string }
  | { kind: 'help' }
  | { kind: 'version' };

export const USAGE = `Usage: diskseqd [OPTION]...
Hands out block device file descriptors by diskseq, verified on the fd, over a
SOCK_SEQPACKET Unix socket. Runs as root; logs JSON lines (one audit line per
request) to standard output.

Options:
  --socket PATH            listen on PATH (default ${DEFAULT_SOCKET_PATH}); a stale
                           socket file nobody serves is replaced
  --log-level LEVEL        ${LOG_LEVELS.join(', ')} (default info; audit lines are info)
  --policy FILE            who may open what (default ${DEFAULT_POLICY_FILE}; when
                           that file does not exist: root may open anything, everyone
                           else is denied). SIGHUP reloads it; a bad new file is logged
                           and the old policy stays in force
  --check-policy FILE      validate FILE, print what is wrong, exit 0 (valid) or 1
  --sysfs-root DIR         read block devices from DIR instead of /sys (for tests)
  --max-connections N      connections served at once (default 1024); the next one
                           gets RESOURCE_EXHAUSTED and is closed
  --max-connections-per-uid N
                           connections one non-root user may hold (default 256), so
                           that one user cannot take every connection
  --max-in-flight N        requests worked on at once per connection (default 16);
                           beyond it the connection is not read until one finishes.
                           A connection is not read either while responses wait for
                           the client to read them, so at most N fds ever wait for it
  --max-queued-bytes N     response bytes that may wait for a client before it is
                           dropped (default 4194304; a List of many devices, a watch)
  --stall-timeout-ms N     a client whose responses wait unread this long is dropped,
                           its waiting fds closed (default 10000); a slow reader is
                           slowed down, not dropped
  --max-waiting N          open requests waiting (wait_ms) for a device to appear, in
                           all (default 4096); beyond it RESOURCE_EXHAUSTED
  --max-wait-ms N          longer wait_ms values are cut to N (default 600000)
  --max-watchers N         watching connections (default 256)
  --uevent-buffer BYTES    receive buffer of the kernel uevent socket (default
                           4194304); when it overflows the daemon rescans sysfs
  --device-stall-ms N      a device job (open, close) still running after N ms
                           (default 50) marks its disk as hanging: further opens and
                           closes of that disk and its partitions wait, without a
                           thread, until that job returns
  --device-timeout-ms N    an open whose device has not answered after N ms, waiting
                           included (default 10000), is answered TIMEOUT ("did not
                           answer", os_errno ETIMEDOUT); its job is abandoned, and
                           what it opens is closed when the device wakes up
  --max-device-jobs-per-uid N
                           device jobs one user may have running (default 16),
                           counting jobs stuck on a hung device until they return;
                           more wait, and time out like the above
  --max-device-threads N   threads for device jobs (default 64, at least 3; two are
                           kept for closes). A thread blocked in the kernel on a hung
                           device cannot be stopped: it counts until the device wakes
  --device-thread-idle-ms N
                           an idle device thread exits after N ms (default 10000);
                           one always stays
  --idle-exit SECONDS      exit cleanly after SECONDS with no connections and no
                           request in flight or waiting (for socket activation)
  --help                   show this help and exit
  --version                show the version and exit

Socket activation: a listening socket passed by systemd (LISTEN_FDS) is served
instead of binding --socket, and is never removed. READY=1, STATUS= and WATCHDOG=1
go to NOTIFY_SOCKET when it is set.

Signals: SIGTERM/SIGINT finish in-flight requests, close, and remove the socket.
`;

/** Parses argv (without node and the script). Throws an Error with a usage message. */
export function parseCommandLine(argv: string[]): Command {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      socket: { type: 'string' },
      'log-level': { type: 'string' },
      'sysfs-root': { type: 'string' },
      policy: { type: 'string' },
      'check-policy': { type: 'string' },
      'max-waiting': { type: 'string' },
      'max-wait-ms': { type: 'string' },
      'max-watchers': { type: 'string' },
      'uevent-buffer': { type: 'string' },
      'max-connections': { type: 'string' },
      'max-in-flight': { type: 'string' },
      'max-queued-bytes': { type: 'string' },
      'max-connections-per-uid': { type: 'string' },
      'stall-timeout-ms': { type: 'string' },
      'idle-exit': { type: 'string' },
      'device-stall-ms': { type: 'string' },
      'device-timeout-ms': { type: 'string' },
      'max-device-jobs-per-uid': { type: 'string' },
      'max-device-threads': { type: 'string' },
      'device-thread-idle-ms': { type: 'string' },
      help: { type: 'boolean' },
      version: { type: 'boolean' },
    },
  });
  if (positionals.length > 0) throw new Error(`unexpected argument: ${positionals[0]}`);
  if (values.help) return { kind: 'help' };
  if (values.version) return { kind: 'version' };
  if (values['check-policy'] !== undefined) return { kind: 'check-policy', file: values['check-policy'] };
  const logLevel = values['log-level'] ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) throw new Error(`--log-level: unknown level ${JSON.stringify(logLevel)}`);
  const socketPath = values.socket ?? DEFAULT_SOCKET_PATH;
  if (socketPath === '') throw new Error('--socket: empty path');
  const deviceStallMs = count(values['device-stall-ms'], '--device-stall-ms', 50);
  const deviceTimeoutMs = count(values['device-timeout-ms'], '--device-timeout-ms', 10_000);
  if (deviceTimeoutMs <= deviceStallMs) throw new Error('--device-timeout-ms must be longer than --device-stall-ms');
  const maxDeviceThreads = count(values['max-device-threads'], '--max-device-threads', 64);
  if (maxDeviceThreads < 3) throw new Error('--max-device-threads: at least 3 (two are kept for closes)');
  return {
    kind: 'run',
    config: {
      socketPath,
      policyFile: values.policy ?? DEFAULT_POLICY_FILE,
      policyFileGiven: values.policy !== undefined,
      logLevel,
      sysfsRoot: values['sysfs-root'] ?? '/sys',
      maxConnections: count(values['max-connections'], '--max-connections', 1024),
      maxConnectionsPerUid: count(values['max-connections-per-uid'], '--max-connections-per-uid', 256),
      maxInFlight: count(values['max-in-flight'], '--max-in-flight', 16),
      maxQueuedBytes: count(values['max-queued-bytes'], '--max-queued-bytes', 4 * 1024 * 1024),
      stallTimeoutMs: count(values['stall-timeout-ms'], '--stall-timeout-ms', 10_000),
      maxWaiting: count(values['max-waiting'], '--max-waiting', 4096),
      maxWaitMs: count(values['max-wait-ms'], '--max-wait-ms', 600_000),
      maxWatchers: count(values['max-watchers'], '--max-watchers', 256),
      ueventBufferBytes: count(values['uevent-buffer'], '--uevent-buffer', 4 * 1024 * 1024),
      deviceStallMs,
      deviceTimeoutMs,
      maxDeviceJobsPerUid: count(values['max-device-jobs-per-uid'], '--max-device-jobs-per-uid', 16),
      maxDeviceThreads,
      deviceThreadIdleMs: count(values['device-thread-idle-ms'], '--device-thread-idle-ms', 10_000),
      idleExitMs: values['idle-exit'] === undefined ? undefined : parseIdleExit(values['idle-exit']),
    },
  };
}

function count(text: string | undefined, option: string, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^[1-9][0-9]{0,8}$/.test(text)) throw new Error(`${option}: expected a positive whole number, got ${JSON.stringify(text)}`);
  return Number(text);
}
