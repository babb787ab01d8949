// The access mode of a delivered fd is the one requested, enforced by the kernel on the
// fd itself.
import test from 'ava';
import { fsyncSync, readSync, writeSync } from 'node:fs';
import { native } from '../native/index.js';
import { makeMarker, MARKER_BYTES, readFileMarker, readMarker } from '../testkit/image.js';
import { createLoop } from '../testkit/loop.js';
import { fdFlags } from '../testkit/proc.js';
import { expectOpened, startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';

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

test('direct, nonblock, sync and dsync reach the delivered fd, and nothing else does', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const { client } = await startBroker(t);
  const c = native.constants;
  const ACCMODE = 3;
  const optional = c.O_DIRECT | c.O_NONBLOCK | c.O_SYNC | c.O_DSYNC;
  const cases = [
    { params: {}, access: c.O_RDONLY, flags: 0 },
    { params: { access: 'rw' as const }, access: c.O_RDWR, flags: 0 },
    { params: { direct: true }, access: c.O_RDONLY, flags: c.O_DIRECT },
    { params: { nonblock: true }, access: c.O_RDONLY, flags: c.O_NONBLOCK },
    { params: { access: 'rw' as const, sync: true }, access: c.O_RDWR, flags: c.O_SYNC },
    { params: { access: 'rw' as const, dsync: true }, access: c.O_RDWR, flags: c.O_DSYNC },
  ];
  for (const { params, access, flags } of cases) {
    const opened = expectOpened(t, await client.open({ diskseq: loop.diskseq, ...params }), JSON.stringify(params));
    const got = fdFlags(opened.fd);
    t.is(got & ACCMODE, access, `access mode for ${JSON.stringify(params)}`);
    t.is(got & optional, flags, `flags for ${JSON.stringify(params)}: ${got.toString(8)}`);
    opened.close();
  }
});
