/**
 * The status view through a real daemon: `diskseq-open --status` (human and --json) shows
 * every count to everyone, other users' connections and waiting opens only to root and to
 * the peers the policy's status_viewers name (a real unprivileged peer, before and after a
 * SIGHUP adds it); the requests by op and audit code are the ones the daemon answered; an
 * overrun of the uevent socket is counted with its time and followed by a full rescan; and
 * on a synthetic tree the disk and partition counts are exact.
 */
import test from 'ava';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type DaemonStatusJSON } from '../client/index.js';
import { native } from '../native/index.js';
import { needsRoot } from './helpers/ci.js';
import { within } from '../testkit/cleanup.js';
import { DaemonProcess } from '../testkit/daemon.js';
import { createLoop } from '../testkit/loop.js';
import { REPO_ROOT } from '../testkit/repo.js';
import { createSyntheticSysfs } from '../testkit/synthetic-sysfs.js';
import { WireClient } from '../testkit/wire-client.js';
import { NOBODY } from './helpers/peer.js';
import { runCli } from './helpers/cli.js';
import { policyDir, reload, writePolicy } from './helpers/policy-e2e-support.js';

const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** The highest diskseq sysfs shows now. */
function highestDiskseq(): bigint {
  let highest = 0n;
  for (const name of readdirSync('/sys/block')) {
    try {
      const diskseq = BigInt(readFileSync(`/sys/block/${name}/diskseq`, 'utf8').trim());
      if (diskseq > highest) highest = diskseq;
    } catch {
      // Gone meanwhile, or no diskseq.
    }
  }
  return highest;
}

/** `diskseq-open --status` (with `extra` options), as root or as `as`. */
async function statusRun(socket: string, extra: string[], as?: typeof NOBODY): Promise<{ stdout: string; stderr: string }> {
  const run = await runCli(['--socket', socket, '--status', ...extra], { as });
  if (run.code !== 0) throw new Error(`diskseq-open --status ${extra.join(' ')} exited ${run.code}: ${run.stderr}`);
  return run;
}

async function statusJSON(socket: string, as?: typeof NOBODY): Promise<DaemonStatusJSON> {
  return JSON.parse((await statusRun(socket, ['--json'], as)).stdout) as DaemonStatusJSON;
}

const count = (s: DaemonStatusJSON, op: string, code: string): number | undefined => s.requests.find((r) => r.op === op && r.code === code)?.count;

