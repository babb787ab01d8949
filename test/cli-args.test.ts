// diskseq-open's argument parsing: DEVICE forms, each DEVICE's options before it, several
// DEVICEs with their fds, short options, the --list options, `--` exactly, `{}` and `{N}`
// substitution, and which usage errors belong to a form without COMMAND (exit 1, not 125).
// Pure functions; no daemon, no root.
import test from 'ava';
import { parseDeviceSpec, formatDeviceSpec } from '../client/device-spec.js';
import { asksForQueryMode, parseCliArgs, substituteFds, UsageError, type DeviceRequest, type OpenCommand } from '../client/cli-args.js';
import { DEFAULT_COLUMNS, DEFAULT_JSON_COLUMNS } from '../client/list-format.js';

const accepted: Array<[string, bigint, number]> = [
  ['42', 42n, 0],
  ['42p1', 42n, 1],
  ['42-part1', 42n, 1],
  ['/dev/disk/by-diskseq/42', 42n, 0],
  ['/dev/disk/by-diskseq/42-part1', 42n, 1],
  ['/dev/disk/by-diskseq/42p1', 42n, 1],
  ['1', 1n, 0],
  ['18446744073709551615', 18446744073709551615n, 0],
  ['7p4294967295', 7n, 4294967295],
  ['100-part12', 100n, 12],
];

for (const [text, diskseq, partition] of accepted) {
  test(`DEVICE ${text} is diskseq ${diskseq} partition ${partition}`, (t) => {
    t.deepEqual(parseDeviceSpec(text), { diskseq, partition });
  });
}

const rejected = [
  '0', '-1', '042', '42p', '42p0', '42-part0', '42p01', '42-part', '42part1', '42P1', '42 ', ' 42', '+42',
  '0x2a', '4.2', '', 'p1', '42p1p2', '/dev/loop3', '/dev/disk/by-diskseq/', '/dev/disk/by-diskseq/0',
  '/dev/disk/by-diskseq//42', '/dev/disk/by-diskseq/42/', 'dev/disk/by-diskseq/42', '/dev/disk/by-id/42',
  '18446744073709551616', '99999999999999999999999', '42p4294967296', '42-part99999999999999999999', '４２',
];

for (const text of rejected) {
  test(`DEVICE ${JSON.stringify(text)} is rejected`, (t) => {
    t.throws(() => parseDeviceSpec(text), { instanceOf: RangeError });
  });
}

test('formatDeviceSpec gives the short form', (t) => {
  t.is(formatDeviceSpec({ diskseq: 42n, partition: 0 }), '42');
  t.is(formatDeviceSpec({ diskseq: 42n, partition: 3 }), '42p3');
});

function parseOpen(argv: string[]): OpenCommand {
  const command = parseCliArgs(argv);
  if (command.kind !== 'open') throw new Error(`expected an open command, got ${command.kind}`);
  return command;
}

/** The one DEVICE of a single-device command line. */
function parseOne(argv: string[]): DeviceRequest {
  const command = parseOpen(argv);
  if (command.devices.length !== 1) throw new Error(`expected one DEVICE, got ${command.devices.length}`);
  return command.devices[0]!;
}

test('plain open: read-only, fd 3, command after --', (t) => {
  const command = parseOpen(['42p1', '--', 'sh', '-c', 'head -c 16 {}']);
  t.deepEqual(command, {
    kind: 'open',
    devices: [{
      deviceText: '42p1', device: { diskseq: 42n, partition: 1 }, access: 'read-only',
      exclusive: false, direct: false, sync: false, dsync: false, waitMs: 0, expect: {}, fd: 3,
    }],
    socketPath: undefined, command: ['sh', '-c', 'head -c 16 {}'],
  });
});

