/**
 * The daemon's command-line options, declared once, and their parser. config.ts parses a
 * command line against them, strictly; start.ts reads only --cache-dir from the same
 * declaration, before the rest of the daemon is loaded, to find the code cache there
 * (src/code-cache.ts).
 */

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
  const dir = parseOptions(argv).values['cache-dir'];
  return typeof dir === 'string' && dir !== '' ? dir : DEFAULT_CACHE_DIR;
}

/** An option's name. */
export type OptionName = keyof typeof OPTIONS;

/** The values of a command line: a string option's text, a flag's true; the last of a repeated one. */
export type OptionValues = { -readonly [K in OptionName]?: (typeof OPTIONS)[K]['type'] extends 'string' ? string : boolean };

/**
 * Reads argv against OPTIONS: `--name=value` and `--name value` for a string option (the
 * next argument, whatever it is), `--name` for a flag, positionals, and after `--`
 * positionals only. For a line that config.ts's syntax check passed, this is what
 * node:util's parseArgs({ strict: true, allowPositionals: true }) returns. Not parseArgs
 * itself: its first call compiles Node's own parser, ~0.8 ms of every start. Never throws:
 * an unknown option, or a string option at the end of the line, is left out.
 */
export function parseOptions(argv: readonly string[]): { values: OptionValues; positionals: string[] } {
  const values: Record<string, string | boolean> = {};
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('--')) {
      if (!arg.startsWith('-') || arg === '-') positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    if (!Object.hasOwn(OPTIONS, name)) continue;
    if (OPTIONS[name as OptionName].type === 'boolean') {
      values[name] = true;
    } else if (eq >= 0) {
      values[name] = arg.slice(eq + 1);
    } else if (i + 1 < argv.length) {
      values[name] = argv[++i]!;
    }
  }
  return { values: values as OptionValues, positionals };
}
