/**
 * The daemon's command line: every option, its default, and the --help text that
 * describes exactly these. Parsing is strict: an unknown option or a bad value is a usage
 * error, never silently ignored.
 */
import { parseArgs } from 'node:util';
import { LOG_FORMATS, LOG_LEVELS, type LogFormat } from './log-format.js';
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
  /** --log-format; undefined: text on a terminal, json otherwise. */
  logFormat: LogFormat | undefined;
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
SOCK_SEQPACKET Unix socket. Runs as root; logs one line per record (one audit
line per request) to standard output, never blocking on it: lines that do not
fit a 4 MiB backlog are dropped and counted.

Options:
  --socket PATH            listen on PATH (default ${DEFAULT_SOCKET_PATH}); a stale
                           socket file nobody serves is replaced
  --log-level LEVEL        ${LOG_LEVELS.join(', ')} (default info; audit lines are info)
  --log-format FORMAT      json (one JSON object per line) or text (one readable
                           line per record); default text on a terminal, else json.
                           Under systemd each line starts with its syslog priority
                           (<3> error, <4> warn, <6> info), so journalctl -p works
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
      'log-format': { type: 'string' },
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
  const logFormat = values['log-format'];
  if (logFormat !== undefined && !(LOG_FORMATS as readonly string[]).includes(logFormat)) {
    throw new Error(`--log-format: expected ${LOG_FORMATS.join(' or ')}, got ${JSON.stringify(logFormat)}`);
  }
  const socketPath = values.socket ?? DEFAULT_SOCKET_PATH;
  if (socketPath === '') throw new Error('--socket: empty path');
  return {
    kind: 'run',
    config: {
      socketPath,
      policyFile: values.policy ?? DEFAULT_POLICY_FILE,
      policyFileGiven: values.policy !== undefined,
      logLevel,
      logFormat: logFormat as LogFormat | undefined,
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
      idleExitMs: values['idle-exit'] === undefined ? undefined : parseIdleExit(values['idle-exit']),
    },
  };
}

function count(text: string | undefined, option: string, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^[1-9][0-9]{0,8}$/.test(text)) throw new Error(`${option}: expected a positive whole number, got ${JSON.stringify(text)}`);
  return Number(text);
}
