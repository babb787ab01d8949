/**
 * The daemon's command-line options, declared once. config.ts parses a command line against
 * them, strictly; start.ts reads only --cache-dir from the same declaration, before the
 * rest of the daemon is loaded, to find the code cache there (src/code-cache.ts).
 */
import { parseArgs } from 'node:util';

/** The service's RuntimeDirectory= (systemd/diskseqd.service), kept until reboot. */
export const DEFAULT_RUNTIME_DIR = '/run/diskseqd';

/** The service's CacheDirectory= (systemd/diskseqd.service), kept across reboots. */
export const DEFAULT_CACHE_DIR = '/var/cache/diskseqd';

/** Every option of the command line and its kind (the --help text is in config.ts). */
export const OPTIONS = {
  socket: { type: 'string' },
  'varlink-socket': { type: 'string' },
  'no-varlink': { type: 'boolean' },
  'log-level': { type: 'string' },
  'log-format': { type: 'string' },
  'sysfs-root': { type: 'string' },
  'runtime-dir': { type: 'string' },
  'cache-dir': { type: 'string' },
  policy: { type: 'string' },
  'check-policy': { type: 'string' },
  uid: { type: 'string' },
  gid: { type: 'string' },
  groups: { type: 'string' },
  device: { type: 'string' },
  access: { type: 'string' },
  exclusive: { type: 'boolean' },
  'max-waiting': { type: 'string' },
  'max-wait-ms': { type: 'string' },
  'max-watchers': { type: 'string' },
  'max-waiting-per-uid': { type: 'string' },
  'max-watchers-per-uid': { type: 'string' },
  'max-snapshots': { type: 'string' },
  'max-snapshots-per-uid': { type: 'string' },
  'max-unreceived-fds': { type: 'string' },
  'max-unreceived-fds-per-uid': { type: 'string' },
  'max-unreceived-fds-total': { type: 'string' },
  'root-share': { type: 'string' },
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
  'device-thread-spin-us': { type: 'string' },
  help: { type: 'boolean' },
  version: { type: 'boolean' },
} as const;

/**
 * The cache directory this command line names, as config.ts will read it when the line is
 * valid. Never throws: a line config.ts rejects still gives a directory, the daemon then
 * exits with a usage error, and from that directory only a file that passes the checks of
 * src/own-file.ts was read.
 */
export function cacheDirOf(argv: string[]): string {
  const { values } = parseArgs({ args: argv, strict: false, allowPositionals: true, options: OPTIONS });
  const dir = values['cache-dir'];
  return typeof dir === 'string' && dir !== '' ? dir : DEFAULT_CACHE_DIR;
}
