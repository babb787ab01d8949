/**
 * The daemon's command line: every option, its default, and the --help text that
 * describes exactly these. Parsing is strict: an unknown option or a bad value is a usage
 * error, never silently ignored.
 */
import { LOG_FORMATS, LOG_LEVELS, type LogFormat } from './log-format.js';
import { DEFAULT_POLICY_FILE } from './policy/index.js';
import { parseIdleExit } from './systemd/idle-exit.js';
import { ACCESS_MODES, DEFAULT_SOCKET_PATH, type AccessMode } from '../proto/contract.js';
import { DEFAULT_VARLINK_SOCKET_PATH } from './varlink/default-path.js';
import { DEFAULT_CACHE_DIR, DEFAULT_RUNTIME_DIR, OPTIONS, parseOptions } from './options.js';

/** The daemon's settings after parsing. */
export interface Config {
  socketPath: string;
  /** Where to serve Varlink when not socket-activated; undefined: --no-varlink. */
  varlinkSocketPath: string | undefined;
  /** The policy file, and whether the user named it (a named file must exist). */
  policyFile: string;
  policyFileGiven: boolean;
  logLevel: string;
  /** --log-format; undefined: text on a terminal, json otherwise. */
  logFormat: LogFormat | undefined;
  sysfsRoot: string;
  /** Where state that must outlive a restart (until reboot) is kept: loop partitions' provenance. */
  runtimeDir: string;
  /** Where the code cache is kept (src/code-cache.ts), across reboots. */
  cacheDir: string;
  maxConnections: number;
  maxConnectionsPerUid: number;
  maxInFlight: number;
  maxQueuedBytes: number;
  stallTimeoutMs: number;
  maxWaiting: number;
  maxWaitingPerUid: number;
  maxWaitMs: number;
  maxWatchers: number;
  maxWatchersPerUid: number;
  maxSnapshots: number;
  maxSnapshotsPerUid: number;
  maxUnreceivedFds: number;
  maxUnreceivedFdsPerUid: number;
  /** undefined: a quarter of RLIMIT_NOFILE, read at start. */
  maxUnreceivedFdsTotal: number | undefined;
  /** Percent of every shared bound that only root may use. */
  rootSharePercent: number;
  ueventBufferBytes: number;
  /** Device work (docs/design.md, "Hung devices"). */
  deviceStallMs: number;
  deviceTimeoutMs: number;
  maxDeviceJobsPerUid: number;
  maxDeviceThreads: number;
  deviceThreadIdleMs: number;
  /** The largest spin window of a device thread out of work, and of the JS thread awaiting results, µs (0: never). */
  deviceThreadSpinUs: number;
  /** --idle-exit: exit after this many ms with no connections and no requests; undefined = never. */
  idleExitMs: number | undefined;
}

/**
 * The policy dry run's question, as given (names are resolved against the account files
 * when it runs): would this peer get this device with this access, and by which rule?
 */
export interface DryRunQuestion {
  /** --uid: a user id or name. */
  uid: string;
  /** --gid: a group id or name; undefined: the user's primary group from /etc/passwd. */
  gid: string | undefined;
  /** --groups: comma-separated ids or names ('' = none); undefined: the user's groups from /etc/group. */
  groups: string | undefined;
  diskseq: bigint;
  partition: number;
  access: AccessMode;
  exclusive: boolean;
}

