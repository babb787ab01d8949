// Opening a whole disk by diskseq: the delivered fd is bound to exactly that disk
// instance (checked on the fd by the kernel, not by what the daemon says) and reads the
// backing file's bytes.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { native } from '../native/index.js';
import { expectOpened, startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';
import { readMarker } from '../testkit/image.js';
import { createLoop } from '../testkit/loop.js';
import { codeName } from '../testkit/wire-client.js';

test('whole disk by diskseq: BLKGETDISKSEQ on the fd is X and the fd reads the marker', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const { client, daemon } = await startBroker(t);

  const { fd, device } = expectOpened(t, await client.open({ diskseq: loop.diskseq }));
  const probe = native.probeFdSync(fd);
  t.is(probe.diskseq, loop.diskseq, 'the kernel says the fd is bound to instance X');
  t.is(probe.loopBound, true);
  t.is(probe.mode & native.constants.S_IFMT, native.constants.S_IFBLK);
  t.is(`${probe.rdevMajor}:${probe.rdevMinor}`, readFileSync(`/sys/block/${loop.name}/dev`, 'utf8').trim());
  t.is(readMarker(fd, loop.image.diskMarkerOffset), loop.image.diskMarker);

  t.is(device.diskseq, loop.diskseq);
  t.is(device.partition, 0);
  t.is(device.name, loop.name);
  t.is(device.sizeBytes, BigInt(loop.image.sizeBytes));

  const audit = await daemon.waitForLog((l) => l.msg === 'audit' && l.op === 'open', 5000, 'the audit line of the open');
  t.is(audit.decision, 'allow');
  t.is(audit.code, 'OK');
  t.like(audit, { peer: { uid: 0, pid: process.pid } });
  t.like(audit, { device: { name: loop.name } });
  t.is(typeof audit.us, 'number');
});

test('list shows the disk and, with include_partitions, its partitions with the parent diskseq', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({ partitionsMiB: [2, 2], partscan: true }, t);
  const { client } = await startBroker(t);

  const disks = await client.list(false);
  const disk = disks.find((d) => d.name === loop.name);
  t.truthy(disk, `${loop.name} listed`);
  t.is(disk?.diskseq, loop.diskseq);
  t.false(disks.some((d) => d.partition !== 0), 'no partitions without include_partitions');

  const all = await client.list(true);
  for (const p of loop.image.partitions) {
    const entry = all.find((d) => d.name === loop.partitionName(p.number));
    t.truthy(entry, `${loop.partitionName(p.number)} listed`);
    t.is(entry?.diskseq, loop.diskseq);
    t.is(entry?.partition, p.number);
  }
});

test('a listed loop partition carries its disk\'s loop attributes, read from the parent disk', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({ partitionsMiB: [2], partscan: true }, t);
  const { client } = await startBroker(t);
  const all = await client.list(true);
  const disk = all.find((d) => d.name === loop.name);
  const part = all.find((d) => d.name === loop.partitionName(1));
  const backing = readFileSync(`/sys/block/${loop.name}/loop/backing_file`, 'utf8').trim();
  t.is(disk?.attributes['loop/backing_file'], backing, 'the disk lists its backing file');
  t.is(part?.attributes['loop/backing_file'], backing, 'the partition lists its disk\'s backing file');
  t.is(part?.attributes['loop/partscan'], '1');
  t.is(part?.attributes['partition'], '1', 'and its own partition number');
});

test('a disk attached after the daemon started is found by its (new, higher) diskseq', async (t) => {
  if (!needsRoot(t)) return;
  const { client } = await startBroker(t);
  const loop = createLoop({}, t);
  const { fd } = expectOpened(t, await client.open({ diskseq: loop.diskseq }));
  t.is(native.probeFdSync(fd).diskseq, loop.diskseq);
  t.is(readMarker(fd, 0), loop.image.diskMarker);
});

test('hello: version 1 is answered with the server version; another version gets UNSUPPORTED on a connection that stays open', async (t) => {
  if (!needsRoot(t)) return;
  const { client } = await startBroker(t);
  const { response } = await client.request({ hello: { protocolVersion: 1, clientName: 'ava' } });
  t.is(response.hello?.protocolVersion, 1);
  t.truthy(response.hello?.serverVersion);
  const refused = await client.request({ hello: { protocolVersion: 2, clientName: 'ava' } });
  t.is(codeName(refused.response.error?.code), 'UNSUPPORTED');
  const again = await client.request({ hello: { protocolVersion: 1 } });
  t.is(again.response.hello?.protocolVersion, 1, 'the connection is still served');
});
