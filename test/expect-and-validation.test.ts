// Request validation and expectations: bad requests are typed errors on a connection that
// stays open; bytes that are not a request cost the sender its connection, nobody else's.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { expectOpened, expectRefused, startBroker, within } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';
import { readMarker } from './helpers/image.js';
import { createLoop } from './helpers/loop.js';

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