/** What the command line asks for. */
export type Command =
  | { kind: 'run'; config: Config }
  | { kind: 'check-policy'; file: string; sysfsRoot: string; dryRun: DryRunQuestion | undefined }
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
  --varlink-socket PATH    also serve systemd's io.systemd.StorageProvider over
                           Varlink on PATH (default ${DEFAULT_VARLINK_SOCKET_PATH});
                           its directory is created, a stale socket file replaced;
                           a path a live process serves is left alone and the daemon
                           runs without Varlink
  --no-varlink             do not serve Varlink (not even a socket systemd passed)
  --log-level LEVEL        ${LOG_LEVELS.join(', ')} (default info; audit lines are info)
  --log-format FORMAT      json (one JSON object per line) or text (one readable
                           line per record); default text on a terminal, else json.
                           Under systemd each line starts with its syslog priority
                           (<3> error, <4> warn, <6> info), so journalctl -p works
  --policy FILE            who may open what (default ${DEFAULT_POLICY_FILE}; when
                           that file does not exist: root may open anything, everyone
                           else is denied). SIGHUP reloads it; a bad new file is logged
                           and the old policy stays in force
  --check-policy FILE      validate FILE, print what is wrong (and, as warnings,
                           rules that can never take effect), exit 0 (valid) or 1
  --check-policy FILE --uid USER [--gid GROUP] [--groups G,...]
                 --device DISKSEQ[-partM] --access MODE [--exclusive]
                           dry run: would USER get that device, read from this
                           system's sysfs, with MODE (read-only, read-write,
                           write-only), and by which rule? Prints the decision, the
                           deciding rule and why earlier rules were passed over. GROUP
                           defaults to USER's primary group (/etc/passwd), the groups
                           to USER's groups in /etc/group. Exit status: 0 allowed,
                           1 FILE is invalid, 2 usage error, 3 denied, 4 the daemon
                           would not serve that device (absent, or a partition of a
                           loop device without LO_FLAGS_PARTSCAN)
  --sysfs-root DIR         read block devices from DIR instead of /sys (for tests)
  --runtime-dir DIR        keep what must survive a restart or idle exit until reboot
                           (which disk instance each loop partition was added to) in
                           DIR (default ${DEFAULT_RUNTIME_DIR}; created 0700; refused unless
                           owned by root and writable by nobody else)
  --cache-dir DIR          keep the daemon's compiled code (a V8 code cache, written by
                           the first start after an upgrade of diskseqd or Node) in DIR
                           (default ${DEFAULT_CACHE_DIR}; created 0700; not used unless
                           owned by root and writable by nobody else). Safe to remove
  --max-connections N      connections served at once (default 1024); the next one
                           gets RESOURCE_EXHAUSTED and is closed
  --max-connections-per-uid N
                           connections one non-root user may hold (default 256), so
                           that one user cannot take every connection
  --max-in-flight N        requests worked on at once per connection (default 16);
                           beyond it the connection is not read until one finishes.
                           Nor is it read while responses wait in the daemon for the
                           client to read them (at most N fds wait there for it), or
                           while it may not be sent another fd (see below)
  --max-queued-bytes N     response bytes that may wait for a client before it is
                           dropped (default 4194304; a List of many devices, a watch)
  --stall-timeout-ms N     a client whose responses wait unread this long is dropped,
                           its waiting fds closed (default 10000); a slow reader is
                           slowed down, not dropped
  --max-unreceived-fds N   fds sent to one connection (either socket) that its client
                           has not received yet (default 16). The kernel keeps such fds in the client's
                           socket, charged to the daemon: past its RLIMIT_NOFILE no fd
                           can be sent to anyone. At the bound the daemon sends no fd
                           and reads no request on that connection until the client
                           receives some; a dropped client's socket stays open (shut
                           down) and counted until it receives or closes them
  --max-unreceived-fds-per-uid N
                           the same, all connections of one non-root user, both
                           sockets together (default 256)
  --max-unreceived-fds-total N
                           the same, everyone (default: a quarter of the daemon's
                           RLIMIT_NOFILE when it starts)
  --max-waiting N          open requests waiting (wait_ms) for a device to appear, in
                           all (default 4096); beyond it RESOURCE_EXHAUSTED. Only a
                           user some allow rule's "peer" matches may wait at all; any
                           other gets PERMISSION_DENIED
  --max-waiting-per-uid N  the same, one non-root user (default 1024)
  --max-wait-ms N          longer wait_ms values are cut to N (default 600000)
  --max-watchers N         watching connections (default 256); beyond it
                           RESOURCE_EXHAUSTED
  --max-watchers-per-uid N the same, one non-root user (default 64)
  --max-snapshots N        List requests and Watch snapshots being answered at once
                           (default 32); more wait their turn, in order
  --max-snapshots-per-uid N
                           the same, one non-root user (default 4)
  --root-share PERCENT     of every bound above that is shared between users (not the
                           per-connection ones), the percentage non-root users
                           together can never take: it is kept for root (default 25;
                           0 to 99)
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
  --device-thread-spin-us N
                           a device thread out of work looks for the next job for
                           up to N us before it sleeps, and the main thread waits
                           as long for outstanding results, while they come that
                           often (default 500; 0: never): no wake-up for either
  --idle-exit SECONDS      exit cleanly after SECONDS with no connections and no
                           request in flight or waiting (for socket activation)
  --help                   show this help and exit
  --version                show the version and exit

