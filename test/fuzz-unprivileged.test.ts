// The protocol fuzz from an unprivileged peer (uid 65534) whose policy allows one loop
// device read-only and nothing else: what the root fuzz checks, plus the paths only a
// non-root peer takes — pre-authorisation and PERMISSION_DENIED before anything is opened,
// and delivery through a private device node — under hostile input. Afterwards no fd and
// no node is left.
import test from 'ava';
import { DaemonProcess, describeFootprint } from '../testkit/daemon.js';
import type { FuzzStats } from '../testkit/fuzz.js';
import { highestDiskseqNow } from '../testkit/fuzz-packets.js';
import { createLoop } from '../testkit/loop.js';
import { needsRoot } from './helpers/ci.js';
import { checkValidOpen } from './helpers/hostile-requests.js';
import { nobodyReadOnlyPolicy, privateNodesOf } from './helpers/hostile-peers.js';
import { NOBODY, runPeerProgram } from './helpers/peer.js';

const PACKETS = 30_000;
const VIOLATION_MSG = 'protocol violation; dropping connection';

test('30,000 fuzzed packets from an unprivileged peer: denials answered, nothing leaks', async (t) => {
  if (!needsRoot(t)) return;
  t.timeout(90_000);
  const seed = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
  t.log(`seed ${seed} (replay with FUZZ_SEED=${seed})`);
  const loop = createLoop({}, t);
  const daemon = await DaemonProcess.start({ capture: 'counts', worldAccessible: true, extraArgs: ['--policy', nobodyReadOnlyPolicy(t, loop.name)] }, t);
  const floor = highestDiskseqNow() + 1_000_000n;
  const run = (packets: number, s: number): Promise<FuzzStats> =>
    runPeerProgram<FuzzStats>(NOBODY, 'peer-fuzz.js', [daemon.socketPath, loop.diskseq.toString(), floor.toString(), String(packets), '16', String(s)], { timeoutMs: 80_000, needs: [daemon.socketPath] });

  t.deepEqual((await run(2000, seed ^ 0x5eed)).failures, [], 'warm-up run');
  const before = { fds: await daemon.stableFdCount(), rssBytes: daemon.rssBytes() };
  const violationsBefore = daemon.count(VIOLATION_MSG);
  t.log(`daemon before: ${describeFootprint(before)}`);

  const stats = await run(PACKETS, seed);
  t.log(`${stats.packets} packets as uid ${NOBODY.uid} (${stats.requests} requests, ${stats.violations} violations, ${stats.empties} empty) over ${stats.connections} connections; ` +
    `${stats.opened} Opened; codes ${JSON.stringify(stats.codes)}; ${Math.round(stats.packets / (stats.elapsedMs / 1000))} packets/s`);
  t.deepEqual(stats.failures, [], `${stats.failureCount} failures`);
  t.true(daemon.alive, daemon.describe());
  t.true(stats.opened > 100 && (stats.codes.ERROR_CODE_PERMISSION_DENIED ?? 0) > 100, 'both grants and denials were exercised');
  // Each violation is logged once, and so is each zero-length packet (docs/design.md, "Known kernel limits").
  const logged = stats.violations + stats.empties;
  t.is(await daemon.waitForCount(VIOLATION_MSG, violationsBefore + logged) - violationsBefore, logged);
  t.is(daemon.count('internal error'), 0);

  t.is(await checkValidOpen(daemon.socketPath, loop), undefined, 'root still opens the device');
  const fds = await daemon.settleFds(before.fds);
  t.log(`daemon after: ${describeFootprint(daemon.footprint())}`);
  t.is(fds, before.fds, `fds leaked:\n${daemon.fdTargets().join('\n')}`);
  t.deepEqual(privateNodesOf(loop.index), [], `private nodes of ${loop.name} left behind`);
});
