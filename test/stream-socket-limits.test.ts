/**
 * The daemon's side of native/stream-socket.ts against a real SOCK_STREAM peer
 * (docs/design.md, "Limits: fds in flight"), as packet-socket-limits.test.ts does for
 * SEQPACKET: fds held back while the account refuses them and sent once the peer reads; the
 * stall clock running meanwhile; a closed socket kept, shut down, while the peer still has
 * fds, and released once it takes them or closes. The account is a plain counter here.
 */
import test, { type ExecutionContext } from 'ava';
import { openSync } from 'node:fs';
import { join } from 'node:path';
import { native } from '../native/index.js';
import { StreamSocket, type CloseReason, type StreamSocketLimits } from '../native/stream-socket.js';
import { sleep, tempDir } from '../testkit/cleanup.js';

interface Harness {
  socket: StreamSocket;
  /** The peer's raw fd (closed in teardown unless closePeer ran). */
  peer: number;
  daemonFd: number;
  closePeer(): void;
  closes: CloseReason[];
  released: number;
  drains: number;
  counted: { total: number };
}

/** A daemon-side StreamSocket on an accepted connection whose account allows `bound` fds. */
function harness(t: ExecutionContext, bound: number, extra: Partial<StreamSocketLimits> = {}): Harness {
  const path = join(tempDir(t), 'sock');
  const listener = native.listenStream(path, 1);
  const peer = native.connectStream(path, true);
  const daemonFd = native.accept(listener)!;
  native.close(listener);
  const counted = { total: 0 };
  let peerOpen = true;
  const h: Harness = {
    peer, daemonFd, closes: [], released: 0, drains: 0, counted,
    closePeer: () => {
      if (peerOpen) native.close(peer);
      peerOpen = false;
    },
    socket: undefined as unknown as StreamSocket,
  };
  h.socket = new StreamSocket(daemonFd, {
    receiveSize: 4096, maxQueuedMessages: 64, maxQueuedBytes: 1 << 20, maxQueuedFds: 64, stallTimeoutMs: 0,
    unreceivedFds: { mayAdd: (unreceived) => unreceived < bound, changed: (delta) => { counted.total += delta; } }, ...extra,
  }, {
    onData: () => undefined,
    onClose: (reason) => h.closes.push(reason),
    onReleased: () => h.released++,
    onDrain: () => h.drains++,
  });
  t.teardown(() => {
    h.socket.destroy();
    h.closePeer();
  });
  return h;
}

/** Reads up to `n` times on the peer's raw fd (4 bytes each: one message), closing fds; returns how many fds came. */
function receive(fd: number, n: number): number {
  const buffer = Buffer.alloc(4);
  let fds = 0;
  for (let i = 0; i < n; i++) {
    const got = native.recv(fd, buffer);
    if (got === null || (got.bytes === 0 && got.fds.length === 0)) break;
    fds += got.fds.length;
    got.fds.forEach((f) => native.close(f));
  }
  return fds;
}

async function until(what: string, condition: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

const devNull = (): number => openSync('/dev/null', 'r');

test('fds beyond the account are held back at the head of the queue, then sent as the peer reads', async (t) => {
  const h = harness(t, 3);
  for (let i = 0; i < 5; i++) t.true(h.socket.send(Buffer.from(`m${i}\0\0`), devNull()));
  t.is(h.socket.unreceivedFds, 3);
  t.is(h.counted.total, 3, 'the account was told of each fd in flight');
  t.true(h.socket.hasQueuedOutput, 'two wait in the daemon');
  t.is(native.unreadBytes(h.peer), 12, 'the peer was sent three messages, no more');
  t.true(h.socket.fdsHeldBack());
  t.is(receive(h.peer, 2), 2);
  await until('the held-back fds to go out', () => !h.socket.hasQueuedOutput);
  t.is(h.socket.unreceivedFds, 3, 'two read, two more sent');
  t.is(receive(h.peer, 10), 3);
  await until('the account to open again', () => !h.socket.fdsHeldBack());
  t.is(h.socket.unreceivedFds, 0);
  t.is(h.counted.total, 0);
  t.true(h.drains > 0);
});

test('a peer that reads nothing while fds are held back is dropped by the stall clock, and its socket kept until it takes them', async (t) => {
  const h = harness(t, 2, { stallTimeoutMs: 200 });
  for (let i = 0; i < 3; i++) h.socket.send(Buffer.from(`m${i}\0\0`), devNull());
  t.true(h.socket.fdsHeldBack());
  await until('the stall clock', () => h.closes.length === 1);
  t.deepEqual(h.closes, [{ kind: 'output-stalled' }]);
  t.is(h.released, 0, 'kept: the peer has not received its fds');
  t.is(h.counted.total, 2, 'and still counted');
  t.is(receive(h.peer, 10), 2, 'the peer still gets those sent; the held one was never sent');
  await until('the socket to be released', () => h.released === 1);
  t.is(h.counted.total, 0);
  t.throws(() => native.unreceivedBytes(h.daemonFd), undefined, 'the daemon\'s fd is closed');
});

test('a kept stream socket is released when the peer closes without reading', async (t) => {
  const h = harness(t, 8);
  for (let i = 0; i < 3; i++) h.socket.send(Buffer.from('x'), devNull());
  h.socket.close();
  t.is(h.released, 0);
  h.closePeer();
  await until('the socket to be released', () => h.released === 1);
  t.is(h.counted.total, 0);
});

test('without unreceived fds a closed stream socket is released at once', (t) => {
  const h = harness(t, 8);
  h.socket.send(Buffer.from('no fd'));
  h.socket.close();
  t.is(h.released, 1);
});

test('destroy closes a kept stream socket at once and gives its count back', (t) => {
  const h = harness(t, 8);
  h.socket.send(Buffer.from('x'), devNull());
  h.socket.close();
  t.is(h.released, 0);
  h.socket.destroy();
  t.is(h.released, 1);
  t.is(h.counted.total, 0);
});