test('status: counts for everyone; other users\' connections and waits for root and status_viewers only', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({ partscan: true, partitionsMiB: [2, 2] }, t);
  const rules = [{ name: 'nobody-reads', peer: { uids: [NOBODY.uid] }, device: { names: [loop.name] }, loop_devices: true }];
  const file = writePolicy(join(policyDir(t), 'policy.json'), { rules });
  const started = Date.now();
  const daemon = await DaemonProcess.start({ worldAccessible: true, policy: file }, t);

  // Root: one connection held open, an open that succeeds, one NOT_FOUND, and a wait that stays.
  const root = WireClient.connect(daemon.socketPath);
  t.teardown(() => root.close());
  const opened = await root.open({ diskseq: loop.diskseq });
  if (opened.ok) native.close(opened.fd);
  t.true(opened.ok, 'the open succeeded');
  const missing = await root.open({ diskseq: 1 });
  t.false(missing.ok);
  const future = highestDiskseq() + 1_000_000n;
  void root.open({ diskseq: future, partition: 3, waitMs: 120_000 }).catch(() => undefined);
  t.truthy((await root.request({ hello: { protocolVersion: 1 } })).response.hello, 'the wait is registered');

  // The peer without a status_viewers entry: every count, only its own share of the rest.
  const peerView = await statusJSON(daemon.socketPath, NOBODY);
  t.false(peerView.full);
  t.is(peerView.serverVersion, VERSION);
  t.true(peerView.uptimeMs > 0 && peerView.uptimeMs < Date.now() - started + 1000, String(peerView.uptimeMs));
  t.true(peerView.disks >= 1 && peerView.partitions >= 2, `${peerView.disks} disks, ${peerView.partitions} partitions`);
  t.is(peerView.connections, 2, 'root\'s and its own');
  t.deepEqual(peerView.connectionsByUid, { [NOBODY.uid]: 1 });
  t.is(peerView.waiting, 1);
  t.deepEqual(peerView.waitingOpens, [], 'root\'s wait is not shown');
  t.is(count(peerView, 'open', 'OK'), 1);
  t.is(count(peerView, 'open', 'NOT_FOUND'), 1);
  // Root's hello; the one --status pipelines may still be finishing when the status is taken.
  t.true([1, 2].includes(count(peerView, 'hello', 'OK') ?? 0), JSON.stringify(peerView.requests));
  t.is(peerView.watchers, 0);
  t.is(peerView.ueventOverruns, 0);
  t.is(peerView.lastOverrunAt, null);
  const scanned = Date.parse(peerView.lastScanAt ?? '');
  t.true(scanned >= started - 1000 && scanned <= Date.now(), `the start scan: ${peerView.lastScanAt}`);
  t.true(peerView.lastScanUs > 0);

  const human = (await statusRun(daemon.socketPath, [], NOBODY)).stdout;
  t.regex(human, new RegExp(`^daemon: +diskseqd ${VERSION.replaceAll('.', '\\.')} on .*, up `, 'm'));
  t.regex(human, /^connections: +2 open \(uid 65534: 1\); only yours shown: other users' need root or the policy's status_viewers$/m);
  t.regex(human, /^waiting: +1 open waiting for a device \(other users' not shown\)$/m);
  t.regex(human, /^ {2}open: +NOT_FOUND 1, OK 1$/m);
  t.regex(human, /^uevents: +no overrun since start; last full scan of sysfs at \S+ \(at start\), [\d.]+ ms$/m);

  // Root sees every uid and every wait.
  const rootView = await statusJSON(daemon.socketPath);
  t.true(rootView.full);
  t.deepEqual(rootView.connectionsByUid, { 0: 2 });
  t.is(rootView.waitingOpens.length, 1);
  t.like(rootView.waitingOpens[0], { diskseq: future.toString(), partition: 3, uid: 0 });
  t.regex((await statusRun(daemon.socketPath, [])).stdout, new RegExp(`^waiting: +1 open waiting for a device: ${future}p3 \\(uid 0, `, 'm'));

  // A status_viewers entry, by SIGHUP: now the peer sees it all too.
  writePolicy(file, { status_viewers: [{ uids: ['nobody'] }], rules });
  t.is((await reload(daemon)).msg, 'policy reloaded');
  const viewer = await statusJSON(daemon.socketPath, NOBODY);
  t.true(viewer.full);
  t.deepEqual(viewer.connectionsByUid, { 0: 1, [NOBODY.uid]: 1 });
  t.like(viewer.waitingOpens[0], { diskseq: future.toString(), partition: 3, uid: 0 });
  t.true((count(viewer, 'status', 'OK') ?? 0) >= 4, 'the status requests so far');

  const hello = await root.request({ hello: { protocolVersion: 1 } });
  t.true(hello.response.hello?.features?.includes('status'), JSON.stringify(hello.response.hello?.features));
});

test('status: a uevent overrun is counted with its time, and a full rescan follows it', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const daemon = await DaemonProcess.start({ extraArgs: ['--uevent-buffer', '4096'] }, t);
  const client = await connect({ socketPath: daemon.socketPath });
  t.teardown(() => client.close());
  const before = await client.status();
  t.is(before.ueventOverruns, 0);
  t.truthy(before.lastScanAt);

  // Stop the daemon, let the kernel queue far more uevents (of our own loop device) than
  // its 8 KiB receive buffer holds, then let it run.
  process.kill(daemon.pid, 'SIGSTOP');
  try {
    for (let i = 0; i < 300; i++) writeFileSync(`/sys/block/${loop.name}/uevent`, 'change');
  } finally {
    process.kill(daemon.pid, 'SIGCONT');
  }
  await daemon.waitForLog((l) => l.msg === 'uevent socket overrun; rescanning sysfs', 10_000, 'the overrun line');
  const after = await client.status();
  t.true(after.ueventOverruns >= 1, String(after.ueventOverruns));
  t.truthy(after.lastOverrunAt);
  t.true(after.lastOverrunAt!.getTime() >= before.lastScanAt!.getTime());
  t.true(after.lastScanAt!.getTime() >= after.lastOverrunAt!.getTime(), 'the last scan is the rescan after the overrun');
  const human = (await statusRun(daemon.socketPath, [])).stdout;
  t.regex(human, /^uevents: +\d+ overruns?, the last at \S+, each answered by a full rescan; last full scan of sysfs at \S+ \(after the last overrun\)/m);

  // And it goes on reading uevents: a watcher (which reads none itself after its snapshot)
  // sees a loop device attached now.
  const watch = client.watch();
  t.teardown(() => watch.close());
  while ((await within(watch.next(), 10_000, 'the watch snapshot')).value?.kind !== 'synced');
  const fresh = createLoop({}, t);
  for (;;) {
    const { value, done } = await within(watch.next(), 10_000, `ADDED ${fresh.name} after the overrun`);
    t.false(done);
    if (done || (value.kind === 'added' && value.device?.name === fresh.name && value.device.diskseq === fresh.diskseq)) break;
  }
  t.pass('the attach after the overrun was seen');
});

test('status: on a synthetic tree the disk and partition counts are exact', async (t) => {
  if (!needsRoot(t)) return;
  const tree = createSyntheticSysfs({ count: 25, partitionsEvery: 4 }, t);
  const daemon = await DaemonProcess.start({ sysfsRoot: tree.root }, t);
  const client = await connect({ socketPath: daemon.socketPath });
  t.teardown(() => client.close());
  const status = await client.status();
  t.is(status.disks, tree.disks.length);
  t.is(status.partitions, tree.disks.reduce((sum, d) => sum + d.partitions.length, 0));
  t.is(status.connections, 1);
  t.deepEqual([...status.connectionsByUid], [[0, 1]]);
});
