/**
 * Command-line parsing of diskseq-open: a function from argv to what to do. Its one look
 * outside — which disk a kernel name stands for now, for the message that refuses one —
 * is passed in.
 *
 * Everything after `--` is COMMAND and its ARGs, untouched. Before it come long options
 * (`--opt VALUE` or `--opt=VALUE`), short ones (`-w`, bundled `-wx`, `-o LIST` or
 * `-oLIST`), and DEVICEs. The options of a DEVICE come before it and apply to it alone, so
 * several DEVICEs each have their own access and fd; `--socket` and the mode options go
 * anywhere before `--`. Anything not understood is a UsageError.
 */
import type { AccessMode } from './open-request.js';
import { parseDeviceSpec, type DeviceSpec } from './device-spec.js';
import { DEFAULT_COLUMNS, DEFAULT_JSON_COLUMNS, parseColumns } from './list-format.js';

/** A command line that diskseq-open cannot run; the message is the one line to print. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
  /** True when the command line asked for a mode without COMMAND (--list, --watch), whose failures exit 1. */
  query = false;
}

/** One DEVICE of the open form, with its own options. */
export interface DeviceRequest {
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
  /** The fd number COMMAND gets this device at (>= 3). */
  fd: number;
}

/** Open every DEVICE and run COMMAND with the fds. */
export interface OpenCommand {
  kind: 'open';
  /** In command-line order; at least one. */
  devices: DeviceRequest[];
  socketPath?: string;
  /** COMMAND and its ARGs, `{}` not yet substituted. */
  command: string[];
}

/** List devices, like lsblk. */
export interface ListCommand {
  kind: 'list';
  json: boolean;
  bytes: boolean;
  noHeadings: boolean;
  /** Column names (list-format.ts COLUMNS). */
  columns: string[];
  /** DEVICE forms, kernel names, device paths or backing files; none: everything. */
  filters: string[];
  socketPath?: string;
}

/** What a command line asks for. */
export type CliCommand =
  | { kind: 'help' }
  | { kind: 'version' }
  | ListCommand
  | { kind: 'watch'; socketPath?: string }
  | { kind: 'status'; json: boolean; socketPath?: string }
  | { kind: 'preload'; socketPath?: string; command: string[] }
  | OpenCommand;

/** Outside knowledge the parser may use for its messages. */
export interface ParseContext {
  /** A hint for a DEVICE that is a kernel name or device path: which diskseq it has now. */
  nameHint?(text: string): string | undefined;
}

/** The highest fd number accepted: the child's fd table must fit the default RLIMIT_NOFILE. */
export const MAX_TARGET_FD = 1023;
const UINT32_MAX = 0xffff_ffff;

type Scope = 'mode' | 'global' | 'list' | 'device';

interface OptionSpec {
  long: string;
  short?: string;
  valued: boolean;
  scope: Scope;
}

/** Every option. `mode` options choose what to do; `device` options apply to the next DEVICE. */
export const OPTIONS: readonly OptionSpec[] = [
  { long: '--help', short: 'h', valued: false, scope: 'mode' },
  { long: '--version', short: 'V', valued: false, scope: 'mode' },
  { long: '--list', short: 'l', valued: false, scope: 'mode' },
  { long: '--watch', valued: false, scope: 'mode' },
  { long: '--status', valued: false, scope: 'mode' },
  { long: '--preload', valued: false, scope: 'mode' },
  { long: '--socket', valued: true, scope: 'global' },
  { long: '--json', short: 'J', valued: false, scope: 'list' },
  { long: '--bytes', short: 'b', valued: false, scope: 'list' },
  { long: '--noheadings', short: 'n', valued: false, scope: 'list' },
  { long: '--output', short: 'o', valued: true, scope: 'list' },
  { long: '--rw', short: 'w', valued: false, scope: 'device' },
  { long: '--wo', valued: false, scope: 'device' },
  { long: '--exclusive', short: 'x', valued: false, scope: 'device' },
  { long: '--direct', valued: false, scope: 'device' },
  { long: '--sync', valued: false, scope: 'device' },
  { long: '--dsync', valued: false, scope: 'device' },
  { long: '--wait', valued: true, scope: 'device' },
  { long: '--expect', short: 'e', valued: true, scope: 'device' },
  { long: '--fd', valued: true, scope: 'device' },
];