test('every option before DEVICE, both --opt VALUE and --opt=VALUE', (t) => {
  const command = parseOpen(['--rw', '--exclusive', '--direct', '--sync', '--dsync', '--wait', '1.5', '--fd=7',
    '--socket', '/tmp/s.sock', '--expect', 'loop/backing_file=/a=b', '--expect=ro=0', '/dev/disk/by-diskseq/9-part2',
    '--', 'dd', 'if={}', '--rw']);
  const device = command.devices[0]!;
  t.is(device.access, 'read-write');
  t.true(device.exclusive && device.direct && device.sync && device.dsync);
  t.is(device.waitMs, 1500);
  t.is(device.fd, 7);
  t.is(command.socketPath, '/tmp/s.sock');
  t.deepEqual(device.expect, { 'loop/backing_file': '/a=b', ro: '0' });
  t.deepEqual(device.device, { diskseq: 9n, partition: 2 });
  // Everything after -- is COMMAND's, including things that look like our options.
  t.deepEqual(command.command, ['dd', 'if={}', '--rw']);
});

test('short options: -w, -x, -e VALUE, -eVALUE and bundles mean their long forms', (t) => {
  const long = parseOne(['--rw', '--exclusive', '--expect', 'ro=0', '5', '--', 'true']);
  for (const argv of [['-w', '-x', '-e', 'ro=0', '5', '--', 'true'], ['-wx', '-ero=0', '5', '--', 'true'], ['-wxe', 'ro=0', '5', '--', 'true']]) {
    t.deepEqual(parseOne(argv), long, argv.join(' '));
  }
  t.deepEqual(parseCliArgs(['-h']), { kind: 'help' });
  t.deepEqual(parseCliArgs(['-V']), { kind: 'version' });
});

test('--wo opens write-only', (t) => {
  t.is(parseOne(['--wo', '5', '--', 'true']).access, 'write-only');
});

test('--wait takes seconds with decimals, rounded to milliseconds', (t) => {
  t.is(parseOne(['--wait', '0', '5', '--', 'true']).waitMs, 0);
  t.is(parseOne(['--wait', '0.0015', '5', '--', 'true']).waitMs, 2);
  t.is(parseOne(['--wait', '30', '5', '--', 'true']).waitMs, 30000);
});

test('several DEVICEs: each takes the options before it, fds 3, 4, ... unless --fd says', (t) => {
  const command = parseOpen(['--socket', '/s', '--wait', '2', '42', '--rw', '--exclusive', '43p1', '-e', 'ro=0', '44', '--', 'qemu-img', '{3}', '{4}']);
  t.is(command.socketPath, '/s');
  t.deepEqual(command.devices.map((d) => [d.deviceText, d.access, d.exclusive, d.waitMs, d.fd, Object.keys(d.expect)]), [
    ['42', 'read-only', false, 2000, 3, []],
    ['43p1', 'read-write', true, 0, 4, []],
    ['44', 'read-only', false, 0, 5, ['ro']],
  ]);
  // Explicit numbers are kept, the others take the lowest free ones.
  const fds = parseOpen(['--fd', '4', '1', '2', '--fd', '3', '3', '4', '--', 'true']).devices.map((d) => d.fd);
  t.deepEqual(fds, [4, 5, 3, 6]);
  // --socket may come between DEVICEs too: it is not a DEVICE's option.
  t.is(parseOpen(['1', '--socket', '/t', '2', '--', 'true']).socketPath, '/t');
});

