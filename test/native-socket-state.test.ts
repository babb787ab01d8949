/**
 * What the kernel holds for a connected SEQPACKET socket, through the addon: SIOCOUTQ
 * around a tracked send and as the peer receives or closes, shutdown with packets still
 * queued, the peer's hang-up, SO_PASSCRED telling a zero-length packet from end-of-file,
 * the send buffer, RLIMIT_NOFILE. Each is a fact docs/design.md, "Limits", builds on.
 */
import test, { type ExecutionContext } from 'ava';
import { openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { native, type NativeError } from '../native/index.js';
import { tempDir } from '../testkit/cleanup.js';

/** A connected pair (the daemon's accepted end, the client's end); closed in teardown unless closed by the test. */
function pair(t: ExecutionContext): { daemon: number; client: number; closeClient(): void } {
  const path = join(tempDir(t), 'sock');
  const listener = native.listenSeqpacket(path, 1);
  const client = native.connectSeqpacket(path, true);
  const daemon = native.accept(listener);
  native.close(listener);
  if (daemon === null) throw new Error('no connection to accept');
  let clientOpen = true;
  const closeClient = (): void => {
    if (clientOpen) native.close(client);
    clientOpen = false;
  };
  t.teardown(() => {
    native.close(daemon);
    closeClient();
  });
  return { daemon, client, closeClient };
}

/** SIOCOUTQ before and after one tracked send. */
function tracked(fd: number, data: Buffer, sendFd = -1): { sent: boolean; before: number; after: number } {
  const outq = new Int32Array(2);
  const sent = native.sendTracked(fd, data, sendFd, new Uint8Array(outq.buffer));
  return { sent, before: outq[0]!, after: outq[1]! };
}

test('sendTracked brackets each packet with SIOCOUTQ; the count falls as the peer receives, in order', (t) => {
  const { daemon, client } = pair(t);
  const devNull = openSync('/dev/null', 'r');
  t.teardown(() => native.close(devNull));
  const a = tracked(daemon, Buffer.alloc(200, 1), devNull);
  const b = tracked(daemon, Buffer.alloc(300, 2));
  const c = tracked(daemon, Buffer.alloc(60_000, 3));
  t.true(a.sent && b.sent && c.sent);
  t.is(a.before, 0);
  t.true(a.after > 200, `a packet costs more than its bytes (truesize): ${a.after}`);
  t.is(b.before, a.after);
  t.is(c.before, b.after);
  t.true(c.after - c.before > 60_000);
  t.is(native.unreceivedBytes(daemon), c.after);
  const buffer = Buffer.alloc(65536);
  const first = native.recv(client, buffer);
  t.is(first?.bytes, 200);
  first?.fds.forEach((fd) => native.close(fd));
  t.is(native.unreceivedBytes(daemon), c.after - a.after, 'the oldest packet is received first');
  native.recv(client, buffer);
  native.recv(client, buffer);
  t.is(native.unreceivedBytes(daemon), 0);
});

test('a peer that closes frees what it had not received: SIOCOUTQ reads 0, poll says it hung up', (t) => {
  const { daemon, closeClient } = pair(t);
  const devNull = openSync('/dev/null', 'r');
  t.teardown(() => native.close(devNull));
  for (let i = 0; i < 3; i++) t.true(tracked(daemon, Buffer.alloc(100), devNull).sent);
  t.true(native.unreceivedBytes(daemon) > 0);
  t.false(native.peerHungUp(daemon));
  closeClient();
  t.is(native.unreceivedBytes(daemon), 0);
  t.true(native.peerHungUp(daemon));
});

test('after shutdown the peer still reads what is queued, then end-of-file, and can send nothing; SIOCOUTQ counts until it reads', (t) => {
  const { daemon, client } = pair(t);
  const devNull = openSync('/dev/null', 'r');
  t.teardown(() => native.close(devNull));
  t.true(tracked(daemon, Buffer.from('one'), devNull).sent);
  t.true(tracked(daemon, Buffer.from('two'), devNull).sent);
  native.shutdown(daemon);
  const queued = native.unreceivedBytes(daemon);
  t.true(queued > 0, 'shutdown frees nothing the peer has not read');
  const buffer = Buffer.alloc(16);
  const one = native.recv(client, buffer);
  t.like(one, { bytes: 3 });
  t.is(one?.fds.length, 1);
  one?.fds.forEach((fd) => native.close(fd));
  t.true(native.unreceivedBytes(daemon) < queued);
  const two = native.recv(client, buffer);
  two?.fds.forEach((fd) => native.close(fd));
  t.is(native.unreceivedBytes(daemon), 0);
  t.like(native.recv(client, buffer), { bytes: 0, fds: [], credentials: false }, 'then end-of-file');
  const error = t.throws<NativeError>(() => native.send(client, Buffer.from('x'), -1));
  t.is(error?.code, 'EPIPE');
});

test('with SO_PASSCRED a zero-length packet carries credentials and end-of-file does not', (t) => {
  const { daemon, client, closeClient } = pair(t);
  native.setPassCredentials(daemon);
  t.true(native.send(client, Buffer.alloc(0), -1));
  t.true(native.send(client, Buffer.from('x'), -1));
  const buffer = Buffer.alloc(16);
  t.like(native.recv(daemon, buffer), { bytes: 0, fds: [], credentials: true }, 'the zero-length packet');
  t.like(native.recv(daemon, buffer), { bytes: 1, credentials: true });
  closeClient();
  t.like(native.recv(daemon, buffer), { bytes: 0, fds: [], credentials: false }, 'end-of-file');
  // Without SO_PASSCRED the two read the same: the client's end never asked for credentials.
  const other = pair(t);
  t.true(native.send(other.daemon, Buffer.alloc(0), -1));
  t.like(native.recv(other.client, buffer), { bytes: 0, fds: [], credentials: false });
});

test('ensureSendBuffer leaves a large enough buffer alone and raises a smaller one', (t) => {
  const { daemon } = pair(t);
  const now = native.ensureSendBuffer(daemon, 1);
  t.true(now > 0);
  t.is(native.ensureSendBuffer(daemon, now), now, 'already large enough');
  const wmemMax = Number(readFileSync('/proc/sys/net/core/wmem_max', 'utf8').trim());
  const want = Math.min(now + 65536, 2 * wmemMax);
  if (want <= now) {
    t.log(`net.core.wmem_max (${wmemMax}) does not allow more than ${now}`);
    return;
  }
  t.true(native.ensureSendBuffer(daemon, want) >= want);
});

test('openFileLimit is the soft RLIMIT_NOFILE of this process', (t) => {
  const line = /^Max open files\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  t.truthy(line);
  t.is(native.openFileLimit(), line![1] === 'unlimited' ? Infinity : Number(line![1]));
});
