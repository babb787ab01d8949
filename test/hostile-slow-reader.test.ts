// Clients that pipeline requests and never read (docs/design.md, "Limits").
//
// Opens: the daemon sends at most --max-unreceived-fds fds the client has not received,
// then reads nothing more from it; after --stall-timeout-ms it drops the client. Those fds
// sit in the client's socket, charged to the daemon by the kernel, so the daemon keeps its
// end open (shut down) and counted until the client takes them: exactly one fd more than
// the baseline, and no device fd, while the client holds them; the baseline again once it
// has read them, before it even closes.
//
// Lists: no fds, so output waits in the daemon once the socket buffer is full, and past
// --max-queued-bytes the client is dropped at once; the daemon is back at its baseline
// while the client is still connected.
import test, { type ExecutionContext } from 'ava';
import { closeSync } from 'node:fs';
import { diskseqd } from '../proto/gen/diskseqd.js';
import { DaemonProcess, describeFootprint } from '../testkit/daemon.js';
import { encodeRequest } from '../testkit/fuzz-packets.js';
import { RawClient } from '../testkit/raw-client.js';
import { needsRoot } from './helpers/ci.js';
import { checkValidOpen, u64 } from './helpers/hostile-requests.js';
import { createLoop, type LoopFixture } from '../testkit/loop.js';

/** Far more requests than the kernel buffers plus the daemon's queue can hold. */
const MAX_REQUESTS = 50_000;
const DROP_MSG = 'client does not read its responses; dropped with its queued fds';

/** Sends `request(i)` without reading until a send fails or blocks for 10 s; returns how many went and why it ended. */
async function sendUntilDropped(client: RawClient, request: (i: number) => Buffer): Promise<{ sent: number; ended: string }> {
  let sent = 0;
  const deadline = Date.now() + 30_000;
  while (sent < MAX_REQUESTS && Date.now() < deadline) {
    // send() waits while our socket buffer is full; it fails once the daemon has dropped us.
    const outcome = await Promise.race([
      client.send(request(sent)),
      new Promise<'stuck'>((r) => setTimeout(() => r('stuck'), 10_000)),
    ]);
    if (outcome === 'stuck') return { sent, ended: 'stuck: the daemon neither reads nor drops us' };
    if (!outcome.sent) return { sent, ended: outcome.code };
    sent++;
  }
  return { sent, ended: 'never dropped' };
}

/** Reads what reached the client before the drop: the packets, their kinds and fds (closed), until the end. */
async function readDelivered(client: RawClient): Promise<{ bodies: string[]; fds: number }> {
  const bodies: string[] = [];
  let fds = 0;
  client.resumeReading();
  for (;;) {
    const item = await client.next(5000);
    if (item === 'timeout' || item.kind !== 'packet') break;
    for (const fd of item.fds) closeSync(fd);
    fds += item.fds.length;
    bodies.push(diskseqd.v1.Response.decode(item.data).body ?? '(none)');
  }
  return { bodies, fds };
}

async function startWithBaseline(t: ExecutionContext, loop: LoopFixture, args: string[]) {
  const daemon = await DaemonProcess.start({ capture: 'counts', extraArgs: args }, t);
  t.log(`daemon options: ${args.join(' ')}`);
  t.is(await checkValidOpen(daemon.socketPath, loop), undefined, 'warm-up open');
  const before = { fds: await daemon.stableFdCount(), rssBytes: daemon.rssBytes() };
  t.log(`daemon before: ${describeFootprint(before)}`);
  return { daemon, before };
}

