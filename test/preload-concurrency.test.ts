/**
 * The shim is thread-safe and fork-safe: many threads opening and stat'ing
 * /dev/disk/by-diskseq/ paths at once, and children forked while another thread is inside
 * a shim call, all get the right device, and no fd or socket is left behind (docs/preload.md).
 */
import test from 'ava';
import { buildProbe, createTestDisk, probe, startShimDaemon } from '../testkit/preload.js';
import { tempDir } from '../testkit/cleanup.js';
import { needsRootAndShim } from './helpers/ci.js';

test('a multithreaded opener gets the right device every time and leaks nothing', async (t) => {
  if (!needsRootAndShim(t)) return;
  const probePath = buildProbe(tempDir(t, 'diskseqd-preload-threads-'));
  const disk = createTestDisk(t);
  const daemon = await startShimDaemon(t);
  const result = probe(probePath, ['threads', `/dev/disk/by-diskseq/${disk.diskseq}-part1`, '8', '100'], { socket: daemon.socketPath });
  t.is(result.diskseq, disk.diskseq.toString());
  t.is(result.failures, 0, String(result.error));
  t.is(result.opens, 800);
  t.is(result.fdsAfter, result.fdsBefore);
  t.is(result.sockets, 0);
});

test('a forking opener: children forked mid-call in another thread open the right device', async (t) => {
  if (!needsRootAndShim(t)) return;
  const probePath = buildProbe(tempDir(t, 'diskseqd-preload-fork-'));
  const disk = createTestDisk(t);
  const daemon = await startShimDaemon(t);
  const result = probe(probePath, ['fork', `/dev/disk/by-diskseq/${disk.diskseq}p2`, '40'], { socket: daemon.socketPath });
  t.is(result.diskseq, disk.diskseq.toString());
  t.is(result.children, 40);
  t.is(result.childFailures, 0);
  t.is(result.threadOpens, 200);
  t.is(result.threadFailures, 0, String(result.error));
  t.is(result.socketsAfter, result.socketsBefore);
});
