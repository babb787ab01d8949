// A client that pipelines opens and never reads (the README's "Limits"): once its socket
// buffer is full the daemon queues the Opened packets and their fds (and stops reading the
// client's requests); past its output bounds, or after --stall-timeout-ms with output
// unread, it drops the client and closes the queued fds. The daemon's fd count returns to
// the baseline while the client is still connected (what the kernel already delivered sits
// in the client's socket, not in the daemon), and the daemon keeps serving.
import test from 'ava';
import { closeSync } from 'node:fs';
import { diskseqd } from '../proto/gen/diskseqd.js';
import { DaemonProcess, describeFootprint } from '../testkit/daemon.js';
import { encodeRequest } from '../testkit/fuzz-packets.js';
import { RawClient } from '../testkit/raw-client.js';
import { createLoop } from '../testkit/loop.js';
import { needsRoot } from './helpers/ci.js';
import { checkValidOpen, u64 } from './helpers/hostile-requests.js';

/** Far more opens than the kernel buffers plus the daemon's queue can hold. */
const MAX_REQUESTS = 50_000;
const DROP_MSG = 'client does not read its responses; dropped with its queued fds';

const macro = test.macro(async (t, args: string[], reason: string) => {
  if (!needsRoot(t)) return;
  t.timeout(60_000);
  const loop = createLoop({}, t);
  const daemon = await DaemonProcess.start({ capture: 'counts', extraArgs: args }, t);
  t.log(`daemon options: ${args.join(' ')}`);
  t.is(await checkValidOpen(daemon.socketPath, loop), undefined, 'warm-up open');
  const before = { fds: await daemon.stableFdCount(), rssBytes: daemon.rssBytes() };
  t.log(`daemon before: ${describeFootprint(before)}`);

  const client = new RawClient(daemon.socketPath);
  t.teardown(() => client.close());
  client.pauseReading();
  const open = (i: number): Buffer => encodeRequest({ id: u64(i + 1), open: { diskseq: u64(loop.diskseq) } });
  let sent = 0;
  let ended: string | undefined;
  const deadline = Date.now() + 30_000;
  while (sent < MAX_REQUESTS && Date.now() < deadline) {
    // send() waits while our socket buffer is full; it fails once the daemon has dropped us.
    const outcome = await Promise.race([
      client.send(open(sent)),
      new Promise<'stuck'>((r) => setTimeout(() => r('stuck'), 10_000)),
    ]);
    if (outcome === 'stuck') {
      ended = 'stuck: the daemon neither reads nor drops us';
      break;
    }
    if (!outcome.sent) {
      ended = outcome.code;
      break;
    }
    sent++;
  }
  t.log(`sent ${sent} opens without reading; then the send failed with ${ended}`);
  t.true(ended === 'EPIPE' || ended === 'ECONNRESET', `the daemon dropped the client (send ended with ${ended})`);
  const logged = await daemon.waitForLog((l) => l.msg === DROP_MSG);
  t.is(logged?.reason, reason, 'the drop is logged as a client that does not read, for the expected reason');
  t.is(daemon.count(DROP_MSG), 1, 'logged once');

  // The daemon closed what it had queued: back to the baseline while we are still connected.
  const fds = await daemon.settleFds(before.fds);
  const after = daemon.footprint();
  t.log(`daemon after the drop (client still connected): ${describeFootprint(after)}`);
  t.is(fds, before.fds, `fds left open:\n${daemon.fdTargets().join('\n')}`);
  t.false(daemon.fdTargets().some((f) => f.endsWith(`/dev/${loop.name}`)), 'the daemon holds no fd of the device');

  // What the kernel delivered before the drop: Opened packets with one fd each, then the end.
  let delivered = 0;
  client.resumeReading();
  for (;;) {
    const item = await client.next(5000);
    if (item === 'timeout' || item.kind !== 'packet') break;
    for (const fd of item.fds) closeSync(fd);
    const response = diskseqd.v1.Response.decode(item.data);
    t.true(response.body === 'opened' && item.fds.length === 1, `delivered packet ${delivered}: ${response.body} with ${item.fds.length} fds`);
    delivered++;
  }
  t.log(`${delivered} Opened packets had reached the client's socket before the drop`);
  t.true(delivered < sent, 'not every request was answered: the rest were dropped with the connection');
  client.close();

  t.is(await checkValidOpen(daemon.socketPath, loop), undefined, 'the daemon keeps serving');
  t.is(await daemon.settleFds(before.fds), before.fds);
  t.log(`daemon at the end: ${describeFootprint(daemon.footprint())}`);
});

// The output bound, made to trip at the first queued response. (No fd bound can be
// tripped on purpose: reading stops while output is queued, so only requests already in
// flight can add to the queue, at most --max-in-flight of them.)
test('a client that never reads is dropped when its queued output exceeds --max-queued-bytes; queued fds closed', macro,
  ['--max-queued-bytes', '1', '--stall-timeout-ms', '600000'], 'output-overflow');
test('a client that never reads is dropped after --stall-timeout-ms; queued fds closed', macro,
  ['--stall-timeout-ms', '300'], 'output-stalled');