/** The modes without COMMAND: their failures, usage errors included, exit 1 instead of 125. */
export const QUERY_MODES: readonly string[] = ['--list', '--watch', '--status'];

const BY_LONG = new Map(OPTIONS.map((spec) => [spec.long, spec]));
const BY_SHORT = new Map(OPTIONS.filter((spec) => spec.short !== undefined).map((spec) => [spec.short!, spec]));

type OptionToken = { kind: 'option'; spec: OptionSpec; value?: string };
type Token = OptionToken | { kind: 'word'; text: string };

/** Parses diskseq-open's arguments (without `node` and the script). Throws UsageError. */
export function parseCliArgs(argv: readonly string[], context: ParseContext = {}): CliCommand {
  try {
    return parse(argv, context);
  } catch (error) {
    if (error instanceof UsageError) error.query = asksForQueryMode(argv);
    throw error;
  }
}

/** Whether a command line (even one that does not parse) names a query mode (--list, --watch, --status) before any `--`. */
export function asksForQueryMode(argv: readonly string[]): boolean {
  for (const arg of argv) {
    if (arg === '--') return false;
    if (arg.startsWith('--')) {
      if (QUERY_MODES.includes(arg.split('=')[0]!)) return true;
    } else if (arg.startsWith('-')) {
      const shorts = QUERY_MODES.map((long) => BY_LONG.get(long)?.short).filter((s) => s !== undefined);
      // Only the flags before a valued option's value count (-ol is -o with the value "l").
      for (const c of arg.slice(1)) {
        if (shorts.includes(c)) return true;
        if (BY_SHORT.get(c)?.valued !== false) break;
      }
    }
  }
  return false;
}

function parse(argv: readonly string[], context: ParseContext): CliCommand {
  const { tokens, command } = tokenize(argv);
  const modes = new Set(tokens.flatMap((t) => (t.kind === 'option' && t.spec.scope === 'mode' ? [t.spec.long] : [])));
  if (modes.has('--help')) return { kind: 'help' };
  if (modes.has('--version')) return { kind: 'version' };
  const chosen = ['--list', '--watch', '--status', '--preload'].filter((mode) => modes.has(mode));
  if (chosen.length > 1) throw new UsageError(`${chosen.join(' and ')} cannot be combined`);
  const mode = chosen[0];
  for (const token of tokens) {
    if (token.kind !== 'option' || token.spec.scope === 'mode' || token.spec.scope === 'global') continue;
    if (token.spec.scope === 'list' && mode !== '--list' && !(mode === '--status' && token.spec.long === '--json')) {
      throw new UsageError(token.spec.long === '--json' ? '--json is only valid with --list or --status' : `${token.spec.long} is only valid with --list`);
    }
    if (token.spec.scope === 'device' && mode !== undefined) throw new UsageError(`${token.spec.long} cannot be used with ${mode}`);
  }
  const repeated = findRepeated(tokens, (spec) => spec.scope !== 'device');
  if (repeated !== undefined) throw new UsageError(`option ${repeated} given twice`);
  const socketPath = optionValue(tokens, '--socket');
  const words = tokens.flatMap((t) => (t.kind === 'word' ? [t.text] : []));

  if (mode === '--list') {
    if (command !== undefined) throw new UsageError('--list takes no COMMAND (nothing goes after --)');
    return listCommand(tokens, words, socketPath);
  }
  if (mode === '--watch') {
    if (words.length > 0 || command !== undefined) throw new UsageError(`--watch takes no arguments (got ${JSON.stringify(words[0] ?? '--')})`);
    return { kind: 'watch', socketPath };
  }
  if (mode === '--status') {
    if (words.length > 0 || command !== undefined) throw new UsageError(`--status takes no arguments (got ${JSON.stringify(words[0] ?? '--')})`);
    return { kind: 'status', json: hasFlag(tokens, '--json'), socketPath };
  }
  if (mode === '--preload') {
    if (words.length > 0) throw new UsageError(`--preload takes no DEVICE (got ${JSON.stringify(words[0])}); the shim opens COMMAND's /dev/disk/by-diskseq paths`);
    if (command === undefined) throw new UsageError('--preload needs -- COMMAND [ARG...]');
    return { kind: 'preload', socketPath, command: requireCommand(command) };
  }
  return openCommand(tokens, command, socketPath, context);
}

