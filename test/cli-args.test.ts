// diskseq-open's argument parsing: DEVICE forms, options before DEVICE only, `--` exactly,
// `{}` substitution. Pure functions; no daemon, no root.
import test from 'ava';
import { parseDeviceSpec, formatDeviceSpec } from '../client/device-spec.js';
import { parseCliArgs, substituteFd, UsageError, type OpenCommand } from '../client/cli-args.js';

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

test('plain open: read-only, fd 3, command after --', (t) => {
  const command = parseOpen(['42p1', '--', 'sh', '-c', 'head -c 16 {}']);
  t.deepEqual(command, {
    kind: 'open', deviceText: '42p1', device: { diskseq: 42n, partition: 1 }, access: 'read-only',
    exclusive: false, direct: false, sync: false, dsync: false, waitMs: 0, expect: {}, fd: 3,
    socketPath: undefined, command: ['sh', '-c', 'head -c 16 {}'],
  });
});

test('every option before DEVICE, both --opt VALUE and --opt=VALUE', (t) => {
  const command = parseOpen(['--rw', '--exclusive', '--direct', '--sync', '--dsync', '--wait', '1.5', '--fd=7',
    '--socket', '/tmp/s.sock', '--expect', 'loop/backing_file=/a=b', '--expect=ro=0', '/dev/disk/by-diskseq/9-part2',
    '--', 'dd', 'if={}', '--rw']);
  t.is(command.access, 'read-write');
  t.true(command.exclusive && command.direct && command.sync && command.dsync);
  t.is(command.waitMs, 1500);
  t.is(command.fd, 7);
  t.is(command.socketPath, '/tmp/s.sock');
  t.deepEqual(command.expect, { 'loop/backing_file': '/a=b', ro: '0' });
  t.deepEqual(command.device, { diskseq: 9n, partition: 2 });
  // Everything after -- is COMMAND's, including things that look like our options.
  t.deepEqual(command.command, ['dd', 'if={}', '--rw']);
});

test('--wo opens write-only', (t) => {
  t.is(parseOpen(['--wo', '5', '--', 'true']).access, 'write-only');
});

test('--wait takes seconds with decimals, rounded to milliseconds', (t) => {
  t.is(parseOpen(['--wait', '0', '5', '--', 'true']).waitMs, 0);
  t.is(parseOpen(['--wait', '0.0015', '5', '--', 'true']).waitMs, 2);
  t.is(parseOpen(['--wait', '30', '5', '--', 'true']).waitMs, 30000);
});

const usageErrors: Array<[string, string[]]> = [
  ['no arguments', []],
  ['missing COMMAND', ['42', '--']],
  ['missing --', ['42', 'cat']],
  ['missing -- and COMMAND', ['42']],
  ['option after DEVICE', ['42', '--rw', '--', 'cat']],
  ['-- before DEVICE', ['--', '42', 'cat']],
  ['bad DEVICE', ['42p0', '--', 'cat']],
  ['negative DEVICE looks like an option', ['-1', '--', 'cat']],
  ['unknown option', ['--frobnicate', '42', '--', 'cat']],
  ['short option', ['-r', '42', '--', 'cat']],
  ['--rw with --wo', ['--rw', '--wo', '42', '--', 'cat']],
  ['--fd 2', ['--fd', '2', '42', '--', 'cat']],
  ['--fd 0', ['--fd=0', '42', '--', 'cat']],
  ['--fd 03', ['--fd=03', '42', '--', 'cat']],
  ['--fd too high', ['--fd', '1024', '42', '--', 'cat']],
  ['--fd not a number', ['--fd', 'x', '42', '--', 'cat']],
  ['--wait negative', ['--wait', '-1', '42', '--', 'cat']],
  ['--wait not a number', ['--wait', '1s', '42', '--', 'cat']],
  ['--wait too long', ['--wait', '4294968', '42', '--', 'cat']],
  ['--wait without value', ['--wait']],
  ['--socket empty', ['--socket=', '42', '--', 'cat']],
  ['--socket twice', ['--socket', 'a', '--socket', 'b', '42', '--', 'cat']],
  ['flag given a value', ['--rw=1', '42', '--', 'cat']],
  ['flag twice', ['--rw', '--rw', '42', '--', 'cat']],
  ['--expect without =', ['--expect', 'ro', '42', '--', 'cat']],
  ['--expect with empty key', ['--expect', '=1', '42', '--', 'cat']],
  ['--expect key twice', ['--expect', 'ro=1', '--expect', 'ro=0', '42', '--', 'cat']],
  ['--list with DEVICE', ['--list', '42']],
  ['--list with an open option', ['--list', '--rw']],
  ['--json without --list', ['--json', '42', '--', 'cat']],
  ['--list with --watch', ['--list', '--watch']],
  ['--watch with an argument', ['--watch', 'x']],
  ['--preload without --', ['--preload', 'cat']],
  ['--preload without COMMAND', ['--preload', '--']],
  ['--preload with --exclusive', ['--preload', '--exclusive', '--', 'cat']],
  ['empty COMMAND', ['42', '--', '']],
];

for (const [name, argv] of usageErrors) {
  test(`usage error: ${name}`, (t) => {
    t.throws(() => parseCliArgs(argv), { instanceOf: UsageError });
  });
}

test('the other modes', (t) => {
  t.deepEqual(parseCliArgs(['--help']), { kind: 'help' });
  t.deepEqual(parseCliArgs(['--rw', '--help']), { kind: 'help' });
  t.deepEqual(parseCliArgs(['--version']), { kind: 'version' });
  t.deepEqual(parseCliArgs(['--list']), { kind: 'list', json: false, socketPath: undefined });
  t.deepEqual(parseCliArgs(['--json', '--list', '--socket', '/s']), { kind: 'list', json: true, socketPath: '/s' });
  t.deepEqual(parseCliArgs(['--watch']), { kind: 'watch', socketPath: undefined });
  t.deepEqual(parseCliArgs(['--preload', '--', 'blkid', '/dev/disk/by-diskseq/4']),
    { kind: 'preload', socketPath: undefined, command: ['blkid', '/dev/disk/by-diskseq/4'] });
});

test('{} becomes /dev/fd/N in every ARG, also inside words, but not in COMMAND', (t) => {
  t.deepEqual(substituteFd(['{}', 'if={}', '{}{}', 'x', '{ }'], 5),
    ['{}', 'if=/dev/fd/5', '/dev/fd/5/dev/fd/5', 'x', '{ }']);
});
