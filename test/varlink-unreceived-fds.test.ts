// fds in flight over Varlink (docs/design.md, "Limits: fds in flight"): a client that
// pipelines Acquire calls and never reads would leave every reply's fd in its socket,
// charged to the daemon's user (before the bound, a connection held ~278 of them: as many
// 100-byte replies as the kernel buffers). Now the Varlink connection books its fds in the
// same per-uid ledger as SEQPACKET: at most --max-unreceived-fds per connection, the uid's
// share across its connections of both front-ends; no call is started or read meanwhile;
// root is still served; a dropped client's socket is kept, shut down, until it takes its
// fds. What the client was sent is measured on its side (SIOCINQ, then what it reads), the
// daemon's own fds from /proc.
import test, { type ExecutionContext } from 'ava';
import { needsRoot } from './helpers/ci.js';
import { nobodyReadOnlyPolicy } from './helpers/hostile-peers.js';
import { checkValidOpen } from './helpers/hostile-requests.js';
import { LinePeer } from './helpers/line-peer.js';
import { NOBODY } from './helpers/peer.js';
import { expectAcquired, closeAcquired, PROVIDER } from './helpers/varlink.js';
import { DaemonProcess } from '../testkit/daemon.js';
import { createLoop, type LoopFixture } from '../testkit/loop.js';
import { VarlinkClient } from '../testkit/varlink-client.js';
import { encodeReply } from '../src/varlink/message.js';

const DROP_MSG = 'client does not read its responses; dropped with its queued fds';
/** Bytes of one read-only Acquire reply: every reply the hoarder is sent is one of these. */
const REPLY_BYTES = encodeReply({ fileDescriptorIndex: 0, type: 'blk', readOnly: true }).length;
const PER_CONNECTION = 16;

interface Hoarding { sent: number[]; unread: number[] }
interface Drained { fds: number[]; replies: number[]; errors: number[]; ended: boolean[]; wrongDevice: number }

/** A daemon serving both front-ends, nobody allowed the loop read-only; warmed up, with its fd baseline. */
async function start(t: ExecutionContext, loop: LoopFixture, extraArgs: string[]): Promise<{ daemon: DaemonProcess; baseline: number }> {
  const daemon = await DaemonProcess.start({ varlink: true, worldAccessible: true, policy: nobodyReadOnlyPolicy(t, loop.name), extraArgs }, t);
  t.is(await checkValidOpen(daemon.socketPath, loop), undefined, 'warm-up open on SEQPACKET');
  const root = VarlinkClient.connect(daemon.varlinkPath!);
  const [reply] = await root.call(`${PROVIDER}.Acquire`, { name: String(loop.diskseq), readOnly: true });
  closeAcquired(expectAcquired(t, reply!, loop.diskseq, true, 'warm-up Acquire'));
  root.close();
  return { daemon, baseline: await daemon.stableFdCount() };
}

/** Starts the hoarder as nobody: one connection per kind, CALLS opens pipelined on each, in order. */
function hoard(t: ExecutionContext, daemon: DaemonProcess, loop: LoopFixture, calls: number, kinds: string[]): LinePeer {
  return LinePeer.start(t, NOBODY, 'fd-hoarder.js', [daemon.varlinkPath!, daemon.socketPath, String(loop.diskseq), String(calls), kinds.join(',')]);
}

/** The fds each drop line reported unreceived, from the `from`th drop on, once there are `n` more. */
async function dropsWith(daemon: DaemonProcess, from: number, n: number): Promise<number[]> {
  if (await daemon.waitForCount(DROP_MSG, from + n, 20_000) < from + n) {
    throw new Error(`fewer than ${n} drops in 20 s; the daemon's last lines:\n${daemon.logs.slice(-30).map((l) => JSON.stringify(l)).join('\n')}`);
  }
  return daemon.logs.filter((l) => l.msg === DROP_MSG).slice(from).map((l) => Number(l.unreceivedFds));
}