/** Splits the words before `--` into options and other words; `command` is what follows `--`. */
function tokenize(argv: readonly string[]): { tokens: Token[]; command?: string[] } {
  const tokens: Token[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') return { tokens, command: argv.slice(i + 1) };
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq >= 0 ? arg.slice(0, eq) : arg;
      const spec = BY_LONG.get(name);
      if (spec === undefined) throw new UsageError(`unknown option ${JSON.stringify(name)}`);
      if (!spec.valued) {
        if (eq >= 0) throw new UsageError(`option ${name} takes no value`);
        tokens.push({ kind: 'option', spec });
        continue;
      }
      let value: string;
      if (eq >= 0) value = arg.slice(eq + 1);
      else if (i + 1 < argv.length) value = argv[++i]!;
      else throw new UsageError(`option ${name} needs a value`);
      tokens.push({ kind: 'option', spec, value: nonEmpty(name, value) });
    } else if (arg.startsWith('-') && arg.length > 1) {
      // A cluster of short options: flags, then at most one valued option, which takes the
      // rest of the word or the next word.
      for (let j = 1; j < arg.length; j++) {
        const spec = BY_SHORT.get(arg[j]!);
        if (spec === undefined) throw new UsageError(`unknown option ${JSON.stringify(`-${arg[j]}`)}`);
        if (!spec.valued) {
          tokens.push({ kind: 'option', spec });
          continue;
        }
        let value: string;
        if (j + 1 < arg.length) value = arg.slice(j + 1);
        else if (i + 1 < argv.length) value = argv[++i]!;
        else throw new UsageError(`option -${arg[j]} (${spec.long}) needs a value`);
        tokens.push({ kind: 'option', spec, value: nonEmpty(spec.long, value) });
        break;
      }
    } else {
      tokens.push({ kind: 'word', text: arg });
    }
  }
  return { tokens };
}

function nonEmpty(name: string, value: string): string {
  if (value === '') throw new UsageError(`option ${name} needs a non-empty value`);
  return value;
}

/** The first option `counts` that appears twice. */
function findRepeated(tokens: readonly Token[], counts: (spec: OptionSpec) => boolean): string | undefined {
  const seen = new Set<string>();
  for (const token of tokens) {
    if (token.kind !== 'option' || !counts(token.spec)) continue;
    if (seen.has(token.spec.long)) return token.spec.long;
    seen.add(token.spec.long);
  }
  return undefined;
}

function optionValue(tokens: readonly Token[], long: string): string | undefined {
  for (const token of tokens) if (token.kind === 'option' && token.spec.long === long) return token.value;
  return undefined;
}

function hasFlag(tokens: readonly Token[], long: string): boolean {
  return tokens.some((token) => token.kind === 'option' && token.spec.long === long);
}

function listCommand(tokens: readonly Token[], filters: string[], socketPath: string | undefined): ListCommand {
  const output = optionValue(tokens, '--output');
  const json = hasFlag(tokens, '--json');
  const defaults = json ? DEFAULT_JSON_COLUMNS : DEFAULT_COLUMNS;
  let columns = [...defaults];
  if (output !== undefined) {
    try {
      columns = parseColumns(output, defaults);
    } catch (error) {
      throw new UsageError(`--output: ${(error as Error).message}`);
    }
  }
  return {
    kind: 'list', json, bytes: hasFlag(tokens, '--bytes'), noHeadings: hasFlag(tokens, '--noheadings'),
    columns, filters, socketPath,
  };
}

