/**
 * Command-line parsing of diskseq-open: a pure function from argv to what to do.
 *
 * Options come only before DEVICE (or before `--` in --preload mode); everything after
 * `--` is COMMAND and its ARGs, untouched. Valued options take `--opt VALUE` or
 * `--opt=VALUE`. Anything not understood is a UsageError (exit status 2).
 */
import type { AccessMode } from './open-request.js';
import { parseDeviceSpec, type DeviceSpec } from './device-spec.js';

/** A command line that diskseq-open cannot run; the message is the one line to print. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Open DEVICE and run COMMAND with the fd. */
export interface OpenCommand {
  kind: 'open';
  /** DEVICE as the user wrote it (for messages). */
  deviceText: string;
  device: DeviceSpec;
  access: AccessMode;
  exclusive: boolean;
  direct: boolean;
  sync: boolean;
  dsync: boolean;
  waitMs: number;
  expect: Record<string, string>;
  /** The fd number COMMAND gets the device at (>= 3). */
  fd: number;
  socketPath?: string;
  /** COMMAND and its ARGs, `{}` not yet substituted. */
  command: string[];
}

/** What a command line asks for. */
export type CliCommand =
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'list'; json: boolean; socketPath?: string }
  | { kind: 'watch'; socketPath?: string }
  | { kind: 'status'; json: boolean; socketPath?: string }
  | { kind: 'preload'; socketPath?: string; command: string[] }
  | OpenCommand;

/** The highest --fd accepted: the child's fd table must fit the default RLIMIT_NOFILE. */
export const MAX_TARGET_FD = 1023;
const UINT32_MAX = 0xffff_ffff;

const FLAGS = new Set(['--help', '--version', '--list', '--json', '--watch', '--preload', '--status', '--rw', '--wo',
  '--exclusive', '--direct', '--sync', '--dsync']);
const VALUED = new Set(['--wait', '--fd', '--socket', '--expect']);
/** Options that only make sense when opening a DEVICE. */
const OPEN_ONLY = ['--rw', '--wo', '--exclusive', '--direct', '--sync', '--dsync', '--wait', '--fd', '--expect'];

