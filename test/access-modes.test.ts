// The access mode of a delivered fd is the one requested, enforced by the kernel on the
// fd itself.
import test from 'ava';
import { fsyncSync, readSync, writeSync } from 'node:fs';
import { expectOpened, startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';
import { makeMarker, MARKER_BYTES, readFileMarker, readMarker } from './helpers/image.js';
import { createLoop } from './helpers/loop.js';

const OFFSET = 4096;

test('read-only open: write on the fd fails with EBADF and the disk is unchanged', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const { client } = await startBroker(t);
  const { fd } = expectOpened(t, await client.open({ diskseq: loop.diskseq, access: 'ro' }));
  t.is(readMarker(fd, 0), loop.image.diskMarker);
  const error = t.throws(() => writeSync(fd, Buffer.from(makeMarker('W')), 0, MARKER_BYTES, OFFSET));
  t.is((error as NodeJS.ErrnoException | undefined)?.code, 'EBADF');
  t.is(readFileMarker(loop.image.path, OFFSET), '\0'.repeat(MARKER_BYTES));
});

test('read-write open writes through: the bytes land in the backing file', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const { client } = await startBroker(t);
  const { fd } = expectOpened(t, await client.open({ diskseq: loop.diskseq, access: 'rw' }));
  const marker = makeMarker('W');
  t.is(writeSync(fd, Buffer.from(marker), 0, MARKER_BYTES, OFFSET), MARKER_BYTES);
  fsyncSync(fd);
  t.is(readFileMarker(loop.image.path, OFFSET), marker);
  t.is(readMarker(fd, 0), loop.image.diskMarker, 'and it still reads');
});

test('write-only open: writes work, reads fail with EBADF', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const { client } = await startBroker(t);
  const { fd } = expectOpened(t, await client.open({ diskseq: loop.diskseq, access: 'wo' }));
  const marker = makeMarker('X');
  t.is(writeSync(fd, Buffer.from(marker), 0, MARKER_BYTES, OFFSET), MARKER_BYTES);
  fsyncSync(fd);
  t.is(readFileMarker(loop.image.path, OFFSET), marker);
  const error = t.throws(() => readSync(fd, Buffer.alloc(16), 0, 16, 0));
  t.is((error as NodeJS.ErrnoException | undefined)?.code, 'EBADF');
});
