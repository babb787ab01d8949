// diskseq-open --list, --list --json and --watch: the lsblk-style table (human sizes,
// partitions drawn under their disk, -n, -b, -o), a multi-packet list joined into one JSON
// document in lsblk's {blockdevices: [...]} shape, one JSON line per watch event; against
// the scripted fake daemon, and (root) the real one listing the test's own devices. (The
// same columns checked against lsblk itself: cli-list-lsblk.test.ts.)
import anyTest from 'ava';
import Long from 'long';
import { ErrorCode, EventKind } from '../proto/contract.js';
import { createLoop } from '../testkit/loop.js';
import { startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';
import { runCli } from './helpers/cli.js';
import { serveOne, startFakeDaemon, wireDevice } from './helpers/fake-daemon.js';

const test = anyTest.serial;

test('--list --json prints the joined multi-packet list in lsblk\'s shape, partitions as children', async (t) => {
  const daemon = startFakeDaemon(t);
  const cli = runCli(['--list', '--json', '--socket', daemon.socketPath]);
  const request = await serveOne(daemon, (r) => {
    daemon.respond(r, { devices: { devices: [wireDevice(18446744073709551615n, 0, { name: 'sda', driver: 'sd', major: 8 })], more: true } });
    daemon.respond(r, { devices: { devices: [wireDevice(3n, 1, { name: 'fake3p1', attributes: { partition: '1' } }),
      wireDevice(3n, 0, { attributes: { 'loop/backing_file': '/srv/vm.img' } })] } });
  });
  t.true(request.request.list?.includePartitions);
  const result = await cli;
  t.is(result.code, 0, result.stderr);
  // The diskseq is a JSON number with all its digits, as lsblk writes numbers.
  t.regex(result.stdout, /"diskseq": 18446744073709551615,/);
  const parsed = JSON.parse(result.stdout) as { blockdevices: Array<Record<string, unknown> & { children?: Array<Record<string, unknown>> }> };
  t.deepEqual(Object.keys(parsed), ['blockdevices']);
  t.deepEqual(parsed.blockdevices.map((d) => d['name']), ['fake3', 'sda']);
  t.deepEqual(parsed.blockdevices[0], {
    name: 'fake3', diskseq: 3, partn: null, device: '3', 'maj:min': '7:0', rm: false, size: '1M', ro: false, type: 'loop',
    'back-file': '/srv/vm.img',
    children: [{ name: 'fake3p1', diskseq: 3, partn: 1, device: '3p1', 'maj:min': '7:0', rm: false, size: '1M', ro: false, type: 'part', 'back-file': null }],
  });
  t.like(parsed.blockdevices[1], { name: 'sda', device: '18446744073709551615', type: 'disk', size: '1M' });
  t.false('children' in parsed.blockdevices[1]!);
});

test('--list --json --bytes gives sizes as numbers; -o chooses the keys', async (t) => {
  const daemon = startFakeDaemon(t);
  const cli = runCli(['-lJb', '-o', 'name,size,diskseq', '--socket', daemon.socketPath]);
  await serveOne(daemon, (r) => daemon.respond(r, { devices: { devices: [wireDevice(9n, 0, { sizeBytes: Long.fromString('274877906944', true) })] } }));
  const result = await cli;
  t.is(result.code, 0, result.stderr);
  t.deepEqual(JSON.parse(result.stdout), { blockdevices: [{ name: 'fake9', size: 274877906944, diskseq: 9 }] });
});

test('--list prints a table like lsblk: human sizes, partitions drawn under their disk', async (t) => {
  const daemon = startFakeDaemon(t);
  const cli = runCli(['--list', '--socket', daemon.socketPath], { env: { LANG: 'C.UTF-8', LC_ALL: '' } });
  await serveOne(daemon, (r) => daemon.respond(r, { devices: { devices: [
    wireDevice(3n, 2, { name: 'loop9p2', major: 259, minor: 4, sizeBytes: Long.fromString('1572864', true) }),
    wireDevice(3n, 0, { name: 'loop9', major: 7, minor: 9, sizeBytes: Long.fromString('274877906944', true), attributes: { 'loop/backing_file': '/srv/vm.img' } }),
    wireDevice(3n, 1, { name: 'loop9p1', major: 259, minor: 3, readOnly: true }),
  ] } }));
  const result = await cli;
  t.is(result.code, 0, result.stderr);
  // runCli keeps stdout byte for byte (latin1); the box drawing is UTF-8.
  t.is(Buffer.from(result.stdout, 'latin1').toString('utf8'), [
    'NAME      DEVICE MAJ:MIN RM SIZE RO TYPE BACK-FILE',
    'loop9     3          7:9  0 256G  0 loop /srv/vm.img',
    '├─loop9p1 3p1      259:3  0   1M  1 part',
    '└─loop9p2 3p2      259:4  0 1.5M  0 part',
    '',
  ].join('\n'));
  // ASCII outside a UTF-8 locale, as lsblk draws it; -n drops the header; -b gives bytes.
  const ascii = runCli(['-lnb', '-o', 'NAME,SIZE', '--socket', daemon.socketPath], { env: { LANG: 'C', LC_ALL: '' } });
  await serveOne(daemon, (r) => daemon.respond(r, { devices: { devices: [wireDevice(3n, 0, { name: 'loop9' }), wireDevice(3n, 1, { name: 'loop9p1' })] } }));
  t.is((await ascii).stdout, 'loop9     1048576\n`-loop9p1 1048576\n');
});

test('--watch prints one JSON line per event; UNSUPPORTED ends it with exit 1', async (t) => {
  const daemon = startFakeDaemon(t);
  const cli = runCli(['--watch', '--socket', daemon.socketPath]);
  await serveOne(daemon, (r) => {
    daemon.respond(r, { event: { kind: EventKind.EVENT_KIND_ADDED, device: wireDevice(5n) } });
    daemon.respond(r, { event: { kind: EventKind.EVENT_KIND_SYNCED } });
    daemon.respond(r, { error: { code: ErrorCode.ERROR_CODE_UNSUPPORTED, message: 'stop' } });
  });
  const result = await cli;
  const lines = result.stdout.trimEnd().split('\n').map((line) => JSON.parse(line) as { kind: string; device?: { diskseq: string } });
  t.deepEqual(lines.map((e) => `${e.kind}${e.device ? ` ${e.device.diskseq}` : ''}`), ['added 5', 'synced']);
  t.is(result.code, 1);
  t.regex(result.stderr, /^diskseq-open: not supported by this diskseqd \(UNSUPPORTED\): stop\n$/);
});

test('diskseq-open --list --json on the real daemon lists the test\'s devices with their diskseqs', async (t) => {
  if (!needsRoot(t)) return;
  const a = createLoop({}, t);
  const b = createLoop({ partitionsMiB: [2], partscan: true }, t);
  const { daemon } = await startBroker(t);
  const run = await runCli(['--socket', daemon.socketPath, '--list', '--json']);
  t.is(run.code, 0, run.stderr);
  let parsed: unknown;
  t.notThrows(() => (parsed = JSON.parse(run.stdout)), 'stdout is one JSON document');
  const devices = collectDevices(parsed);
  for (const loop of [a, b]) {
    const entry = devices.find((d) => d.name === loop.name);
    t.truthy(entry, `${loop.name} is listed`);
    t.is(String(entry?.diskseq), loop.diskseq.toString(), `${loop.name} has diskseq ${loop.diskseq}`);
  }
});

/** Every object with a string `name` anywhere in a JSON value (the list's exact shape is the CLI's). */
function collectDevices(value: unknown, out: { name: string; diskseq?: unknown }[] = []): { name: string; diskseq?: unknown }[] {
  if (Array.isArray(value)) for (const v of value) collectDevices(v, out);
  else if (value && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    if (typeof record.name === 'string') out.push(record as { name: string; diskseq?: unknown });
    for (const v of Object.values(record)) collectDevices(v, out);
  }
  return out;
}