function openCommand(tokens: readonly Token[], command: string[] | undefined, socketPath: string | undefined, context: ParseContext): OpenCommand {
  const devices: Array<Omit<DeviceRequest, 'fd'> & { fd?: number }> = [];
  let pending: OptionToken[] = [];
  for (const token of tokens) {
    if (token.kind === 'option') {
      if (token.spec.scope === 'device') pending.push(token);
      continue;
    }
    devices.push(deviceRequest(token.text, pending, devices.length > 0 && command === undefined, context));
    pending = [];
  }
  if (devices.length === 0) throw new UsageError(`missing DEVICE${command === undefined ? '' : ' before --'}`);
  if (pending.length > 0) {
    throw new UsageError(`${pending[0]!.spec.long} after the last DEVICE applies to none ` +
      '(the options of a DEVICE go before it)');
  }
  if (command === undefined) throw new UsageError('missing -- COMMAND after DEVICE');
  return { kind: 'open', devices: assignFds(devices), socketPath, command: requireCommand(command) };
}

/** One DEVICE and the options written before it. */
function deviceRequest(text: string, options: readonly OptionToken[], maybeCommand: boolean, context: ParseContext): Omit<DeviceRequest, 'fd'> & { fd?: number } {
  let device: DeviceSpec;
  try {
    device = parseDeviceSpec(text);
  } catch (error) {
    const hint = context.nameHint?.(text);
    if (hint !== undefined) throw new UsageError(hint);
    if (maybeCommand) throw new UsageError(`expected another DEVICE or --, got ${JSON.stringify(text)} (COMMAND goes after --)`);
    throw new UsageError((error as Error).message);
  }
  const repeated = findRepeated(options, (spec) => spec.long !== '--expect');
  if (repeated !== undefined) throw new UsageError(`option ${repeated} given twice for DEVICE ${text}`);
  const flag = (long: string): boolean => hasFlag(options, long);
  if (flag('--rw') && flag('--wo')) throw new UsageError(`--rw and --wo cannot be combined (DEVICE ${text})`);
  const expect: Record<string, string> = {};
  for (const token of options) {
    if (token.kind === 'option' && token.spec.long === '--expect') addExpect(expect, token.value!);
  }
  const fdText = optionValue(options, '--fd');
  return {
    deviceText: text,
    device,
    access: flag('--rw') ? 'read-write' : flag('--wo') ? 'write-only' : 'read-only',
    exclusive: flag('--exclusive'),
    direct: flag('--direct'),
    sync: flag('--sync'),
    dsync: flag('--dsync'),
    waitMs: parseWait(optionValue(options, '--wait')),
    expect,
    fd: fdText === undefined ? undefined : parseTargetFd(fdText),
  };
}

/** Explicit --fd numbers as given (each at most once); the others from 3 up, skipping those. */
function assignFds(devices: ReadonlyArray<Omit<DeviceRequest, 'fd'> & { fd?: number }>): DeviceRequest[] {
  const taken = new Map<number, string>();
  for (const device of devices) {
    if (device.fd === undefined) continue;
    const other = taken.get(device.fd);
    if (other !== undefined) throw new UsageError(`--fd ${device.fd} given to both ${other} and ${device.deviceText}`);
    taken.set(device.fd, device.deviceText);
  }
  let next = 3;
  return devices.map((device) => {
    if (device.fd !== undefined) return { ...device, fd: device.fd };
    while (taken.has(next)) next++;
    if (next > MAX_TARGET_FD) throw new UsageError(`too many DEVICEs: no fd number left below ${MAX_TARGET_FD + 1}`);
    taken.set(next, device.deviceText);
    return { ...device, fd: next++ };
  });
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
function parseTargetFd(text: string): number {
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

/**
 * Substitutes COMMAND's ARGs (not COMMAND itself): `{}` becomes /dev/fd/N of the first
 * DEVICE, `{N}` /dev/fd/N when a DEVICE is at fd N; any other `{N}`, and `${N}` (a shell's
 * positional parameter in an `sh -c` script), stays as written.
 */
export function substituteFds(command: readonly string[], fds: readonly number[]): string[] {
  const first = fds[0];
  const held = new Set(fds);
  return command.map((arg, index) => (index === 0 ? arg : arg.replace(/(\$?)\{([0-9]*)\}/g, (whole, dollar: string, digits: string) => {
    if (digits === '') return first === undefined ? whole : `${dollar}/dev/fd/${first}`;
    if (dollar !== '') return whole;
    return /^[1-9][0-9]*$/.test(digits) && held.has(Number(digits)) ? `/dev/fd/${digits}` : whole;
  })));
}
