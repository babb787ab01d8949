// The policy's decision matrix against the real daemon, with real unprivileged peers
// (each dropping to its uid, gid and supplementary groups before it connects, seen by the daemon through SO_PEERCRED and
// SO_PEERGROUPS) opening the test's own loop device and its GPT partitions. Every decision
// is checked twice: the outcome the peer got, and the audit line naming the deciding rule.
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { DaemonProcess } from '../testkit/daemon.js';
import { createLoop, type LoopFixture } from '../testkit/loop.js';
import { needsRoot } from './helpers/ci.js';
import { NOBODY, runPeer, type PeerIdentity, type PeerStep } from './helpers/peer.js';
import {
  checkDecisions, openAudits, type ExpectedDecision, policyDir, reload, waitOpenAudits, writePolicy,
} from './helpers/policy-e2e-support.js';

/** A group no account has: only the peer given it as a supplementary group is in it. */
const OPS_GID = 4242;
/** nobody, plus the ops group as a supplementary group (primary gid unchanged). */
const NOBODY_IN_OPS: PeerIdentity = { ...NOBODY, groups: [OPS_GID] };
/** A group a rule names in "gids" (primary gid only). */
const PRIMARY_GID = 4243;
/** Another unprivileged user no rule names. */
const STRANGER: PeerIdentity = { uid: 4000, gid: 4000 };

/** A loop disk with PARTSCAN and a GPT with two partitions, each with its marker. */
function partitionedLoop(t: ExecutionContext): LoopFixture {
  return createLoop({ partitionsMiB: [2, 2], partscan: true }, t);
}

/** An open step; `part` 0 is the whole disk. Reads the marker so the fd is checked too. */
function open(loop: LoopFixture, part: number, access: PeerStep['access'] = 'ro', exclusive = false): PeerStep {
  const offset = part === 0 ? loop.image.diskMarkerOffset : 0;
  return { op: 'open', diskseq: loop.diskseq.toString(), partition: part || undefined, access, exclusive, readMarkerAt: offset };
}

/** The marker the fd of `part` must read at its start. */
function markerOf(loop: LoopFixture, part: number): string {
  return part === 0 ? loop.image.diskMarker : loop.image.partitions[part - 1]!.marker;
}

/** Runs `steps` as `who` and checks each outcome and audit line. */
async function expectDecisions(
  t: ExecutionContext, daemon: DaemonProcess, loop: LoopFixture, who: PeerIdentity, label: string,
  steps: PeerStep[], expected: ExpectedDecision[],
): Promise<void> {
  const from = openAudits(daemon).length;
  const report = await runPeer(who, { socket: daemon.socketPath, steps });
  t.is(report.uid, who.uid, `${label}: really ran as uid ${who.uid}`);
  t.is(report.gid, who.gid, `${label}: really ran as gid ${who.gid}`);
  t.deepEqual(report.groups.filter((g) => g !== who.gid).sort(), [...(who.groups ?? [])].sort(), `${label}: supplementary groups`);
  checkDecisions(t, label, report, await waitOpenAudits(daemon, from, steps.length), expected);
  for (const [i, result] of report.results.entries()) {
    const part = steps[i]!.partition ?? 0;
    if (result.ok) {
      t.is(result.fdDiskseq, loop.diskseq.toString(), `${label}, step ${i}: the fd is this disk instance`);
      t.is(result.marker, markerOf(loop, part), `${label}, step ${i}: the fd reads the right device`);
    }
  }
}

