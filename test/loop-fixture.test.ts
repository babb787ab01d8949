// The loop fixture itself: every other test trusts what it reports, so check it against
// the kernel directly (no daemon involved).
import test from 'ava';
import { closeSync, constants, existsSync, openSync, readFileSync } from 'node:fs';
import { native } from '../native/index.js';
import { readMarker } from '../testkit/image.js';
import { claimUnboundLoop, createLoop, loopIsBound, sysfsDiskseq } from '../testkit/loop.js';
import { needsRoot } from './helpers/ci.js';

test('a GPT loop fixture has the reported diskseq and markers on disk and partitions', (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({ partitionsMiB: [2, 2], partscan: true }, t);
  t.is(sysfsDiskseq(loop.name), loop.diskseq);
  t.is(readFileSync(`/sys/block/${loop.name}/loop/partscan`, 'utf8').trim(), '1');
  const fd = openSync(loop.devPath, constants.O_RDONLY);
  try {
    t.is(native.probeFdSync(fd).diskseq, loop.diskseq);
    t.is(readMarker(fd, 0), loop.image.diskMarker);
    for (const p of loop.image.partitions) t.is(readMarker(fd, p.startBytes), p.marker);
  } finally {
    closeSync(fd);
  }
  for (const p of loop.image.partitions) {
    const pfd = openSync(`/dev/${loop.partitionName(p.number)}`, constants.O_RDONLY);
    try {
      t.is(readMarker(pfd, 0), p.marker);
      t.is(native.probeFdSync(pfd).diskseq, loop.diskseq);
    } finally {
      closeSync(pfd);
    }
  }
});

test('reattach keeps the name, bumps the diskseq and swaps the content; cleanup unbinds', (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({ partitionsMiB: [2] }, t);
  const before = { diskseq: loop.diskseq, marker: loop.image.diskMarker };
  loop.reattach({ partitionsMiB: [2] });
  t.true(loop.diskseq > before.diskseq);
  t.not(loop.image.diskMarker, before.marker);
  const fd = openSync(loop.devPath, constants.O_RDONLY);
  try {
    t.is(readMarker(fd, 0), loop.image.diskMarker);
  } finally {
    closeSync(fd);
  }
  loop.cleanup();
  t.false(loopIsBound(loop.index));
  t.false(existsSync(`/dev/${loop.partitionName(1)}`), 'BLKPG partitions of a non-PARTSCAN loop are deleted at cleanup');
});

test('an unbound claimed loop stays unbound and reports its diskseq', (t) => {
  if (!needsRoot(t)) return;
  const unbound = claimUnboundLoop(t);
  t.false(loopIsBound(unbound.index));
  t.is(sysfsDiskseq(unbound.name), unbound.diskseq);
  t.true(unbound.diskseq > 0n);
});
