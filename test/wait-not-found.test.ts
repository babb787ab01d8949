/**
 * A wait ends with NOT_FOUND as soon as the device can no longer appear (docs/design.md,
 * "Registry"): a diskseq at or below the highest seen that is absent, and a partition whose
 * disk goes away while the request waits. Every wait here asks for ten minutes, so an
 * answer at all (within ava's timeout) shows the daemon did not wait it out.
 */
import test from 'ava';
import { claimUnboundLoop, createLoop } from '../testkit/loop.js';
import { expectRefused, startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';

const TEN_MINUTES = 600_000;

test('a wait for a detached disk\'s diskseq ends at once with NOT_FOUND', async (t) => {
  if (!needsRoot(t)) return;
  const { client } = await startBroker(t);
  const gone = createLoop({}, t);
  const goneDiskseq = gone.diskseq;
  t.true(gone.detach(), 'detached');
  // A later attach makes sure the daemon has seen a higher diskseq than the one asked for.
  const later = createLoop({}, t);
  t.true(later.diskseq > goneDiskseq);
  expectRefused(t, await client.open({ diskseq: goneDiskseq, waitMs: TEN_MINUTES }), 'NOT_FOUND', 'detached disk');
  expectRefused(t, await client.open({ diskseq: goneDiskseq, partition: 1, waitMs: TEN_MINUTES }), 'NOT_FOUND', 'partition of a detached disk');
});

test('a wait for the diskseq of an unbound loop device ends at once with NOT_FOUND', async (t) => {
  if (!needsRoot(t)) return;
  // Claimed (and kept unbound) before the daemon starts, so its first scan sees it.
  const unbound = claimUnboundLoop(t);
  const { client } = await startBroker(t);
  expectRefused(t, await client.open({ diskseq: unbound.diskseq, waitMs: TEN_MINUTES }), 'NOT_FOUND', `unbound ${unbound.name}`);
});

test('a wait for a partition ends with NOT_FOUND when its disk is detached meanwhile', async (t) => {
  if (!needsRoot(t)) return;
  const { client } = await startBroker(t);
  const loop = createLoop({ partscan: true, partitionsMiB: [2], addPartitions: false }, t);
  const pending = client.open({ diskseq: loop.diskseq, partition: 1, waitMs: TEN_MINUTES });
  let answered = false;
  void pending.then(() => (answered = true));
  const { response } = await client.request({ hello: { protocolVersion: 1 } }); // the wait is registered
  t.truthy(response.hello);
  t.false(answered, 'still waiting while the disk is there');
  t.true(loop.detach(), 'detached');
  expectRefused(t, await pending, 'NOT_FOUND', 'partition of the detached disk');
});