test('a Varlink client that pipelines 200 Acquires and never reads is sent 16 fds, no more; root is served; reading, it gets the rest', async (t) => {
  if (!needsRoot(t)) return;
  t.timeout(90_000);
  const loop = createLoop({}, t);
  const { daemon, baseline } = await start(t, loop, ['--stall-timeout-ms', '60000']);
  const peer = hoard(t, daemon, loop, 200, ['varlink']);
  const { sent, unread } = await peer.next<Hoarding>();
  t.log(`sent ${sent[0]} Acquire calls; unread ${unread[0]} bytes = ${unread[0]! / REPLY_BYTES} replies of ${REPLY_BYTES}`);
  t.is(sent[0], 200, 'the client could pipeline them all');
  t.is(unread[0], PER_CONNECTION * REPLY_BYTES, `exactly ${PER_CONNECTION} replies (and fds) wait in the client's socket`);
  const held = daemon.fdCount();
  t.log(`daemon fds: baseline ${baseline}, while the client hoards ${held}`);
  t.true(held <= baseline + 1, `no fd is held in the daemon for it, only its socket (${held}, baseline ${baseline}):\n${daemon.fdTargets().join('\n')}`);

  // Root is served meanwhile, and the look-again timer sends the hoarder nothing more.
  for (let i = 0; i < 20; i++) t.is(await checkValidOpen(daemon.socketPath, loop), undefined, `root's open ${i}`);
  peer.tell('unread');
  t.deepEqual((await peer.next<Hoarding>()).unread, [PER_CONNECTION * REPLY_BYTES], 'still 16, no more');

  peer.tell('read');
  const got = await peer.next<Drained>();
  t.deepEqual(got, { fds: [200], replies: [200], errors: [0], ended: [false], wrongDevice: 0 }, 'reading, it gets all 200, each with its device');
  t.is(await daemon.settleFds(baseline + 1), baseline + 1, 'its socket stays, nothing else');
  await peer.exit();
  t.is(await daemon.settleFds(baseline), baseline, `after the client closed: ${daemon.fdTargets().join('\n')}`);
  t.false(daemon.fdTargets().some((f) => f.endsWith(`/dev/${loop.name}`)), 'the daemon holds no fd of the device');
  t.is(daemon.count(DROP_MSG), 0, 'nobody was dropped');
});

test('a uid\'s Varlink connections share its bound; dropped by the stall timeout, each socket is kept until the client takes its fds', async (t) => {
  if (!needsRoot(t)) return;
  t.timeout(90_000);
  const loop = createLoop({}, t);
  const { daemon, baseline } = await start(t, loop, ['--stall-timeout-ms', '2000', '--max-unreceived-fds-per-uid', '40']);
  const peer = hoard(t, daemon, loop, 200, ['varlink', 'varlink', 'varlink', 'varlink']);
  const { unread } = await peer.next<Hoarding>();
  t.deepEqual(unread.map((b) => b / REPLY_BYTES), [16, 16, 8, 0], 'per connection at most 16, together the uid\'s 40');
  const dropped = await dropsWith(daemon, 0, 4);
  t.deepEqual([...dropped].sort((a, b) => b - a), [16, 16, 8, 0], 'each dropped, with what it had not received');
  // Kept: one shut-down socket per connection with fds unreceived, nothing else.
  t.is(await daemon.settleFds(baseline + 3), baseline + 3, daemon.fdTargets().join('\n'));
  for (let i = 0; i < 5; i++) t.is(await checkValidOpen(daemon.socketPath, loop), undefined, `root's open ${i}`);

  peer.tell('read');
  const got = await peer.next<Drained>();
  t.deepEqual(got, { fds: [16, 16, 8, 0], replies: [16, 16, 8, 0], errors: [0, 0, 0, 0], ended: [true, true, true, true], wrongDevice: 0 },
    'each still delivers what it was sent, then end-of-file');
  t.is(await daemon.settleFds(baseline), baseline, `taken: the daemon lets go while the client is still connected:\n${daemon.fdTargets().join('\n')}`);
  await peer.exit();
  t.is(await daemon.settleFds(baseline), baseline);
});

test('Varlink and SEQPACKET connections of one uid share one bound: each front-end\'s fds count against the other', async (t) => {
  if (!needsRoot(t)) return;
  t.timeout(90_000);
  const loop = createLoop({}, t);
  const { daemon, baseline } = await start(t, loop, ['--stall-timeout-ms', '3000', '--max-unreceived-fds-per-uid', '24']);
  const peer = hoard(t, daemon, loop, 200, ['varlink', 'seqpacket', 'varlink']);
  const { sent, unread } = await peer.next<Hoarding>();
  t.log(`sent ${sent.join(', ')}; unread bytes ${unread.join(', ')}`);
  t.is(unread[0], 16 * REPLY_BYTES, 'the first Varlink connection: its 16');
  t.is(unread[2], 0, 'the second: nothing, the SEQPACKET connection took the rest');
  const dropped = await dropsWith(daemon, 0, 3);
  t.deepEqual([...dropped].sort((a, b) => b - a), [16, 8, 0], 'the SEQPACKET connection got only what the Varlink one left of 24');

  peer.tell('read');
  const got = await peer.next<Drained>();
  t.deepEqual(got.fds, [16, 8, 0], 'what each connection was really sent');
  t.deepEqual(got.ended, [true, true, true]);
  t.is(got.wrongDevice, 0);
  t.is(await daemon.settleFds(baseline), baseline, daemon.fdTargets().join('\n'));
  await peer.exit();
  t.is(await daemon.settleFds(baseline), baseline);
  t.is(daemon.count('connection failed'), 0);
});
