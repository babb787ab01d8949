// A client that sends fds (docs/design.md, "Wire contract"): any packet with SCM_RIGHTS is
// a protocol violation — the daemon closes the fds it received, drops the connection
// (answering nothing) and logs it once. Checked from outside twice over: the daemon's fd
// count returns to the baseline, and the write end of a FIFO we sent reaches end-of-file on
// our read end, which happens only once every copy of it — the daemon's included — is
// closed.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { closeSync, constants, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { DaemonProcess, describeFootprint } from '../testkit/daemon.js';
import { encodeRequest, MAX_REQUEST_BYTES } from '../testkit/fuzz-packets.js';
import { RawClient } from '../testkit/raw-client.js';
import { createLoop } from '../testkit/loop.js';
import { tempDir } from '../testkit/cleanup.js';
import { needsRoot } from './helpers/ci.js';
import { checkValidOpen, u64 } from './helpers/hostile-requests.js';

const VIOLATION_MSG = 'protocol violation; dropping connection';

/** A FIFO with both ends open non-blocking; `writerGone()` is true once no write end is open anywhere. */
function fifo(dir: string, name: string): { reader: number; writer: number; writerGone(): boolean; close(): void } {
  const path = join(dir, name);
  execFileSync('mkfifo', [path]);
  const reader = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const writer = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
  let readerOpen = true;
  return {
    reader, writer,
    writerGone(): boolean {
      try {
        return readSync(reader, Buffer.alloc(1)) === 0; // 0 = end-of-file: no writer left
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EAGAIN') return false; // a writer is still open
        throw error;
      }
    },
    close(): void {
      if (readerOpen) closeSync(reader);
      readerOpen = false;
    },
  };
}

async function eventually(check: () => boolean, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

test('fds sent by a client are closed and cost it the connection, with nothing answered', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const daemon = await DaemonProcess.start({ capture: 'counts' }, t);
  const dir = tempDir(t, 'diskseqd-hostile-fifo-');
  t.is(await checkValidOpen(daemon.socketPath, loop), undefined, 'warm-up open');
  const before = { fds: await daemon.stableFdCount(), rssBytes: daemon.rssBytes() };
  t.log(`daemon before: ${describeFootprint(before)}`);
  const violationsBefore = daemon.count(VIOLATION_MSG);

  const hello = encodeRequest({ id: u64(1), hello: { protocolVersion: 1 } });
  const open = encodeRequest({ id: u64(2), open: { diskseq: u64(loop.diskseq) } });
  const cases: Array<[string, Buffer]> = [
    ['a valid Hello', hello],
    ['a valid open', open],
    ['an empty packet', Buffer.alloc(0)],
    ['an oversized packet', Buffer.alloc(MAX_REQUEST_BYTES + 100, 0x41)],
    ['undecodable bytes', Buffer.from([0xff, 0xff, 0xff])],
  ];
  let n = 0;
  for (const [what, data] of cases) {
    const pipe = fifo(dir, `f${n++}`);
    t.teardown(() => pipe.close());
    const client = new RawClient(daemon.socketPath);
    t.teardown(() => client.close());
    const outcome = await client.send(data, pipe.writer);
    closeSync(pipe.writer); // ours; from now on only the daemon's copy keeps the FIFO "written"
    t.true(outcome.sent, `${what}: sent with an fd`);
    const answer = await client.next(5000);
    t.true(answer !== 'timeout' && answer.kind !== 'packet', `${what} with an fd: connection dropped without an answer (got ${answer === 'timeout' ? 'nothing' : answer.kind})`);
    t.true(await eventually(() => pipe.writerGone()), `${what}: the daemon closed the fd it received`);
    client.close();
  }

  // The client's own socket, a block device fd, and several fd-carrying packets in a row
  // (those after the first are still queued when the daemon drops the connection).
  {
    const client = new RawClient(daemon.socketPath);
    t.teardown(() => client.close());
    t.true((await client.send(hello, client.fd)).sent);
    const answer = await client.next(5000);
    t.true(answer !== 'timeout' && answer.kind !== 'packet', 'own socket fd: dropped without an answer');
    client.close();
  }
  {
    const device = openSync(`/dev/${loop.name}`, constants.O_RDONLY);
    const client = new RawClient(daemon.socketPath);
    t.teardown(() => client.close());
    try {
      t.true((await client.send(open, device)).sent);
    } finally {
      closeSync(device);
    }
    const answer = await client.next(5000);
    t.true(answer !== 'timeout' && answer.kind !== 'packet', 'block device fd: dropped without an answer');
    client.close();
  }
  {
    const pipes = Array.from({ length: 5 }, () => fifo(dir, `burst${n++}`));
    const client = new RawClient(daemon.socketPath);
    t.teardown(() => client.close());
    let sent = 0;
    for (const pipe of pipes) {
      t.teardown(() => pipe.close());
      // Once the daemon has dropped us the send fails; the rest are then never sent.
      const outcome = sent === pipes.indexOf(pipe) ? client.trySend(hello, pipe.writer) : 'again';
      if (outcome !== 'again' && outcome.sent) sent++;
      closeSync(pipe.writer);
    }
    t.log(`fd burst: ${sent} fd-carrying packets sent before the daemon dropped the connection`);
    const answer = await client.next(5000);
    t.true(answer !== 'timeout' && answer.kind !== 'packet', 'fd burst: dropped without an answer');
    client.close();
    t.true(await eventually(() => pipes.every((p) => p.writerGone())), 'every fd of the burst was closed');
  }

  const fds = await daemon.settleFds(before.fds);
  const after = daemon.footprint();
  t.log(`daemon after: ${describeFootprint(after)}`);
  t.is(fds, before.fds, `fds leaked:\n${daemon.fdTargets().join('\n')}`);
  // One log line per dropped connection: the five cases, own socket, block device, burst.
  t.is(await daemon.waitForCount(VIOLATION_MSG, violationsBefore + cases.length + 3) - violationsBefore, cases.length + 3);
  t.is(await checkValidOpen(daemon.socketPath, loop), undefined, 'the daemon keeps serving');
});
