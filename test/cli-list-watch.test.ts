// diskseq-open --list, --list --json and --watch: the table, a multi-packet list joined
// into one valid JSON document, one JSON line per watch event; against the scripted fake
// daemon, and (root) the real one listing the test's own devices.
import anyTest from 'ava';
import { ErrorCode, EventKind } from '../proto/contract.js';
import { createLoop } from '../testkit/loop.js';
import { startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';
import { runCli } from './helpers/cli.js';
import { serveOne, startFakeDaemon, wireDevice } from './helpers/fake-daemon.js';

const test = anyTest.serial;

test('--list --json prints the joined multi-packet list as valid JSON, partitions included', async (t) => {
  const daemon = startFakeDaemon(t);
  const cli = runCli(['--list', '--json', '--socket', daemon.socketPath]);
  const request = await serveOne(daemon, (r) => {
    daemon.respond(r, { devices: { devices: [wireDevice(18446744073709551615n)], more: true } });
    daemon.respond(r, { devices: { devices: [wireDevice(3n, 1, { attributes: { partition: '1' } }), wireDevice(3n)] } });
  });
  t.true(request.request.list?.includePartitions);
  const result = await cli;
  t.is(result.code, 0, result.stderr);
  const devices = JSON.parse(result.stdout) as Array<{ diskseq: string; partition: number; attributes: object }>;
  t.deepEqual(devices.map((d) => [d.diskseq, d.partition]), [['3', 0], ['3', 1], ['18446744073709551615', 0]]);
  t.deepEqual(devices[1]!.attributes, { partition: '1' });
});

test('--list prints a table', async (t) => {
  const daemon = startFakeDaemon(t);
  const cli = runCli(['--list', '--socket', daemon.socketPath]);
  await serveOne(daemon, (r) => daemon.respond(r, { devices: { devices: [wireDevice(3n, 2, { name: 'loop9p2', major: 259, minor: 4 })] } }));
  const result = await cli;
  t.is(result.code, 0, result.stderr);
  const lines = result.stdout.trimEnd().split('\n');
  t.regex(lines[0]!, /^DEVICE\s+NAME\s+MAJ:MIN\s+SIZE\s+RO\s+RM\s+DRIVER$/);
  t.regex(lines[1]!, /^3p2\s+loop9p2\s+259:4\s+1048576\s+0\s+0\s+loop$/);
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
