// Partitions by (parent diskseq, number): delivered only when the kernel confirms both on
// the fd, and only for loop devices attached with LO_FLAGS_PARTSCAN (without it, BLKPG
// partitions outlive the instance they were made for).
import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { native } from '../native/index.js';
import { readFileMarker, readMarker } from '../testkit/image.js';
import { createLoop } from '../testkit/loop.js';
import { expectOpened, expectRefused, startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';

test('partitions 1 and 2 on a PARTSCAN loop: each fd reads its own marker and reports the parent diskseq', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({ partitionsMiB: [2, 2], partscan: true }, t);
  const { client } = await startBroker(t);

  for (const p of loop.image.partitions) {
    const { fd, device } = expectOpened(t, await client.open({ diskseq: loop.diskseq, partition: p.number }), `partition ${p.number}`);
    const probe = native.probeFdSync(fd);
    t.is(probe.diskseq, loop.diskseq, 'BLKGETDISKSEQ on a partition fd gives the parent disk');
    const sysfs = `/sys/dev/block/${probe.rdevMajor}:${probe.rdevMinor}`;
    t.is(readFileSync(`${sysfs}/partition`, 'utf8').trim(), String(p.number), 'the fd is on partition N');
    t.is(readMarker(fd, 0), p.marker);
    t.is(device.name, loop.partitionName(p.number));
    t.is(device.partition, p.number);
    t.is(device.diskseq, loop.diskseq);
    t.is(device.sizeBytes, BigInt(p.sizeBytes));
  }
});

test('partition 3 of a disk with two partitions: NOT_FOUND', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({ partitionsMiB: [2, 2], partscan: true }, t);
  const { client } = await startBroker(t);
  expectRefused(t, await client.open({ diskseq: loop.diskseq, partition: 3 }), 'NOT_FOUND');
});

test('partitions of a loop attached without LO_FLAGS_PARTSCAN: NOT_FOUND, though the kernel has them', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({ partitionsMiB: [2, 2], partscan: false }, t);
  // The partitions really exist and hold the markers: the refusal is the daemon's rule.
  for (const p of loop.image.partitions) {
    t.true(existsSync(`/dev/${loop.partitionName(p.number)}`));
    t.is(readFileMarker(`/dev/${loop.partitionName(p.number)}`), p.marker);
  }
  t.is(readFileSync(`/sys/block/${loop.name}/loop/partscan`, 'utf8').trim(), '0');
  const { client } = await startBroker(t);

  for (const p of loop.image.partitions) {
    expectRefused(t, await client.open({ diskseq: loop.diskseq, partition: p.number }), 'NOT_FOUND', `partition ${p.number}`);
  }
  // The whole disk of that loop is still served.
  const { fd } = expectOpened(t, await client.open({ diskseq: loop.diskseq }), 'whole disk');
  t.is(readMarker(fd, 0), loop.image.diskMarker);
});
