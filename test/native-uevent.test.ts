/** The uevent netlink socket sees the kernel's 'change' event of a loop attach. */
import test, { type ExecutionContext } from 'ava';
import { native, POLL_READABLE, type NativeError } from '../native/index.js';
import { fdFlags } from '../testkit/proc.js';
import { sysfsDiskseq } from '../testkit/loop.js';
import { attachLoop, claimLoop, makeImage } from './helpers/native-fixtures.js';
import { needsRoot } from './helpers/ci.js';

/** Opens a uevent socket closed in teardown. */
function ueventSocket(t: ExecutionContext, rcvbuf = 0): number {
  const fd = native.openUeventSocket(rcvbuf);
  t.teardown(() => native.close(fd));
  return fd;
}

/** Parses `action@devpath\0KEY=VALUE\0...`. */
function parseUevent(bytes: Buffer): { header: string; env: Map<string, string> } {
  const [header, ...pairs] = bytes.toString('utf8').split('\0').filter((s) => s.length > 0);
  const env = new Map<string, string>();
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq > 0) env.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return { header, env };
}

/**
 * Waits (through a Poller) for a kernel uevent matching `match`; other events are skipped.
 * Rejects after a generous deadline so a missing event fails instead of hanging.
 */
function waitForUevent(
  t: ExecutionContext,
  fd: number,
  match: (header: string, env: Map<string, string>) => boolean,
): Promise<{ header: string; env: Map<string, string>; senderPid: number }> {
  return new Promise((resolve, reject) => {
    const buffer = Buffer.alloc(8192);
    const timer = setTimeout(() => {
      poller.close();
      reject(new Error('no matching uevent within 30 s'));
    }, 30_000);
    const poller = new native.Poller(fd, (status) => {
      if (status < 0) {
        poller.close();
        clearTimeout(timer);
        reject(new Error(`poll status ${status}`));
        return;
      }
      for (;;) {
        const received = native.recvUevent(fd, buffer);
        if (received === null) return;
        const event = parseUevent(buffer.subarray(0, received.bytes));
        if (received.senderPid === 0 && match(event.header, event.env)) {
          poller.close();
          clearTimeout(timer);
          resolve({ ...event, senderPid: received.senderPid });
          return;
        }
      }
    });
    t.teardown(() => {
      clearTimeout(timer);
      poller.close();
    });
    poller.start(POLL_READABLE);
  });
}

test('attaching a loop device sends a change uevent with the new DISKSEQ', async (t) => {
  if (!needsRoot(t)) return;
  const fd = ueventSocket(t, 1 << 20);
  t.is(fdFlags(fd) & native.constants.O_CLOEXEC, native.constants.O_CLOEXEC);
  const loop = claimLoop(t);
  const image = makeImage(t, 1 << 20);
  const name = `loop${loop.index}`;
  const event = waitForUevent(t, fd, (header) => header === `change@/devices/virtual/block/${name}`);
  attachLoop(loop, image.fd, 0, 0, 0);
  const { env, senderPid } = await event;
  t.is(senderPid, 0);
  t.is(env.get('ACTION'), 'change');
  t.is(env.get('DEVNAME'), name);
  t.is(BigInt(env.get('DISKSEQ') ?? '-1'), sysfsDiskseq(loop.name));
});

test('a uevent longer than the buffer is reported truncated', async (t) => {
  if (!needsRoot(t)) return;
  const fd = ueventSocket(t);
  const loop = claimLoop(t);
  const image = makeImage(t, 1 << 20);
  attachLoop(loop, image.fd, 0, 0, 0); // at least one event is now queued
  const received = native.recvUevent(fd, Buffer.alloc(8));
  if (received === null) return t.fail('no uevent queued after a loop attach');
  t.is(received.bytes, 8);
  t.true(received.truncated);
});

test('recvUevent on a non-netlink fd throws a Node-shaped error', (t) => {
  const image = makeImage(t, 16);
  const error = t.throws<NativeError>(() => native.recvUevent(image.fd, Buffer.alloc(8)));
  t.is(error?.code, 'ENOTSOCK');
  t.is(error?.syscall, 'recvmsg');
});

test('an overrun uevent socket throws ENOBUFS', (t) => {
  if (!needsRoot(t)) return;
  const fd = ueventSocket(t, 1); // the kernel's minimum receive buffer: a few events
  const loop = claimLoop(t);
  const first = makeImage(t, 1 << 20, 1);
  const second = makeImage(t, 1 << 20, 2);
  attachLoop(loop, first.fd, native.constants.LO_FLAGS_READ_ONLY, 0, 0);
  // Each LOOP_CHANGE_FD sends a 'change' uevent; far more than the buffer holds.
  for (let i = 0; i < 32; i++) native.loopChangeFd(loop.fd, i % 2 === 0 ? second.fd : first.fd);
  const buffer = Buffer.alloc(8192);
  const error = t.throws<NativeError>(() => {
    for (let i = 0; i < 1000 && native.recvUevent(fd, buffer) !== null; i++);
  });
  t.is(error?.code, 'ENOBUFS');
  t.is(error?.errno, 105);
});
