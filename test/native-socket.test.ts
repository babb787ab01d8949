/** SEQPACKET sockets through the addon: listen/connect/accept, fd passing, truncation, credentials. */
import test, { type ExecutionContext } from 'ava';
import { chmodSync, fstatSync, readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { native, type NativeError } from '../native/index.js';
import { fdFlags } from '../testkit/proc.js';
import { tempDir } from '../testkit/cleanup.js';
import { makeImage } from './helpers/native-fixtures.js';
import { needsRoot } from './helpers/ci.js';

const { O_CLOEXEC, O_NONBLOCK } = native.constants;

/** A connected pair (client, server side) plus the listener; every fd closed in teardown. */
function connectedPair(t: ExecutionContext): { listener: number; client: number; server: number; path: string } {
  const path = join(tempDir(t), 'sock');
  const listener = native.listenSeqpacket(path, 8);
  t.teardown(() => native.close(listener));
  t.is(native.accept(listener), null); // nothing pending yet: EAGAIN, not an error
  const client = native.connectSeqpacket(path, true);
  t.teardown(() => native.close(client));
  const server = native.accept(listener);
  if (server === null) throw new Error('accept found no pending connection after connect');
  t.teardown(() => native.close(server));
  return { listener, client, server, path };
}

test('a packet with one fd arrives whole, with the fd', (t) => {
  const { client, server } = connectedPair(t);
  const image = makeImage(t, 4096);
  t.true(native.send(client, Buffer.from('hello'), image.fd));

  const buffer = Buffer.alloc(64);
  const received = native.recv(server, buffer);
  if (received === null) return t.fail('no packet');
  t.teardown(() => received.fds.forEach((fd) => native.close(fd)));
  t.is(received.bytes, 5);
  t.is(buffer.subarray(0, 5).toString(), 'hello');
  t.false(received.truncated);
  t.false(received.controlTruncated);
  t.is(received.fds.length, 1);
  t.not(received.fds[0], image.fd);
  t.is(fdFlags(received.fds[0]) & O_CLOEXEC, O_CLOEXEC); // MSG_CMSG_CLOEXEC
  t.is(fstatSync(received.fds[0]).ino, fstatSync(image.fd).ino);
  t.is(native.recv(server, buffer), null); // drained: EAGAIN
});

test('a packet without fd, and an empty packet', (t) => {
  const { client, server } = connectedPair(t);
  t.true(native.send(server, Buffer.from([1, 2, 3]), -1));
  t.true(native.send(server, Buffer.alloc(0), -1));
  const buffer = Buffer.alloc(16);
  t.like(native.recv(client, buffer), { bytes: 3, truncated: false, fds: [] });
  t.like(native.recv(client, buffer), { bytes: 0, truncated: false, fds: [] });
});

test('a packet longer than the buffer is reported truncated (MSG_TRUNC)', (t) => {
  const { client, server } = connectedPair(t);
  t.true(native.send(client, Buffer.from('0123456789'), -1));
  const small = Buffer.alloc(4);
  const received = native.recv(server, small);
  t.like(received, { bytes: 4, truncated: true, controlTruncated: false, fds: [] });
  t.is(small.toString(), '0123');
  t.is(native.recv(server, Buffer.alloc(16)), null); // the rest of the packet is gone
});

test('peer close reads as a zero-byte packet and sending to it gives EPIPE', (t) => {
  const path = join(tempDir(t), 'sock');
  const listener = native.listenSeqpacket(path, 1);
  t.teardown(() => native.close(listener));
  const client = native.connectSeqpacket(path, false);
  const server = native.accept(listener);
  if (server === null) return t.fail('no connection');
  t.teardown(() => native.close(server));
  native.close(client);
  t.like(native.recv(server, Buffer.alloc(8)), { bytes: 0, fds: [] });
  const error = t.throws<NativeError>(() => native.send(server, Buffer.from('x'), -1));
  t.is(error?.code, 'EPIPE');
  t.is(error?.syscall, 'sendmsg');
});

test('peer credentials and groups are those of this process', (t) => {
  const { client, server } = connectedPair(t);
  t.deepEqual(native.peerCredentials(server), { uid: process.getuid!(), gid: process.getgid!(), pid: process.pid });
  t.deepEqual(native.peerCredentials(client), { uid: process.getuid!(), gid: process.getgid!(), pid: process.pid });
  const groups = native.peerGroups(server);
  t.true(Array.isArray(groups));
  // The supplementary groups of /proc (process.getgroups() may add the egid).
  const status = readFileSync('/proc/self/status', 'utf8');
  const own = (/^Groups:[ \t]*([^\n]*)$/m.exec(status)?.[1] ?? '').split(/\s+/).filter(Boolean).map(Number);
  t.deepEqual([...groups].sort(), own.sort());
});

test('isListeningSeqpacket tells a listener from a connected socket and a file', (t) => {
  const { listener, client } = connectedPair(t);
  t.true(native.isListeningSeqpacket(listener));
  t.false(native.isListeningSeqpacket(client));
  const image = makeImage(t, 16);
  t.is(t.throws<NativeError>(() => native.isListeningSeqpacket(image.fd))?.code, 'ENOTSOCK');
});

test('connect to a missing path fails with ENOENT and an over-long path with ENAMETOOLONG', (t) => {
  const dir = tempDir(t);
  const missing = t.throws<NativeError>(() => native.connectSeqpacket(join(dir, 'none'), true));
  t.is(missing?.code, 'ENOENT');
  t.is(missing?.syscall, 'connect');
  const long = '/tmp/' + 'x'.repeat(200);
  t.is(t.throws<NativeError>(() => native.connectSeqpacket(long, true))?.code, 'ENAMETOOLONG');
  t.is(t.throws<NativeError>(() => native.listenSeqpacket(long, 1))?.code, 'ENAMETOOLONG');
});

test('a full socket makes send return false instead of blocking', (t) => {
  const { client } = connectedPair(t);
  const chunk = Buffer.alloc(32 * 1024);
  let sent = 0;
  while (native.send(client, chunk, -1)) {
    sent++;
    if (sent > 10_000) return t.fail('send never reported EAGAIN');
  }
  t.true(sent > 0);
});

test('setNonblockCloexec makes a blocking socket non-blocking', (t) => {
  const path = join(tempDir(t), 'sock');
  const listener = native.listenSeqpacket(path, 1);
  t.teardown(() => native.close(listener));
  const client = native.connectSeqpacket(path, false);
  t.teardown(() => native.close(client));
  native.setNonblockCloexec(client);
  t.is(native.recv(client, Buffer.alloc(8)), null); // would block forever if still blocking
});

test('every socket fd is close-on-exec; listener and accepted ones are non-blocking', (t) => {
  const { listener, client, server, path } = connectedPair(t);
  for (const fd of [listener, client, server]) {
    t.is(fdFlags(fd) & O_CLOEXEC, O_CLOEXEC);
    t.is(fdFlags(fd) & O_NONBLOCK, O_NONBLOCK);
  }
  const blocking = native.connectSeqpacket(path, false);
  t.teardown(() => native.close(blocking));
  t.is(fdFlags(blocking) & O_CLOEXEC, O_CLOEXEC);
  t.is(fdFlags(blocking) & O_NONBLOCK, 0);
});

test('peer credentials of an unprivileged peer process are its own', async (t) => {
  if (!needsRoot(t)) return;
  const dir = tempDir(t);
  chmodSync(dir, 0o755);
  const path = join(dir, 'sock');
  const listener = native.listenSeqpacket(path, 1);
  t.teardown(() => native.close(listener));
  chmodSync(path, 0o777);
  // The child loads the addon as root, becomes nobody (the checkout may be out of nobody's
  // reach), connects and waits for one packet, so its socket stays open.
  const addon = new URL('../../build/Release/diskseqd.node', import.meta.url).pathname;
  const becomePeer = new URL('./helpers/become-peer.js', import.meta.url).href;
  const child = spawn(
    process.execPath,
    ['--input-type=module', '-e', `import { createRequire } from 'node:module'; import { readSync } from 'node:fs';
      import { becomePeer } from ${JSON.stringify(becomePeer)};
      const n = createRequire(import.meta.url)(${JSON.stringify(addon)});
      becomePeer({ uid: 65534, gid: 65534 });
      const fd = n.connectSeqpacket(${JSON.stringify(path)}, false);
      process.stdout.write('connected\\n'); readSync(fd, Buffer.alloc(1));`],
    { stdio: ['ignore', 'pipe', 'inherit'], cwd: '/' },
  );
  t.teardown(() => child.kill());
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`child exited early with ${code}`)));
  });
  const server = native.accept(listener);
  if (server === null) return t.fail('no pending connection from the child');
  t.teardown(() => native.close(server));
  t.deepEqual(native.peerCredentials(server), { uid: 65534, gid: 65534, pid: child.pid });
  t.deepEqual(native.peerGroups(server), []);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  t.true(native.send(server, Buffer.from('x'), -1));
  t.is(await exited, 0);
});
