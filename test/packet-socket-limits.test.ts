/**
 * The daemon's side of native/packet-socket.ts against a real SEQPACKET peer
 * (docs/design.md, "Limits"): fds held back while its account refuses them and sent once
 * the peer receives; a closed socket kept, shut down, while the peer still has fds, and
 * released once it takes them; a hang-up noticed while reading is paused; a zero-length
 * packet delivered, not taken for end-of-file. The account here is a plain counter; the
 * daemon's ledger (src/quotas.ts) has its own test.
 */
import test, { type ExecutionContext } from 'ava';
import { openSync } from 'node:fs';
import { join } from 'node:path';
import { native } from '../native/index.js';
import { PacketSocket, type CloseReason, type IncomingPacket, type PacketSocketLimits } from '../native/packet-socket.js';
import { receiveBuffer } from '../native/queued-socket.js';
import { sleep, tempDir } from '../testkit/cleanup.js';

interface Harness {
  socket: PacketSocket;
  /** The peer's raw fd (closed in teardown unless closePeer ran). */
  peer: number;
  daemonFd: number;
  closePeer(): void;
  packets: IncomingPacket[];
  closes: CloseReason[];
  released: number;
  drains: number;
  /** What the account was told: the socket's unreceived fds by its own count. */
  counted: { total: number };
}

/** A daemon-side PacketSocket on an accepted connection whose account allows `bound` fds. */
function harness(t: ExecutionContext, bound: number, extra: Partial<PacketSocketLimits> = {}): Harness {
  const path = join(tempDir(t), 'sock');
  const listener = native.listenSeqpacket(path, 1);
  const peer = native.connectSeqpacket(path, true);
  const daemonFd = native.accept(listener)!;
  native.close(listener);
  const counted = { total: 0 };
  let peerOpen = true;
  const h: Harness = {
    peer, daemonFd, packets: [], closes: [], released: 0, drains: 0, counted,
    closePeer: () => {
      if (peerOpen) native.close(peer);
      peerOpen = false;
    },
    socket: undefined as unknown as PacketSocket,
  };
  h.socket = new PacketSocket(daemonFd, {
    receiveSize: 4096, maxQueuedPackets: 64, maxQueuedBytes: 1 << 20, maxQueuedFds: 64, stallTimeoutMs: 0,
    unreceivedFds: { mayAdd: (unreceived) => unreceived < bound, changed: (delta) => { counted.total += delta; } },
    closeOnHangUp: true, passCredentials: true, ...extra,
  }, {
    onPacket: (packet) => h.packets.push({ ...packet, data: Buffer.from(packet.data) }),
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

/** Receives up to `n` packets on the peer's raw fd, closing their fds; returns how many fds came. */
function receive(fd: number, n: number): number {
  const buffer = Buffer.alloc(4096);
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

test('fds beyond the account are held back, then sent as the peer receives', async (t) => {
  const h = harness(t, 3);
  for (let i = 0; i < 5; i++) t.true(h.socket.send(Buffer.from(`p${i}`), devNull()));
  t.is(h.socket.unreceivedFds, 3);
  t.is(h.counted.total, 3, 'the account was told of each fd in flight');
  t.true(h.socket.hasQueuedOutput, 'two wait in the daemon');
  t.true(h.socket.fdsHeldBack());
  t.is(receive(h.peer, 2), 2);
  await until('the held-back fds to go out', () => !h.socket.hasQueuedOutput);
  t.is(h.socket.unreceivedFds, 3, 'two received, two more sent');
  t.is(receive(h.peer, 10), 3);
  await until('the account to open again', () => !h.socket.fdsHeldBack());
  h.socket.refreshUnreceived();
  t.is(h.socket.unreceivedFds, 0);
  t.is(h.counted.total, 0);
  t.true(h.drains > 0);
});

test('a closed socket whose peer holds unreceived fds is shut down and released once it takes them', async (t) => {
  const h = harness(t, 8);
  for (let i = 0; i < 3; i++) h.socket.send(Buffer.from('x'), devNull());
  h.socket.close();
  t.deepEqual(h.closes, [{ kind: 'local' }]);
  t.is(h.released, 0, 'kept: the peer has not received its fds');
  t.is(h.counted.total, 3, 'and still counted');
  t.is(receive(h.peer, 10), 3, 'the peer still gets every fd');
  await until('the socket to be released', () => h.released === 1);
  t.is(h.counted.total, 0);
  t.throws(() => native.unreceivedBytes(h.daemonFd), undefined, 'the daemon\'s fd is closed');
});

test('a kept socket is released when the peer closes without reading', async (t) => {
  const h = harness(t, 8);
  for (let i = 0; i < 3; i++) h.socket.send(Buffer.from('x'), devNull());
  h.socket.close();
  t.is(h.released, 0);
  h.closePeer();
  await until('the socket to be released', () => h.released === 1);
  t.is(h.counted.total, 0);
});

test('without unreceived fds a closed socket is released at once', (t) => {
  const h = harness(t, 8);
  h.socket.send(Buffer.from('no fd'));
  h.socket.close();
  t.is(h.released, 1);
});

test('a peer that hangs up while reading is paused is noticed at once', async (t) => {
  const h = harness(t, 8);
  h.socket.pauseReading();
  t.true(native.send(h.peer, Buffer.from('unread'), -1));
  h.closePeer();
  await until('the hang-up', () => h.closes.length === 1);
  t.deepEqual(h.closes, [{ kind: 'peer-closed' }]);
  t.is(h.packets.length, 0, 'what it sent before is not read: nobody is left to answer it');
});

test('a zero-length packet is delivered; end-of-file closes', async (t) => {
  const h = harness(t, 8);
  t.true(native.send(h.peer, Buffer.alloc(0), -1));
  await until('the packet', () => h.packets.length === 1);
  t.is(h.packets[0]!.data.length, 0);
  t.is(h.closes.length, 0);
  h.closePeer();
  await until('end-of-file', () => h.closes.length === 1);
  t.deepEqual(h.closes, [{ kind: 'peer-closed' }]);
});

test('sockets reading into the one shared receive buffer each get their own packets', async (t) => {
  t.is(receiveBuffer(4096), receiveBuffer(4096), 'one buffer per size');
  t.not(receiveBuffer(4096), receiveBuffer(8192));
  const a = harness(t, 8);
  const b = harness(t, 8);
  // Interleaved and of different lengths, so that a packet read over another's bytes shows.
  for (let i = 0; i < 50; i++) {
    native.send(a.peer, Buffer.from(`a${i}:${'A'.repeat(i * 7)}`), -1);
    native.send(b.peer, Buffer.from(`b${i}`), -1);
  }
  await until('both sockets to read 50 packets', () => a.packets.length === 50 && b.packets.length === 50);
  t.deepEqual(a.packets.map((p) => p.data.toString()), Array.from({ length: 50 }, (_, i) => `a${i}:${'A'.repeat(i * 7)}`));
  t.deepEqual(b.packets.map((p) => p.data.toString()), Array.from({ length: 50 }, (_, i) => `b${i}`));
});
