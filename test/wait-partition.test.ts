/**
 * wait_ms on an open for a partition that does not exist yet (docs/design.md, "Registry"):
 * the request waits until BLKPG adds the partition and then delivers exactly that
 * partition; without the partition it ends in TIMEOUT; a client that disconnects while
 * waiting leaves nothing behind in the daemon.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { native } from '../native/index.js';
import { readMarker } from '../testkit/image.js';
import { createLoop } from '../testkit/loop.js';
import type { WireClient } from '../testkit/wire-client.js';
import { expectOpened, expectRefused, startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';

/**
 * Resolves once the daemon has read every packet this client sent before: it handles a
 * connection's packets in order, and an open's wait is registered before the open yields.
 */
async function barrier(client: WireClient): Promise<void> {
  const { response } = await client.request({ hello: { protocolVersion: 1 } });
  if (!response.hello) throw new Error(`barrier: expected a HelloReply, got ${JSON.stringify(response.toJSON())}`);
}

test('an open with wait_ms sent before partx --add delivers the new partition', async (t) => {
  if (!needsRoot(t)) return;
  const { client } = await startBroker(t);
  const loop = createLoop({ partscan: true, partitionsMiB: [2, 2], addPartitions: false }, t);
  t.false(existsSync(`/dev/${loop.partitionName(1)}`), 'the partition must not exist before the request');

  const pending = client.open({ diskseq: loop.diskseq, partition: 1, waitMs: 30_000 });
  let answered = false;
  void pending.then(() => (answered = true));
  await barrier(client);
  // Had the daemon already answered, that answer would have settled before the barrier's.
  t.false(answered, 'the open is still waiting when partx --add runs');
  execFileSync('partx', ['--add', loop.devPath], { stdio: 'pipe' });
  const opened = expectOpened(t, await pending, 'waiting open');

  const probe = native.probeFdSync(opened.fd);
  t.is(probe.diskseq, loop.diskseq, 'BLKGETDISKSEQ on the delivered fd');
  t.is(readMarker(opened.fd), loop.image.partitions[0]!.marker, 'the fd reads partition 1');
  t.is(opened.device.partition, 1);
  t.is(opened.device.name, loop.partitionName(1));
  const [major, minor] = readFileSync(`/sys/class/block/${loop.partitionName(1)}/dev`, 'utf8').trim().split(':').map(Number);
  t.deepEqual([probe.rdevMajor, probe.rdevMinor], [major, minor], 'the fd is the partition node sysfs lists');
  opened.close();
});

test('an open with wait_ms for a partition that never appears ends in TIMEOUT', async (t) => {
  if (!needsRoot(t)) return;
  const { client, daemon } = await startBroker(t);
  const loop = createLoop({ partscan: true, partitionsMiB: [2], addPartitions: false }, t);
  expectRefused(t, await client.open({ diskseq: loop.diskseq, partition: 1, waitMs: 300 }), 'TIMEOUT', 'partition 1 never added');
  // The disk itself is there: the same wait for the whole disk is answered with an fd.
  expectOpened(t, await client.open({ diskseq: loop.diskseq, partition: 0, waitMs: 300 }), 'whole disk').close();
  // The audit line is written after the response; wait for it to come through the pipe.
  const audit = await daemon.waitForLog((l) => l.msg === 'audit' && l['op'] === 'open' && (l['request'] as Record<string, unknown>)['partition'] === 1,
    10_000, 'the audit line of the timed-out open');
  t.is(audit['code'], 'TIMEOUT', 'the audit line records the timeout');
});

test('a client that disconnects while waiting leaves nothing behind', async (t) => {
  if (!needsRoot(t)) return;
  // One waiting request at most: a leaked waiter would make the next wait RESOURCE_EXHAUSTED.
  const { daemon, connect } = await startBroker(t, { extraArgs: ['--max-waiting', '1'] });
  const loop = createLoop({ partscan: true, partitionsMiB: [2], addPartitions: false }, t);
  const baseline = await daemon.stableFdCount(); // the broker's own client connected, the attach handled

  const leaver = connect();
  const abandoned = leaver.open({ diskseq: loop.diskseq, partition: 1, waitMs: 600_000 });
  abandoned.catch(() => undefined); // rejects when the connection closes below
  await barrier(leaver);
  // The one waiting slot is taken: another wait is refused, not queued.
  const refused = connect();
  expectRefused(t, await refused.open({ diskseq: loop.diskseq, partition: 1, waitMs: 200 }), 'RESOURCE_EXHAUSTED', 'a wait beyond --max-waiting');
  refused.close();
  leaver.close();
  await t.throwsAsync(abandoned, { message: /connection closed/ });

  const ended = await daemon.waitForLog((l) => l.msg === 'audit' && l['op'] === 'open' && (l['request'] as Record<string, unknown>)['wait_ms'] === 600_000,
    10_000, 'the audit line of the abandoned open');
  t.not(ended['code'], 'OK');
  t.log(`audit code of the abandoned request: ${String(ended['code'])}`);
  t.is(await daemon.settleFds(baseline), baseline, `daemon fds back at baseline: ${daemon.fdTargets().join(', ')}`);

  // The waiting slot is free again: another wait is accepted (and times out), not refused.
  const other = connect();
  expectRefused(t, await other.open({ diskseq: loop.diskseq, partition: 1, waitMs: 200 }), 'TIMEOUT', 'second wait');
});

test('wait_ms beyond --max-wait-ms is cut to it', async (t) => {
  if (!needsRoot(t)) return;
  const { client } = await startBroker(t, { extraArgs: ['--max-wait-ms', '200'] });
  const loop = createLoop({ partscan: true, partitionsMiB: [2], addPartitions: false }, t);
  // Ten minutes asked, 200 ms granted: the answer comes well within ava's timeout.
  const outcome = await client.open({ diskseq: loop.diskseq, partition: 1, waitMs: 600_000 });
  expectRefused(t, outcome, 'TIMEOUT', 'capped wait');
  if (!outcome.ok) t.regex(outcome.message, /200 ms/);
});
