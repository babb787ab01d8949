// An unprivileged peer gets its fd through a private device node (docs/design.md,
// "Reopening and private nodes") that the daemon creates and unlinks per open. Under an
// open flood — and while a second daemon instance starts on the same machine, as happens
// whenever two test files or a test instance and the system daemon run at once — every open
// must still be delivered, no node may be left behind, and no fd may leak.
import test from 'ava';
import { DaemonProcess, describeFootprint } from '../testkit/daemon.js';
import { createLoop } from '../testkit/loop.js';
import { needsRoot } from './helpers/ci.js';
import { nobodyReadOnlyPolicy, privateNodesOf } from './helpers/hostile-peers.js';
import { NOBODY, runPeerProgram } from './helpers/peer.js';

const OPENS = 8000;

/** Runs the open flood as uid/gid NOBODY; resolves with its outcome counts. */
function flood(socketPath: string, diskseq: bigint, count: number): Promise<Record<string, number>> {
  return runPeerProgram(NOBODY, 'peer-open-flood.js', [socketPath, diskseq.toString(), String(count), '16'], { timeoutMs: 60_000, needs: [socketPath] });
}

test('an unprivileged open flood, with a second daemon starting meanwhile: all delivered, no node or fd left', async (t) => {
  if (!needsRoot(t)) return;
  t.timeout(90_000);
  const loop = createLoop({}, t);
  const daemon = await DaemonProcess.start({ capture: 'counts', worldAccessible: true, extraArgs: ['--policy', nobodyReadOnlyPolicy(t, loop.name)] }, t);
  const warm = await flood(daemon.socketPath, loop.diskseq, 20);
  t.deepEqual(warm, { opened: 20 }, 'warm-up: nobody may open the loop read-only');
  const before = { fds: await daemon.stableFdCount(), rssBytes: daemon.rssBytes() };
  t.log(`daemon before: ${describeFootprint(before)}`);

  let flooding = true;
  const outcomesPromise = flood(daemon.socketPath, loop.diskseq, OPENS).finally(() => (flooding = false));
  // Meanwhile other daemons keep starting (and stopping) on the same machine.
  let others = 0;
  while (flooding) {
    const other = await DaemonProcess.start({ capture: 'counts' });
    await other.stop();
    others++;
  }
  const outcomes = await outcomesPromise;
  t.log(`flood of ${OPENS} opens as uid ${NOBODY.uid}, while ${others} other daemons started: ${JSON.stringify(outcomes)}`);
  t.deepEqual(outcomes, { opened: OPENS }, 'every open delivered, with one fd each');

  const fds = await daemon.settleFds(before.fds);
  const after = daemon.footprint();
  t.log(`daemon after: ${describeFootprint(after)}`);
  t.is(fds, before.fds, `fds leaked:\n${daemon.fdTargets().join('\n')}`);
  t.deepEqual(privateNodesOf(loop.index), [], `private nodes of ${loop.name} left behind`);
});