test('matrix: allowed by uid and by supplementary group, default-deny, read-only and exclusive refusals', async (t) => {
  if (!needsRoot(t)) return;
  const loop = partitionedLoop(t);
  const disk = loop.name;
  const p1 = loop.partitionName(1);
  const policy = writePolicy(`${policyDir(t)}/policy.json`, {
    rules: [
      {
        name: 'ops-group-rw',
        peer: { groups: [OPS_GID] },
        device: { names: [disk, `${disk}p*`] },
        access: ['read-only', 'read-write'],
        exclusive: true,
        loop_devices: true,
      },
      { name: 'nobody-ro-disk', peer: { uids: [NOBODY.uid] }, device: { names: [disk] }, access: ['read-only'], loop_devices: true },
      { name: 'primary-gid-only', peer: { gids: [PRIMARY_GID] }, device: { names: [disk] }, access: ['read-only'], loop_devices: true },
    ],
  });
  const daemon = await DaemonProcess.start({ worldAccessible: true, policy }, t);

  // The supplementary group alone makes the difference: same uid and gid as the next peer.
  await expectDecisions(t, daemon, loop, NOBODY_IN_OPS, 'nobody+ops', [
    open(loop, 0, 'rw'),
    open(loop, 1, 'rw', true),
    open(loop, 2, 'ro'),
  ], [
    { code: 'OK', rule: 'ops-group-rw', device: disk },
    { code: 'OK', rule: 'ops-group-rw', device: p1 },
    { code: 'OK', rule: 'ops-group-rw', device: loop.partitionName(2) },
  ]);

  // Past the 64 groups the daemon's first SO_PEERGROUPS buffer holds: the ERANGE retry.
  const manyGroups: PeerIdentity = { ...NOBODY, groups: [...Array.from({ length: 99 }, (_, i) => 5000 + i), OPS_GID] };
  await expectDecisions(t, daemon, loop, manyGroups, 'nobody+99 groups+ops', [open(loop, 2, 'rw')], [
    { code: 'OK', rule: 'ops-group-rw', device: loop.partitionName(2) },
  ]);

  await expectDecisions(t, daemon, loop, NOBODY, 'nobody', [
    open(loop, 0, 'ro'),
    open(loop, 0, 'rw'),
    open(loop, 0, 'ro', true),
    open(loop, 1, 'ro'),
  ], [
    { code: 'OK', rule: 'nobody-ro-disk', device: disk },
    { code: 'PERMISSION_DENIED', rule: 'nobody-ro-disk', device: disk, message: /grants read-only on .*not read-write/ },
    { code: 'PERMISSION_DENIED', rule: 'nobody-ro-disk', device: disk, message: /does not grant exclusive/ },
    { code: 'PERMISSION_DENIED', rule: 'default-deny', device: p1, message: /no rule allows uid 65534/ },
  ]);

  // "gids" is the primary gid only: the same gid as a supplementary group does not match.
  await expectDecisions(t, daemon, loop, { uid: STRANGER.uid, gid: PRIMARY_GID }, 'primary gid', [open(loop, 0)], [
    { code: 'OK', rule: 'primary-gid-only', device: disk },
  ]);
  await expectDecisions(t, daemon, loop, { ...STRANGER, groups: [PRIMARY_GID] }, 'supplementary gid', [open(loop, 0)], [
    { code: 'PERMISSION_DENIED', rule: 'default-deny', device: disk },
  ]);

  await expectDecisions(t, daemon, loop, STRANGER, 'stranger', [open(loop, 0, 'ro'), open(loop, 2, 'ro')], [
    { code: 'PERMISSION_DENIED', rule: 'default-deny', device: disk },
    { code: 'PERMISSION_DENIED', rule: 'default-deny', device: loop.partitionName(2) },
  ]);
});

test('matrix: loop disk and loop partition are refused without "loop_devices": true, allowed by the same rule with it', async (t) => {
  if (!needsRoot(t)) return;
  const loop = partitionedLoop(t);
  const disk = loop.name;
  const p2 = loop.partitionName(2);
  const rule = { name: 'nobody-reads-anything', peer: { uids: [NOBODY.uid] }, access: ['read-only'] };
  const path = writePolicy(`${policyDir(t)}/policy.json`, { rules: [rule] });
  const daemon = await DaemonProcess.start({ worldAccessible: true, policy: path }, t);

  const skipped = /lacks "loop_devices": true/;
  await expectDecisions(t, daemon, loop, NOBODY, 'without loop_devices', [open(loop, 0), open(loop, 2)], [
    { code: 'PERMISSION_DENIED', rule: 'default-deny', device: disk, message: skipped },
    { code: 'PERMISSION_DENIED', rule: 'default-deny', device: p2, message: skipped },
  ]);

  writePolicy(path, { rules: [{ ...rule, loop_devices: true }] });
  const reloaded = await reload(daemon);
  t.is(reloaded.msg, 'policy reloaded', JSON.stringify(reloaded));
  await expectDecisions(t, daemon, loop, NOBODY, 'with loop_devices', [open(loop, 0), open(loop, 2)], [
    { code: 'OK', rule: 'nobody-reads-anything', device: disk },
    { code: 'OK', rule: 'nobody-reads-anything', device: p2 },
  ]);
});