const usageErrors: Array<[string, string[]]> = [
  ['no arguments', []],
  ['missing COMMAND', ['42', '--']],
  ['missing --', ['42', 'cat']],
  ['missing -- and COMMAND', ['42']],
  ['option after the last DEVICE', ['42', '--rw', '--', 'cat']],
  ['-- before DEVICE', ['--', '42', 'cat']],
  ['bad DEVICE', ['42p0', '--', 'cat']],
  ['bad second DEVICE', ['42', '43p0', '--', 'cat']],
  ['negative DEVICE looks like an option', ['-1', '--', 'cat']],
  ['unknown option', ['--frobnicate', '42', '--', 'cat']],
  ['unknown short option', ['-r', '42', '--', 'cat']],
  ['unknown short option in a bundle', ['-wq', '42', '--', 'cat']],
  ['--rw with --wo', ['--rw', '--wo', '42', '--', 'cat']],
  ['--fd 2', ['--fd', '2', '42', '--', 'cat']],
  ['--fd 0', ['--fd=0', '42', '--', 'cat']],
  ['--fd 03', ['--fd=03', '42', '--', 'cat']],
  ['--fd too high', ['--fd', '1024', '42', '--', 'cat']],
  ['--fd not a number', ['--fd', 'x', '42', '--', 'cat']],
  ['the same --fd for two DEVICEs', ['--fd', '5', '42', '--fd', '5', '43', '--', 'cat']],
  ['--wait negative', ['--wait', '-1', '42', '--', 'cat']],
  ['--wait not a number', ['--wait', '1s', '42', '--', 'cat']],
  ['--wait too long', ['--wait', '4294968', '42', '--', 'cat']],
  ['--wait without value', ['--wait']],
  ['-e without value', ['-e']],
  ['--socket empty', ['--socket=', '42', '--', 'cat']],
  ['--socket twice', ['--socket', 'a', '--socket', 'b', '42', '--', 'cat']],
  ['flag given a value', ['--rw=1', '42', '--', 'cat']],
  ['flag twice for one DEVICE', ['--rw', '--rw', '42', '--', 'cat']],
  ['flag twice for one DEVICE, short and long', ['-w', '--rw', '42', '--', 'cat']],
  ['--expect without =', ['--expect', 'ro', '42', '--', 'cat']],
  ['--expect with empty key', ['--expect', '=1', '42', '--', 'cat']],
  ['--expect key twice', ['--expect', 'ro=1', '--expect', 'ro=0', '42', '--', 'cat']],
  ['--list with an open option', ['--list', '--rw']],
  ['--list with COMMAND', ['--list', '--', 'cat']],
  ['--list with an unknown column', ['--list', '-o', 'NAME,UUID']],
  ['--json without --list', ['--json', '42', '--', 'cat']],
  ['-o without --list', ['-o', 'NAME', '42', '--', 'cat']],
  ['--list with --watch', ['--list', '--watch']],
  ['--watch with an argument', ['--watch', 'x']],
  ['--preload without --', ['--preload', 'cat']],
  ['--preload without COMMAND', ['--preload', '--']],
  ['--preload with --exclusive', ['--preload', '--exclusive', '--', 'cat']],
  ['--preload with a DEVICE', ['--preload', '42', '--', 'cat']],
  ['empty COMMAND', ['42', '--', '']],
];

for (const [name, argv] of usageErrors) {
  test(`usage error: ${name}`, (t) => {
    t.throws(() => parseCliArgs(argv), { instanceOf: UsageError });
  });
}

test('no usage message carries its own "try --help" (the CLI adds the pointer once)', (t) => {
  for (const [, argv] of usageErrors) {
    const error = t.throws(() => parseCliArgs(argv), { instanceOf: UsageError });
    t.notRegex(error!.message, /--help/, argv.join(' '));
  }
});

test('usage errors of --list and --watch are marked as query forms (exit 1), the others not (exit 125)', (t) => {
  for (const argv of [['--list', '--rw'], ['-l', '-o', 'X'], ['-lJo', 'X'], ['--watch', 'x'], ['--list', '--watch'], ['--frobnicate', '--list']]) {
    t.true(t.throws(() => parseCliArgs(argv), { instanceOf: UsageError })!.query, argv.join(' '));
  }
  for (const argv of [['42p0', '--', 'x'], ['--preload', 'cat'], [], ['42p0', '--', 'diskseq-open', '--list'], ['-ol', '42', '--', 'x']]) {
    t.false(t.throws(() => parseCliArgs(argv), { instanceOf: UsageError })!.query, argv.join(' '));
  }
  t.false(asksForQueryMode(['42', '--', 'diskseq-open', '--list']));
});