Socket activation: listening sockets passed by systemd (LISTEN_FDS, told apart by
LISTEN_FDNAMES "seqpacket" and "varlink", else by their type) are served instead of
binding --socket, and are never removed; Varlink is then served only if systemd
passed its socket. READY=1, STATUS= and WATCHDOG=1
go to NOTIFY_SOCKET when it is set.

Signals: SIGTERM/SIGINT finish in-flight requests, close, and remove the socket.

Exit status: 0 after a clean shutdown; 1 on a startup failure (not root, a bad
policy file, the socket in use); 2 on a usage error.
`;


/** The options of the policy dry run; only valid with --check-policy. */
const DRY_RUN_OPTIONS = ['uid', 'gid', 'groups', 'device', 'access', 'exclusive'] as const;

/**
 * Rejects, in our own words, what node:util's strict parseArgs would reject with Node's
 * text (which talks about positional arguments): an unknown option, a missing value, a
 * value for a flag. What passes, parseOptions reads as parseArgs would.
 */
function checkOptionSyntax(argv: string[]): void {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') return;
    if (!arg.startsWith('-') || arg === '-') continue;
    const eq = arg.indexOf('=');
    const name = arg.startsWith('--') ? arg.slice(2, eq < 0 ? undefined : eq) : '';
    const spec = Object.hasOwn(OPTIONS, name) ? OPTIONS[name as keyof typeof OPTIONS] : undefined;
    const shown = eq < 0 ? arg : arg.slice(0, eq);
    if (spec === undefined) throw new Error(`unknown option ${shown}`);
    if (spec.type === 'boolean' && eq >= 0) throw new Error(`option ${shown} takes no value`);
    if (spec.type === 'string' && eq < 0) {
      const value = argv[++i];
      if (value === undefined) throw new Error(`option ${shown} needs a value`);
      if (value.startsWith('-')) throw new Error(`option ${shown} needs a value (write ${shown}=${value} for one that starts with -)`);
    }
  }
}


/** Parses argv (without node and the script). Throws an Error with a usage message. */
export function parseCommandLine(argv: string[]): Command {
  checkOptionSyntax(argv);
  const { values, positionals } = parseOptions(argv);
  if (positionals.length > 0) throw new Error(`unexpected argument: ${positionals[0]}`);
  if (values.help) return { kind: 'help' };
  if (values.version) return { kind: 'version' };
  const dryRunOptions = DRY_RUN_OPTIONS.filter((name) => values[name] !== undefined);
  if (values['check-policy'] !== undefined) {
    return {
      kind: 'check-policy', file: values['check-policy'], sysfsRoot: values['sysfs-root'] ?? '/sys',
      dryRun: dryRunOptions.length === 0 ? undefined : dryRunQuestion(values),
    };
  }
  if (dryRunOptions.length > 0) throw new Error(`--${dryRunOptions[0]} is only valid with --check-policy FILE (the policy dry run)`);
  const logLevel = values['log-level'] ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) throw new Error(`--log-level: unknown level ${JSON.stringify(logLevel)}`);
  const logFormat = values['log-format'];
  if (logFormat !== undefined && !(LOG_FORMATS as readonly string[]).includes(logFormat)) {
    throw new Error(`--log-format: expected ${LOG_FORMATS.join(' or ')}, got ${JSON.stringify(logFormat)}`);
  }
  const socketPath = values.socket ?? DEFAULT_SOCKET_PATH;
  if (socketPath === '') throw new Error('--socket: empty path');
  if (values['no-varlink'] && values['varlink-socket'] !== undefined) throw new Error('--no-varlink and --varlink-socket exclude each other');
  const varlinkSocketPath = values['no-varlink'] ? undefined : values['varlink-socket'] ?? DEFAULT_VARLINK_SOCKET_PATH;
  if (varlinkSocketPath === '') throw new Error('--varlink-socket: empty path');
  const runtimeDir = values['runtime-dir'] ?? DEFAULT_RUNTIME_DIR;
  if (runtimeDir === '') throw new Error('--runtime-dir: empty path');
  const cacheDir = values['cache-dir'] ?? DEFAULT_CACHE_DIR;
  if (cacheDir === '') throw new Error('--cache-dir: empty path');
  const deviceStallMs = count(values['device-stall-ms'], '--device-stall-ms', 50);
  const deviceTimeoutMs = count(values['device-timeout-ms'], '--device-timeout-ms', 10_000);
  if (deviceTimeoutMs <= deviceStallMs) throw new Error('--device-timeout-ms must be longer than --device-stall-ms');
  const maxDeviceThreads = count(values['max-device-threads'], '--max-device-threads', 64);
  if (maxDeviceThreads < 3) throw new Error('--max-device-threads: at least 3 (two are kept for closes)');
  const deviceThreadSpinUs = upTo(values['device-thread-spin-us'], '--device-thread-spin-us', 500, 100_000); // 0: never spin
  return {
    kind: 'run',
    config: {
      socketPath,
      varlinkSocketPath,
      policyFile: values.policy ?? DEFAULT_POLICY_FILE,
      policyFileGiven: values.policy !== undefined,
      logLevel,
      logFormat: logFormat as LogFormat | undefined,
      sysfsRoot: values['sysfs-root'] ?? '/sys',
      runtimeDir,
      cacheDir,
      maxConnections: count(values['max-connections'], '--max-connections', 1024),
      maxConnectionsPerUid: count(values['max-connections-per-uid'], '--max-connections-per-uid', 256),
      maxInFlight: count(values['max-in-flight'], '--max-in-flight', 16),
      maxQueuedBytes: count(values['max-queued-bytes'], '--max-queued-bytes', 4 * 1024 * 1024),
      stallTimeoutMs: count(values['stall-timeout-ms'], '--stall-timeout-ms', 10_000),
      maxWaiting: count(values['max-waiting'], '--max-waiting', 4096),
      maxWaitingPerUid: count(values['max-waiting-per-uid'], '--max-waiting-per-uid', 1024),
      maxWaitMs: count(values['max-wait-ms'], '--max-wait-ms', 600_000),
      maxWatchers: count(values['max-watchers'], '--max-watchers', 256),
      maxWatchersPerUid: count(values['max-watchers-per-uid'], '--max-watchers-per-uid', 64),
      maxSnapshots: count(values['max-snapshots'], '--max-snapshots', 32),
      maxSnapshotsPerUid: count(values['max-snapshots-per-uid'], '--max-snapshots-per-uid', 4),
      maxUnreceivedFds: count(values['max-unreceived-fds'], '--max-unreceived-fds', 16),
      maxUnreceivedFdsPerUid: count(values['max-unreceived-fds-per-uid'], '--max-unreceived-fds-per-uid', 256),
      maxUnreceivedFdsTotal: values['max-unreceived-fds-total'] === undefined ? undefined
        : count(values['max-unreceived-fds-total'], '--max-unreceived-fds-total', 0),
      rootSharePercent: percent(values['root-share'], '--root-share', 25),
      ueventBufferBytes: count(values['uevent-buffer'], '--uevent-buffer', 4 * 1024 * 1024),
      deviceStallMs,
      deviceTimeoutMs,
      maxDeviceJobsPerUid: count(values['max-device-jobs-per-uid'], '--max-device-jobs-per-uid', 16),
      maxDeviceThreads,
      deviceThreadIdleMs: count(values['device-thread-idle-ms'], '--device-thread-idle-ms', 10_000),
      deviceThreadSpinUs,
      idleExitMs: values['idle-exit'] === undefined ? undefined : parseIdleExit(values['idle-exit']),
    },
  };
}

/** The dry run's options, checked: --uid, --device and --access are required. */
function dryRunQuestion(values: { [K in (typeof DRY_RUN_OPTIONS)[number]]?: string | boolean }): DryRunQuestion {
  const text = (name: 'uid' | 'gid' | 'groups' | 'device' | 'access'): string | undefined => values[name] as string | undefined;
  for (const required of ['uid', 'device', 'access'] as const) {
    if (text(required) === undefined) throw new Error(`the policy dry run needs --${required} (--uid USER --device DISKSEQ[-partM] --access MODE)`);
  }
  const uid = text('uid')!;
  if (uid === '') throw new Error('--uid: empty user');
  const device = /^([1-9][0-9]{0,19})(?:(?:-part|p)([1-9][0-9]{0,9}))?$/.exec(text('device')!);
  const diskseq = device === null ? 0n : BigInt(device[1]!);
  const partition = device?.[2] === undefined ? 0 : Number(device[2]);
  if (device === null || diskseq >= 1n << 64n || partition > 0xffff_ffff) {
    throw new Error(`--device: expected DISKSEQ or DISKSEQ-partM (as in /dev/disk/by-diskseq/), got ${JSON.stringify(text('device'))}`);
  }
  const access = text('access')!;
  if (!(ACCESS_MODES as readonly string[]).includes(access)) {
    throw new Error(`--access: expected ${ACCESS_MODES.join(', ')}, got ${JSON.stringify(access)}`);
  }
  return { uid, gid: text('gid'), groups: text('groups'), diskseq, partition, access: access as AccessMode, exclusive: values.exclusive === true };
}

/** A whole number from 0 to `max`. */
function upTo(text: string | undefined, option: string, fallback: number, max: number): number {
  if (text === undefined) return fallback;
  if (!/^(0|[1-9][0-9]{0,8})$/.test(text) || Number(text) > max) {
    throw new Error(`${option}: expected a whole number, at most ${max}, got ${JSON.stringify(text)}`);
  }
  return Number(text);
}

/** A whole percentage below 100 (0 allowed). */
function percent(text: string | undefined, option: string, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^[0-9]{1,2}$/.test(text)) throw new Error(`${option}: expected a whole number from 0 to 99, got ${JSON.stringify(text)}`);
  return Number(text);
}

/**
 * The shared bound on unreceived fds when --max-unreceived-fds-total is not given: a
 * quarter of RLIMIT_NOFILE, since the kernel counts every fd the daemon's user has in
 * flight — this daemon's and any other process's of the same user — against that limit.
 */
export function defaultUnreceivedFdsTotal(openFileLimit: number): number {
  return Number.isFinite(openFileLimit) ? Math.max(1, Math.floor(openFileLimit / 4)) : 1 << 20;
}

function count(text: string | undefined, option: string, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^[1-9][0-9]{0,8}$/.test(text)) throw new Error(`${option}: expected a positive whole number, got ${JSON.stringify(text)}`);
  return Number(text);
}
