// A diskseq names one disk instance forever: once that instance is gone, asking for it
// gives NOT_FOUND — never the new device that now has the same name and dev_t.
import test from 'ava';
import { native } from '../native/index.js';
import { readMarker } from '../testkit/image.js';
import { claimUnboundLoop, createLoop } from '../testkit/loop.js';
import { expectOpened, expectRefused, startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';

test('stale diskseq after detach and re-attach of a different file: NOT_FOUND, never the new device', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({ partitionsMiB: [2], partscan: true }, t);
  const { client } = await startBroker(t);
  const old = { diskseq: loop.diskseq, marker: loop.image.diskMarker };

  // Make sure the daemon has indexed the old instance, so its cached dev_t now points at
  // the new one: only verification on the fd can tell them apart.
  const first = expectOpened(t, await client.open({ diskseq: old.diskseq }), 'open before re-attach');
  t.is(readMarker(first.fd, 0), old.marker);
  first.close();

  loop.reattach({ partitionsMiB: [2] });
  t.true(loop.diskseq > old.diskseq);

  expectRefused(t, await client.open({ diskseq: old.diskseq }), 'NOT_FOUND', 'old diskseq, whole disk');
  expectRefused(t, await client.open({ diskseq: old.diskseq, partition: 1 }), 'NOT_FOUND', 'old diskseq, partition 1');

  // The new instance, same name, is served under its own diskseq.
  const fresh = expectOpened(t, await client.open({ diskseq: loop.diskseq }), 'new diskseq');
  t.is(native.probeFdSync(fresh.fd).diskseq, loop.diskseq);
  t.is(readMarker(fresh.fd, 0), loop.image.diskMarker);
  t.is(fresh.device.name, loop.name);
});

test('the diskseq of an unbound loop device: NOT_FOUND', async (t) => {
  if (!needsRoot(t)) return;
  const unbound = claimUnboundLoop(t);
  const { client } = await startBroker(t);
  expectRefused(t, await client.open({ diskseq: unbound.diskseq }), 'NOT_FOUND');
  const listed = await client.list(true);
  t.false(listed.some((d) => d.name === unbound.name), 'unbound loop devices are never listed');
});