test('a kernel name as DEVICE is refused with the hint the context gives', (t) => {
  const hints: string[] = [];
  const nameHint = (text: string): string | undefined => {
    hints.push(text);
    return text === 'loop4' ? 'loop4 is 42 now' : undefined;
  };
  t.is(t.throws(() => parseCliArgs(['loop4', '--', 'true'], { nameHint }), { instanceOf: UsageError })!.message, 'loop4 is 42 now');
  t.regex(t.throws(() => parseCliArgs(['sdz', '--', 'true'], { nameHint }), { instanceOf: UsageError })!.message, /^invalid DEVICE "sdz"/);
  t.deepEqual(hints, ['loop4', 'sdz']);
});

test('the other modes', (t) => {
  t.deepEqual(parseCliArgs(['--help']), { kind: 'help' });
  t.deepEqual(parseCliArgs(['--rw', '--help']), { kind: 'help' });
  t.deepEqual(parseCliArgs(['--version']), { kind: 'version' });
  const list = { kind: 'list', json: false, bytes: false, noHeadings: false, columns: [...DEFAULT_COLUMNS], filters: [], socketPath: undefined };
  t.deepEqual(parseCliArgs(['--list']), list);
  t.deepEqual(parseCliArgs(['-l']), list);
  t.deepEqual(parseCliArgs(['--json', '--list', '--socket', '/s']), { ...list, json: true, columns: [...DEFAULT_JSON_COLUMNS], socketPath: '/s' });
  t.deepEqual(parseCliArgs(['-lJbn', '-o', 'name,DEVICE', 'loop4', '/srv/a.img', '42p1']),
    { ...list, json: true, bytes: true, noHeadings: true, columns: ['NAME', 'DEVICE'], filters: ['loop4', '/srv/a.img', '42p1'] });
  t.deepEqual((parseCliArgs(['--list', '--output=+DISKSEQ,driver']) as { columns: string[] }).columns, [...DEFAULT_COLUMNS, 'DISKSEQ', 'DRIVER']);
  t.deepEqual((parseCliArgs(['--list', '-J', '-o', '+driver']) as { columns: string[] }).columns, [...DEFAULT_JSON_COLUMNS, 'DRIVER']);
  t.deepEqual(parseCliArgs(['--watch']), { kind: 'watch', socketPath: undefined });
  t.deepEqual(parseCliArgs(['--preload', '--', 'blkid', '/dev/disk/by-diskseq/4']),
    { kind: 'preload', socketPath: undefined, command: ['blkid', '/dev/disk/by-diskseq/4'] });
});

test('{} becomes /dev/fd/N of the first DEVICE in every ARG, also inside words, but not in COMMAND', (t) => {
  t.deepEqual(substituteFds(['{}', 'if={}', '{}{}', 'x', '{ }'], [5]),
    ['{}', 'if=/dev/fd/5', '/dev/fd/5/dev/fd/5', 'x', '{ }']);
});

test('{N} becomes /dev/fd/N only when a DEVICE is at fd N, and never as a shell\'s ${N}', (t) => {
  t.deepEqual(substituteFds(['cmd', '{3}', 'of={4}', '{}', '{5}', '{03}', 'echo ${3}', '{}{4}', '{3}', '$x{4}'], [3, 4]),
    ['cmd', '/dev/fd/3', 'of=/dev/fd/4', '/dev/fd/3', '{5}', '{03}', 'echo ${3}', '/dev/fd/3/dev/fd/4', '/dev/fd/3', '$x/dev/fd/4']);
  t.deepEqual(substituteFds(['cmd', '{4}', '{3}'], [4]), ['cmd', '/dev/fd/4', '{3}']);
});
