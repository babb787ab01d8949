// Request validation and expectations: bad requests are typed errors on a connection that
// stays open; bytes that are not a request cost the sender its connection, nobody else's.
import test from 'ava';
import Long from 'long';
import { openSync, readFileSync } from 'node:fs';
import { diskseqd } from '../proto/gen/diskseqd.js';
import { within } from '../testkit/cleanup.js';
import { readMarker } from '../testkit/image.js';
import { createLoop } from '../testkit/loop.js';
import { sendRawPacket } from '../testkit/wire-client.js';
import { expectOpened, expectRefused, startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';

test('expect that holds: delivered; expect that does not hold: EXPECTATION_FAILED', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const { client } = await startBroker(t);
  const backing = readFileSync(`/sys/block/${loop.name}/loop/backing_file`, 'utf8').trim();

  const good = expectOpened(t, await client.open({ diskseq: loop.diskseq, expect: { 'loop/backing_file': backing, size: String(loop.image.sizeBytes / 512) } }), 'expect that holds');
  t.is(readMarker(good.fd, 0), loop.image.diskMarker);
  good.close();

  expectRefused(t, await client.open({ diskseq: loop.diskseq, expect: { 'loop/backing_file': `${backing}.other` } }), 'EXPECTATION_FAILED', 'wrong backing file');
  expectRefused(t, await client.open({ diskseq: loop.diskseq, expect: { size: '1' } }), 'EXPECTATION_FAILED', 'wrong size');
  expectRefused(t, await client.open({ diskseq: loop.diskseq, expect: { 'dm/name': '' } }), 'EXPECTATION_FAILED', 'attribute the device lacks');
  expectRefused(t, await client.open({ diskseq: loop.diskseq, expect: { size: String(loop.image.sizeBytes / 512), ro: '1' } }), 'EXPECTATION_FAILED', 'one of two fails');
});

test('an expect key outside the allow-list: INVALID_ARGUMENT, and the connection stays usable', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const { client } = await startBroker(t);
  for (const key of ['dev', 'uevent', '../../../../etc/shadow', '/etc/passwd', 'loop/../dev', 'size ', 'SIZE', '']) {
    expectRefused(t, await client.open({ diskseq: loop.diskseq, expect: { [key]: 'x' } }), 'INVALID_ARGUMENT', `key ${JSON.stringify(key)}`);
  }
  expectOpened(t, await client.open({ diskseq: loop.diskseq }), 'same connection afterwards');
});

test('diskseq 0: INVALID_ARGUMENT', async (t) => {
  if (!needsRoot(t)) return;
  const { client } = await startBroker(t);
  expectRefused(t, await client.open({ diskseq: 0 }), 'INVALID_ARGUMENT');
  expectRefused(t, await client.open({ diskseq: 0, partition: 1 }), 'INVALID_ARGUMENT', 'partition of diskseq 0');
});

test('a garbage packet drops only that connection; another connection keeps working', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const { client, connect, daemon } = await startBroker(t);
  expectOpened(t, await client.open({ diskseq: loop.diskseq }), 'bystander before').close();

  const hostile = connect();
  // A varint that never ends: no protobuf decoder accepts it.
  t.true(hostile.sendRaw(Buffer.alloc(32, 0xff)));
  const reason = await within(hostile.whenClosed(), 5000, 'the daemon dropping the garbage connection');
  t.not(reason.kind, 'local', 'the daemon closed it, not us');

  const after = expectOpened(t, await client.open({ diskseq: loop.diskseq }), 'bystander after');
  t.is(readMarker(after.fd, 0), loop.image.diskMarker);
  t.is(daemon.exit, undefined, 'the daemon is still running');
});

test('protocol violations each cost only their own connection: fds riding along, oversized, truncated', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const { client, daemon } = await startBroker(t);
  const open = diskseqd.v1.Request.encode({ id: Long.fromNumber(7, true), open: { diskseq: Long.fromString(loop.diskseq.toString(), true) } }).finish();
  const cases: [string, Uint8Array, () => number][] = [
    ['a valid open carrying an fd', open, () => openSync('/dev/null', 'r')],
    ['a valid open carrying a block device fd', open, () => openSync(loop.devPath, 'r')],
    ['an oversized request (> 4096 bytes)', diskseqd.v1.Request.encode({ id: Long.fromNumber(8, true), hello: { protocolVersion: 1, clientName: 'x'.repeat(5000) } }).finish(), () => -1],
    ['a truncated request', open.subarray(0, open.length - 2), () => -1],
  ];
  for (const [what, bytes, fd] of cases) {
    const outcome = await sendRawPacket(daemon.socketPath, bytes, fd());
    t.true(outcome.dropped, `${what}: dropped`);
    t.is(outcome.strayFds, 0, `${what}: no fd delivered for a violating packet`);
  }
  expectOpened(t, await client.open({ diskseq: loop.diskseq }), 'bystander afterwards');
});