/** Parses diskseq-open's arguments (without `node` and the script). Throws UsageError. */
export function parseCliArgs(argv: readonly string[]): CliCommand {
  const flags = new Set<string>();
  const values = new Map<string, string>();
  const expect: Record<string, string> = {};
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--' || !arg.startsWith('-')) break;
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(0, eq) : arg;
    if (FLAGS.has(name)) {
      if (eq >= 0) throw new UsageError(`option ${name} takes no value`);
      if (flags.has(name)) throw new UsageError(`option ${name} given twice`);
      flags.add(name);
    } else if (VALUED.has(name)) {
      let value: string;
      if (eq >= 0) value = arg.slice(eq + 1);
      else if (i + 1 < argv.length) value = argv[++i]!;
      else throw new UsageError(`option ${name} needs a value`);
      if (value === '') throw new UsageError(`option ${name} needs a non-empty value`);
      if (name === '--expect') addExpect(expect, value);
      else if (values.has(name)) throw new UsageError(`option ${name} given twice`);
      else values.set(name, value);
    } else {
      throw new UsageError(`unknown option ${JSON.stringify(name)}`);
    }
  }
  if (flags.has('--help')) return { kind: 'help' };
  if (flags.has('--version')) return { kind: 'version' };

  const used = [...flags, ...values.keys(), ...(Object.keys(expect).length > 0 ? ['--expect'] : [])];
  const modes = ['--list', '--watch', '--preload', '--status'].filter((mode) => flags.has(mode));
  if (modes.length > 1) throw new UsageError(`${modes.join(' and ')} cannot be combined`);
  const mode = modes[0];
  if (flags.has('--json') && mode !== '--list' && mode !== '--status') throw new UsageError('--json is only valid with --list or --status');
  const socketPath = values.get('--socket');
  if (mode !== undefined) {
    const misplaced = used.find((option) => OPEN_ONLY.includes(option));
    if (misplaced !== undefined) throw new UsageError(`${misplaced} cannot be used with ${mode}`);
  }
  const rest = argv.slice(i);

  if (mode === '--status') {
    if (rest.length > 0) throw new UsageError(`--status takes no arguments (got ${JSON.stringify(rest[0])})`);
    return { kind: 'status', json: flags.has('--json'), socketPath };
  }
  if (mode === '--list' || mode === '--watch') {
    if (rest.length > 0) throw new UsageError(`${mode} takes no arguments (got ${JSON.stringify(rest[0])})`);
    return mode === '--list' ? { kind: 'list', json: flags.has('--json'), socketPath } : { kind: 'watch', socketPath };
  }
  if (mode === '--preload') {
    if (rest[0] !== '--') throw new UsageError('--preload needs -- COMMAND [ARG...]');
    return { kind: 'preload', socketPath, command: requireCommand(rest.slice(1)) };
  }

  if (rest.length === 0 || rest[0] === '--') throw new UsageError('missing DEVICE (try --help)');
  const deviceText = rest[0]!;
  let device: DeviceSpec;
  try {
    device = parseDeviceSpec(deviceText);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (rest.length < 2) throw new UsageError('missing -- COMMAND after DEVICE');
  if (rest[1] !== '--') throw new UsageError(`expected -- after DEVICE, got ${JSON.stringify(rest[1])} (options go before DEVICE)`);
  if (flags.has('--rw') && flags.has('--wo')) throw new UsageError('--rw and --wo cannot be combined');
  return {
    kind: 'open',
    deviceText,
    device,
    access: flags.has('--rw') ? 'read-write' : flags.has('--wo') ? 'write-only' : 'read-only',
    exclusive: flags.has('--exclusive'),
    direct: flags.has('--direct'),
    sync: flags.has('--sync'),
    dsync: flags.has('--dsync'),
    waitMs: parseWait(values.get('--wait')),
    expect,
    fd: parseTargetFd(values.get('--fd')),
    socketPath,
    command: requireCommand(rest.slice(2)),
  };
}

function requireCommand(command: string[]): string[] {
  if (command.length === 0 || command[0] === '') throw new UsageError('missing COMMAND after --');
  return command;
}

/** --wait SEC: a non-negative decimal number of seconds, to whole milliseconds. */
function parseWait(text: string | undefined): number {
  if (text === undefined) return 0;
  if (!/^[0-9]+(\.[0-9]+)?$/.test(text)) throw new UsageError(`--wait needs a number of seconds, got ${JSON.stringify(text)}`);
  const ms = Math.round(Number(text) * 1000);
  if (!Number.isSafeInteger(ms) || ms > UINT32_MAX) throw new UsageError(`--wait ${text} is too long (at most ${Math.floor(UINT32_MAX / 1000)} s)`);
  return ms;
}

/** --fd N: 3 .. MAX_TARGET_FD (0, 1 and 2 are COMMAND's stdin, stdout and stderr). */
function parseTargetFd(text: string | undefined): number {
  if (text === undefined) return 3;
  if (!/^[1-9][0-9]*$/.test(text) || Number(text) < 3 || Number(text) > MAX_TARGET_FD) {
    throw new UsageError(`--fd needs a number from 3 to ${MAX_TARGET_FD}, got ${JSON.stringify(text)}`);
  }
  return Number(text);
}

/** --expect KEY=VALUE (repeatable). The daemon checks KEY against its allow-list. */
function addExpect(expect: Record<string, string>, text: string): void {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new UsageError(`--expect needs KEY=VALUE, got ${JSON.stringify(text)}`);
  const key = text.slice(0, eq);
  if (Object.hasOwn(expect, key)) throw new UsageError(`--expect ${key} given twice`);
  expect[key] = text.slice(eq + 1);
}

/** Replaces every `{}` in each ARG (not in COMMAND itself) with /dev/fd/N. */
export function substituteFd(command: readonly string[], fd: number): string[] {
  return command.map((arg, index) => (index === 0 ? arg : arg.replaceAll('{}', `/dev/fd/${fd}`)));
}
