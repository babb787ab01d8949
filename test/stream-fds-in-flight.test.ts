/**
 * The kernel facts FdsInFlight relies on for a unix SOCK_STREAM socket (docs/design.md,
 * "Limits: fds in flight"), measured here against a real peer rather than assumed from
 * SEQPACKET: every sendmsg is charged to the sender (SIOCOUTQ) on its own, more than its
 * bytes, until the peer has read all of it, in order; the fd rides on the first byte of the
 * write that carries it; a message too large for one sendmsg is written in several, only
 * the first with the fd. So booking each write as a "packet" counts exactly the fds of the
 * messages the peer has not finished reading — one more than it truly lacks while it is in
 * the middle of a message, never fewer.
 */
import test, { type ExecutionContext } from 'ava';
import { openSync } from 'node:fs';
import { join } from 'node:path';
import { FdsInFlight } from '../native/fds-in-flight.js';
import { native } from '../native/index.js';
import { tempDir } from '../testkit/cleanup.js';

/** A connected stream pair (the daemon's accepted end, the client's end), closed in teardown. */
function pair(t: ExecutionContext): { daemon: number; client: number } {
  const path = join(tempDir(t), 'sock');
  const listener = native.listenStream(path, 1);
  const client = native.connectStream(path, true);
  const daemon = native.accept(listener);
  native.close(listener);
  if (daemon === null) throw new Error('no connection to accept');
  t.teardown(() => {
    native.close(daemon);
    native.close(client);
  });
  return { daemon, client };
}

/** An FdsInFlight with an account that admits everything and sums what it is told. */
function tracked(fd: number): { inFlight: FdsInFlight; told: { total: number } } {
  const told = { total: 0 };
  const inFlight = new FdsInFlight(fd, { mayAdd: () => true, changed: (delta) => { told.total += delta; } });
  return { inFlight, told };
}

/** Reads up to `max` bytes; returns how many came and how many fds (closed). */
function read(fd: number, max: number): { bytes: number; fds: number } {
  const got = native.recv(fd, Buffer.alloc(max));
  if (got === null) return { bytes: 0, fds: 0 };
  got.fds.forEach((f) => native.close(f));
  return { bytes: got.bytes, fds: got.fds.length };
}

const devNull = (t: ExecutionContext): number => {
  const fd = openSync('/dev/null', 'r');
  t.teardown(() => native.close(fd));
  return fd;
};

test('each stream write is charged on its own until read, in order; the count is exact at message boundaries, one over inside a message', (t) => {
  const { daemon, client } = pair(t);
  const { inFlight, told } = tracked(daemon);
  const fd = devNull(t);
  const sizes = [60, 100, 700, 4000, 90, 1500, 61, 3000, 250, 80];
  const starts: number[] = [];
  let total = 0;
  for (const [i, size] of sizes.entries()) {
    starts.push(total);
    total += size;
    const before = native.unreceivedBytes(daemon);
    t.is(inFlight.sendStream(Buffer.alloc(size, i), 0, fd), size, 'the kernel takes a small message whole');
    const cost = native.unreceivedBytes(daemon) - before;
    t.true(cost > size, `a write of ${size} bytes costs more (its skb's truesize): ${cost}`);
  }
  t.is(inFlight.count, sizes.length, 'each write with its fd');
  t.is(told.total, sizes.length);

  // The peer reads in odd-sized pieces. Ground truth: fds received, bytes read.
  let readBytes = 0;
  let receivedFds = 0;
  while (readBytes < total) {
    const got = read(client, 777);
    if (got.bytes === 0) break;
    const startedBefore = starts.filter((s) => s < readBytes).length;
    readBytes += got.bytes;
    receivedFds += got.fds;
    // The fd of a message comes with the read that takes its first byte, never later.
    const started = starts.filter((s) => s < readBytes).length;
    t.is(receivedFds, started, `after ${readBytes} bytes: the fds of the ${started} messages begun`);
    t.true(got.fds <= started - startedBefore);
    inFlight.refresh();
    const unfinished = sizes.map((size, k) => ({ k, end: starts[k]! + size })).filter(({ end }) => end > readBytes);
    const inside = unfinished.some(({ k }) => starts[k]! < readBytes);
    const lacking = unfinished.filter(({ k }) => starts[k]! >= readBytes).length;
    t.is(inFlight.count, lacking + (inside ? 1 : 0),
      `after ${readBytes} bytes: ${lacking} fds not received${inside ? ', and one of a message half read' : ''}`);
    t.is(told.total, inFlight.count, 'the account follows the count');
  }
  t.is(readBytes, total);
  t.is(native.unreceivedBytes(daemon), 0, 'all read: nothing charged');
  t.is(inFlight.count, 0);
});

test('a message larger than one sendmsg is written in parts; only the first carries the fd and is counted', (t) => {
  const { daemon, client } = pair(t);
  const { inFlight, told } = tracked(daemon);
  const fd = devNull(t);
  const big = Buffer.alloc(1 << 20, 7);
  let offset = inFlight.sendStream(big, 0, fd);
  t.true(offset > 0 && offset < big.length, `the kernel took ${offset} of ${big.length} bytes`);
  t.is(inFlight.count, 1);
  let writes = 1;
  let readBytes = 0;
  let fdsSeen = 0;
  while (readBytes < big.length) {
    if (offset < big.length) {
      const n = inFlight.sendStream(big, offset, -1);
      if (n > 0) writes++;
      offset += n;
    }
    const got = read(client, 48 * 1024);
    if (readBytes === 0) t.is(got.fds, 1, 'the fd comes with the first bytes');
    else fdsSeen += got.fds;
    readBytes += got.bytes;
    inFlight.refresh();
    t.true(inFlight.count <= 1, 'the continuations carry no fd');
  }
  t.is(fdsSeen, 0, 'no other read brought an fd');
  t.true(writes > 2, `${writes} writes`);
  t.is(inFlight.count, 0, 'read whole: received');
  t.is(told.total, 0);
});

test('a peer that closes frees the writes it had not read: SIOCOUTQ reads 0 and the count goes with it', (t) => {
  const path = join(tempDir(t), 'sock');
  const listener = native.listenStream(path, 1);
  const client = native.connectStream(path, true);
  const daemon = native.accept(listener)!;
  native.close(listener);
  t.teardown(() => native.close(daemon));
  const { inFlight, told } = tracked(daemon);
  const fd = devNull(t);
  for (let i = 0; i < 5; i++) inFlight.sendStream(Buffer.alloc(100, i), 0, fd);
  t.is(inFlight.count, 5);
  t.is(native.unreadBytes(client), 500, 'SIOCINQ on the peer: every byte queued');
  native.close(client);
  t.is(native.unreceivedBytes(daemon), 0);
  inFlight.refresh();
  t.is(inFlight.count, 0);
  t.is(told.total, 0);
});
