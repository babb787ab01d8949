// exclusive = O_EXCL on the block device, enforced by the kernel: one exclusive holder
// per disk (whole disk and its partitions exclude each other); plain opens still work.
import test from 'ava';
import { readMarker } from '../testkit/image.js';
import { createLoop } from '../testkit/loop.js';
import { expectOpened, expectRefused, startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';

test('a second exclusive open of the same device: BUSY; free again once the first closes', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const { client, connect } = await startBroker(t);
  const other = connect();

  const first = expectOpened(t, await client.open({ diskseq: loop.diskseq, exclusive: true }), 'first exclusive open');
  const second = await other.open({ diskseq: loop.diskseq, exclusive: true });
  expectRefused(t, second, 'BUSY', 'second exclusive open');
  if (!second.ok) t.is(second.osErrno, 16, 'os_errno carries EBUSY');

  const plain = expectOpened(t, await other.open({ diskseq: loop.diskseq }), 'non-exclusive open meanwhile');
  t.is(readMarker(plain.fd, 0), loop.image.diskMarker);
  plain.close();

  first.close();
  expectOpened(t, await other.open({ diskseq: loop.diskseq, exclusive: true }), 'exclusive open after the first closed');
});

test('an exclusive whole disk excludes an exclusive open of its partition', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({ partitionsMiB: [2], partscan: true }, t);
  const { client } = await startBroker(t);
  expectOpened(t, await client.open({ diskseq: loop.diskseq, exclusive: true }), 'exclusive whole disk');
  expectRefused(t, await client.open({ diskseq: loop.diskseq, partition: 1, exclusive: true }), 'BUSY', 'exclusive partition 1');
});