test('matrix: the first matching rule decides; swapping a deny and an allow rule flips the outcome', async (t) => {
  if (!needsRoot(t)) return;
  const loop = partitionedLoop(t);
  const disk = loop.name;
  const p1 = loop.partitionName(1);
  const deny = { name: 'deny-nobody-partitions', effect: 'deny', peer: { uids: [NOBODY.uid] }, device: { whole_disk: false } };
  const allow = { name: 'allow-nobody-loop', peer: { uids: [NOBODY.uid] }, access: ['read-only'], loop_devices: true };
  const path = writePolicy(`${policyDir(t)}/policy.json`, { rules: [deny, allow] });
  const daemon = await DaemonProcess.start({ worldAccessible: true, policy: path }, t);

  // Deny first: the partition is refused by the deny rule (the allow rule after it would
  // match); the whole disk does not match the deny rule and falls through to the allow.
  await expectDecisions(t, daemon, loop, NOBODY, 'deny first', [open(loop, 1), open(loop, 0)], [
    { code: 'PERMISSION_DENIED', rule: 'deny-nobody-partitions', device: p1, message: /denies/ },
    { code: 'OK', rule: 'allow-nobody-loop', device: disk },
  ]);

  writePolicy(path, { rules: [allow, deny] });
  const reloaded = await reload(daemon);
  t.is(reloaded.msg, 'policy reloaded', JSON.stringify(reloaded));
  t.deepEqual(reloaded.rules, ['allow-nobody-loop', 'deny-nobody-partitions']);
  await expectDecisions(t, daemon, loop, NOBODY, 'allow first', [open(loop, 1), open(loop, 0)], [
    { code: 'OK', rule: 'allow-nobody-loop', device: p1 },
    { code: 'OK', rule: 'allow-nobody-loop', device: disk },
  ]);

  // Root is decided before any rule: the deny rule names no uid, yet root is allowed.
  writePolicy(path, { rules: [{ ...deny, peer: undefined, device: {} }] });
  t.is((await reload(daemon)).msg, 'policy reloaded');
  await expectDecisions(t, daemon, loop, { uid: 0, gid: 0 }, 'root', [open(loop, 1)], [{ code: 'OK', rule: 'root', device: p1 }]);
});

test('matrix: device selectors on real devices — a partition has its disk\'s driver and loop/* attributes; read_only follows BLKROSET', async (t) => {
  if (!needsRoot(t)) return;
  const loop = partitionedLoop(t);
  const other = partitionedLoop(t);
  const policy = writePolicy(`${policyDir(t)}/policy.json`, {
    rules: [
      {
        name: 'partitions-of-my-images',
        peer: { uids: [NOBODY.uid] },
        // loopNp1's own major is blkext (loop has no minors for partitions by default).
        device: { drivers: ['loop'], whole_disk: false, attributes: { 'loop/backing_file': `${loop.dir}/*` } },
        loop_devices: true,
      },
      { name: 'read-only-disks', peer: { uids: [NOBODY.uid] }, device: { partitions: false, read_only: true }, loop_devices: true },
    ],
  });
  const daemon = await DaemonProcess.start({ worldAccessible: true, policy }, t);

  await expectDecisions(t, daemon, loop, NOBODY, 'writable disk', [open(loop, 1), open(loop, 2), open(loop, 0)], [
    { code: 'OK', rule: 'partitions-of-my-images', device: loop.partitionName(1) },
    { code: 'OK', rule: 'partitions-of-my-images', device: loop.partitionName(2) },
    { code: 'PERMISSION_DENIED', rule: 'default-deny', device: loop.name },
  ]);
  await expectDecisions(t, daemon, other, NOBODY, 'other image', [open(other, 1)], [
    { code: 'PERMISSION_DENIED', rule: 'default-deny', device: other.partitionName(1) },
  ]);

  // BLKROSET sets the block device's own read-only flag, which outlives the loop binding:
  // always clear it before the fixture detaches, or the next user of loopN gets it.
  execFileSync('blockdev', ['--setro', loop.devPath]);
  try {
    t.is(readFileSync(`/sys/block/${loop.name}/ro`, 'utf8').trim(), '1', 'the disk is read-only now');
    await expectDecisions(t, daemon, loop, NOBODY, 'read-only disk', [open(loop, 0)], [
      { code: 'OK', rule: 'read-only-disks', device: loop.name },
    ]);
  } finally {
    execFileSync('blockdev', ['--setrw', loop.devPath]);
  }
});