test('a client that never reads gets at most --max-unreceived-fds fds, is dropped after --stall-timeout-ms, and its socket is kept until it takes them', async (t) => {
  if (!needsRoot(t)) return;
  t.timeout(60_000);
  const loop = createLoop({}, t);
  const { daemon, before } = await startWithBaseline(t, loop, ['--max-unreceived-fds', '5', '--stall-timeout-ms', '300']);
  const client = new RawClient(daemon.socketPath);
  t.teardown(() => client.close());
  client.pauseReading();
  const { sent, ended } = await sendUntilDropped(client, (i) => encodeRequest({ id: u64(i + 1), open: { diskseq: u64(loop.diskseq) } }));
  t.log(`sent ${sent} opens without reading; then the send failed with ${ended}`);
  t.true(ended === 'EPIPE' || ended === 'ECONNRESET', `the daemon dropped the client (send ended with ${ended})`);
  const logged = await daemon.waitForLog((l) => l.msg === DROP_MSG);
  t.is(logged?.reason, 'output-stalled', 'dropped as a client that does not take its output');
  t.is(logged?.unreceivedFds, 5, 'with exactly the bound of fds unreceived');
  t.is(daemon.count(DROP_MSG), 1, 'logged once');

  // The daemon closed every device fd it held, and keeps one socket for the 5 in flight.
  const fds = await daemon.settleFds(before.fds + 1);
  t.log(`daemon after the drop (client still connected, not reading): ${describeFootprint(daemon.footprint())}`);
  t.is(fds, before.fds + 1, `the shut-down socket and nothing else:\n${daemon.fdTargets().join('\n')}`);
  t.false(daemon.fdTargets().some((f) => f.endsWith(`/dev/${loop.name}`)), 'the daemon holds no fd of the device');

  // What the kernel delivered before the drop: 5 Opened packets with one fd each, then the end.
  const delivered = await readDelivered(client);
  t.deepEqual(delivered.bodies, ['opened', 'opened', 'opened', 'opened', 'opened']);
  t.is(delivered.fds, 5);
  // Received: the daemon lets go of its socket although the client has not closed its end.
  t.is(await daemon.settleFds(before.fds), before.fds, `fds left open:\n${daemon.fdTargets().join('\n')}`);
  client.close();

  t.is(await checkValidOpen(daemon.socketPath, loop), undefined, 'the daemon keeps serving');
  t.is(await daemon.settleFds(before.fds), before.fds);
  t.log(`daemon at the end: ${describeFootprint(daemon.footprint())}`);
});

test('a client that never reads its Lists is dropped when its queued output exceeds --max-queued-bytes', async (t) => {
  if (!needsRoot(t)) return;
  t.timeout(60_000);
  const loop = createLoop({}, t);
  const { daemon, before } = await startWithBaseline(t, loop, ['--max-queued-bytes', '1', '--stall-timeout-ms', '600000']);
  const client = new RawClient(daemon.socketPath);
  t.teardown(() => client.close());
  client.pauseReading();
  const { sent, ended } = await sendUntilDropped(client, (i) => encodeRequest({ id: u64(i + 1), list: { includePartitions: true } }));
  t.log(`sent ${sent} Lists without reading; then the send failed with ${ended}`);
  t.true(ended === 'EPIPE' || ended === 'ECONNRESET', `the daemon dropped the client (send ended with ${ended})`);
  const logged = await daemon.waitForLog((l) => l.msg === DROP_MSG);
  t.is(logged?.reason, 'output-overflow');
  t.is(daemon.count(DROP_MSG), 1, 'logged once');
  // No fds in flight: nothing to keep, back to (or below) the baseline while the client is
  // connected; below it when something the daemon held at the baseline has closed since.
  const fds = await daemon.settleFds(before.fds);
  t.true(fds <= before.fds, `${fds} fds, baseline ${before.fds}; left open:\n${daemon.fdTargets().join('\n')}`);
  const delivered = await readDelivered(client);
  t.log(`${delivered.bodies.length} packets had reached the client's socket before the drop`);
  t.true(delivered.bodies.length > 0 && delivered.bodies.every((b) => b === 'devices'), 'List answers, and nothing else');
  t.is(delivered.fds, 0);
  t.true(delivered.bodies.length < sent, 'not every request was answered: the rest were dropped with the connection');
  client.close();
  t.is(await checkValidOpen(daemon.socketPath, loop), undefined, 'the daemon keeps serving');
  t.is(await daemon.settleFds(before.fds), before.fds);
});
