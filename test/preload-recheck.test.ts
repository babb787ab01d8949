/**
 * The shim's own re-check of a received fd covers the partition, not only BLKGETDISKSEQ
 * (which a partition shares with its disk): st_rdev must be the dev_t the daemon described
 * and sysfs's `partition` of it the partition asked for (none for a whole disk). The
 * daemon here is native/preload/test/null-broker.c, which lies consistently: it sends a
 * real fd of one device and describes it as whatever (diskseq, partition) it was told.
 */
import test from 'ava';
import { tempDir } from '../testkit/cleanup.js';
import { createLoop } from '../testkit/loop.js';
import { buildProbe, probe, startNullBroker } from '../testkit/preload.js';
import { needsRootAndShim } from './helpers/ci.js';

const ENOENT = 2;

test('shim: the whole disk for a partition, another partition, or a partition for the whole disk fails ENOENT', async (t) => {
  if (!needsRootAndShim(t)) return;
  const dir = tempDir(t, 'diskseqd-preload-recheck-');
  const probePath = buildProbe(dir);
  const loop = createLoop({ partitionsMiB: [2, 2], partscan: true }, t);
  const node = (partition: number): string => (partition === 0 ? loop.devPath : `/dev/${loop.partitionName(partition)}`);
  const marker = (partition: number): string => Buffer.from((partition === 0 ? loop.image.diskMarker : loop.image.partitions[partition - 1]!.marker).slice(0, 16)).toString('hex');
  const spelling = (partition: number): string => `/dev/disk/by-diskseq/${loop.diskseq}${partition === 0 ? '' : `-part${partition}`}`;

  for (const [asked, sent] of [[1, 0], [1, 2], [2, 1], [0, 1]] as const) {
    const socket = await startNullBroker(t, dir, node(sent), loop.diskseq, asked);
    const result = probe(probePath, ['open', spelling(asked), 'rdonly'], { socket });
    t.is(result.errno, ENOENT, `asked ${asked}, sent ${node(sent)}: ${JSON.stringify(result)}`);
    t.is(result.fd, -1);
    t.is(result.sockets, 0, 'nothing left open');
  }
  // Control: the right device passes the same checks (so the refusals above are the
  // partition check's, not a broken broker).
  for (const partition of [0, 1, 2]) {
    const socket = await startNullBroker(t, dir, node(partition), loop.diskseq, partition);
    const result = probe(probePath, ['open', spelling(partition), 'rdonly'], { socket });
    t.is(result.errno, 0, JSON.stringify(result));
    t.is(result.head, marker(partition));
  }
});
