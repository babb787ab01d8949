/**
 * The policy dry run (`diskseqd --check-policy FILE --uid ... --device ... --access ...`)
 * on real loop devices: it finds the device as the daemon does, reads its attributes as
 * the daemon's pre-authorisation does (a partition's loop/backing_file from its parent
 * disk), names each rule passed over and why, the deciding rule and the decision, with the
 * documented exit statuses — and a real daemon, asked by a real unprivileged peer, decides
 * the same by the same rule. Rules that can never take effect are warnings, in the dry run
 * and in the daemon's load log.
 */
import test from 'ava';
import { join } from 'node:path';
import { needsRoot } from './helpers/ci.js';
import { DaemonProcess } from '../testkit/daemon.js';
import { claimUnboundLoop, createLoop } from '../testkit/loop.js';
import { NOBODY, runPeer } from './helpers/peer.js';
import { daemonArgv } from '../testkit/repo.js';
import { checkDecisions, openAudits, policyDir, waitOpenAudits, writePolicy } from './helpers/policy-e2e-support.js';
import { runProcess } from './helpers/process.js';

function esc(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

test('dry run: a partition matched on its disk\'s loop/backing_file, rules passed over and why; the daemon decides the same', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({ partscan: true, partitionsMiB: [2, 2] }, t);
  const backing = loop.image.path;
  const part = loop.partitionName(2);
  const file = writePolicy(join(policyDir(t), 'policy.json'), {
    rules: [
      { name: 'other-images', effect: 'deny', device: { attributes: { 'loop/backing_file': '/nonexistent/*' } } },
      { name: 'someone-else', peer: { uids: [4242] } },
      { name: 'names-without-flag', peer: { uids: [NOBODY.uid] }, device: { names: [`${loop.name}*`] }, access: ['read-only', 'read-write'] },
      { name: 'whole-disks', peer: { uids: [NOBODY.uid] }, device: { partitions: false }, loop_devices: true },
      { name: 'by-backing-file', peer: { uids: ['nobody'] }, device: { attributes: { 'loop/backing_file': `${loop.dir}/*` } }, access: ['read-only', 'read-write'], loop_devices: true },
      { name: 'never-reached', peer: {} },
    ],
  });
  const device = `${loop.diskseq}-part2`;
  const run = await runProcess(daemonArgv('--check-policy', file, '--uid', 'nobody', '--device', device, '--access', 'read-write'));
  t.is(run.code, 0, run.stderr);
  const warning = `warning: ${file}: rule "names-without-flag": field "device.names": every name glob ("${loop.name}*") matches only loop devices`;
  t.true(run.stderr.startsWith(warning), run.stderr);
  const lines = run.stdout.split('\n');
  t.is(lines[0], `${file}: valid (6 rules, 1 warning)`);
  t.regex(lines[1]!, /^peer: +uid 65534 \(nobody\), gid 65534 \(primary group in \/etc\/passwd\), groups /);
  t.regex(lines[2]!, new RegExp(`^device: +diskseq ${loop.diskseq} partition 2: ${part} \\(259:\\d+\\), partition of ${loop.name}, loop device$`));
  t.is(lines[3], 'request:   read-write');
  t.is(lines[4], `rules:     6 in ${file}`);
  t.deepEqual(lines.slice(5, 10), [
    `  rule "other-images": passed over: loop/backing_file is ${JSON.stringify(backing)}, which does not match "/nonexistent/*"`,
    '  rule "someone-else": passed over: uid 65534 is not in peer.uids (4242)',
    `  rule "names-without-flag": passed over: matches, but ${part} is a loop device and the rule lacks "loop_devices": true`,
    `  rule "whole-disks": passed over: ${part} is a partition and "partitions" is false`,
    '  rule "by-backing-file": matches and decides (the 1 rule after it is not consulted)',
  ]);
  t.is(lines[10], `read:      loop/backing_file=${JSON.stringify(backing)} (of ${loop.name})`);
  t.is(lines[11], `decision:  ALLOW by rule "by-backing-file": rule "by-backing-file" grants read-write on ${part}`);

  const denied = async (extra: string[], reason: RegExp) => {
    const result = await runProcess(daemonArgv('--check-policy', file, '--uid', '65534', '--device', device, ...extra));
    t.is(result.code, 3, `${extra.join(' ')}: ${result.stderr}`);
    t.regex(result.stdout, reason);
  };
  await denied(['--access', 'write-only'], /^decision: {2}DENY by rule "by-backing-file": rule "by-backing-file" grants read-only, read-write on \S+, not write-only$/m);
  await denied(['--access', 'read-write', '--exclusive'], /^decision: {2}DENY by rule "by-backing-file": rule "by-backing-file" does not grant exclusive opens of /m);
  const root = await runProcess(daemonArgv('--check-policy', file, '--uid', '0', '--device', device, '--access', 'write-only', '--exclusive'));
  t.is(root.code, 0, root.stderr);
  t.regex(root.stdout, /^rules: +not consulted: uid 0 is always allowed/m);
  t.regex(root.stdout, /^decision: {2}ALLOW by root: uid 0 is always allowed$/m);
  const stranger = await runProcess(daemonArgv('--check-policy', file, '--uid', 'no-such-user', '--device', device, '--access', 'read-only'));
  t.is(stranger.code, 2);
  t.regex(stranger.stderr, /^diskseqd: unknown user "no-such-user" \(not in \/etc\/passwd\)$/m);

  // The daemon: the same decisions by the same rule for a real peer, and the warning in its log.
  const daemon = await DaemonProcess.start({ worldAccessible: true, policy: file }, t);
  const logged = await daemon.waitForLog((l) => l.msg === 'policy rule can never take effect', 5000, 'the warning line');
  t.like(logged, { rule: 'names-without-flag', field: 'device.names', policy: file });
  const before = openAudits(daemon).length;
  const step = { op: 'open' as const, diskseq: loop.diskseq.toString(), partition: 2 };
  const report = await runPeer(NOBODY, { socket: daemon.socketPath, steps: [
    { ...step, access: 'rw' }, { ...step, access: 'wo' }, { ...step, access: 'rw', exclusive: true },
  ] });
  checkDecisions(t, 'nobody', report, await waitOpenAudits(daemon, before, 3), [
    { code: 'OK', rule: 'by-backing-file', device: part },
    { code: 'PERMISSION_DENIED', rule: 'by-backing-file', device: part, message: /not write-only/ },
    { code: 'PERMISSION_DENIED', rule: 'by-backing-file', device: part, message: /does not grant exclusive/ },
  ]);
});

test('dry run: groups from the command line, and without root (in a user namespace)', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const file = writePolicy(join(policyDir(t), 'policy.json'), {
    rules: [{ name: 'disk-group', peer: { groups: ['disk'] }, device: { names: [loop.name] }, loop_devices: true }],
  });
  const args = ['--check-policy', file, '--uid', '65534', '--device', String(loop.diskseq), '--access', 'read-only'];
  const none = await runProcess(daemonArgv(...args, '--groups', ''));
  t.is(none.code, 3, none.stderr);
  t.regex(none.stdout, /rule "disk-group": passed over: neither gid 65534 nor groups \(none\) are in peer\.groups \(6\)/);
  t.regex(none.stdout, /^decision: {2}DENY by default-deny: no rule allows uid 65534 to open /m);
  const member = await runProcess(daemonArgv(...args, '--gid', 'nogroup', '--groups', 'disk,100'));
  t.is(member.code, 0, member.stderr);
  t.regex(member.stdout, /^peer: +uid 65534 \(nobody\), gid 65534, groups 6,100$/m);
  t.regex(member.stdout, /^decision: {2}ALLOW by rule "disk-group"/m);
  // Without root: the dry run reads only the file and sysfs.
  const unprivileged = await runProcess(['unshare', '--user', '--', ...daemonArgv(...args, '--groups', 'disk')]);
  t.is(unprivileged.code, 0, unprivileged.stderr);
  t.regex(unprivileged.stdout, /^decision: {2}ALLOW by rule "disk-group"/m);
});

test('dry run: a device the daemon would not serve is exit 4 with the reason', async (t) => {
  if (!needsRoot(t)) return;
  const file = writePolicy(join(policyDir(t), 'policy.json'), { rules: [{ name: 'any', peer: {}, loop_devices: true }] });
  const ask = (device: string) => runProcess(daemonArgv('--check-policy', file, '--uid', '65534', '--device', device, '--access', 'read-only'));

  const noPartscan = createLoop({ partscan: false, partitionsMiB: [2] }, t); // partx adds the partition anyway
  const partition = await ask(`${noPartscan.diskseq}-part1`);
  t.is(partition.code, 4, partition.stdout);
  t.is(partition.stderr, `diskseqd: diskseq ${noPartscan.diskseq} (${noPartscan.name}) has no partition 1 (loop device without LO_FLAGS_PARTSCAN: ` +
    'its partitions could outlive it, so they are never served); the daemon would answer NOT_FOUND\n');
  t.is((await ask(`${noPartscan.diskseq}`)).code, 0, 'its whole disk is served');

  const detached = createLoop({}, t);
  const gone = detached.diskseq;
  t.true(detached.detach());
  const absent = await ask(String(gone));
  t.is(absent.code, 4);
  t.regex(absent.stderr, new RegExp(`^diskseqd: (no disk has diskseq ${gone} \\(the highest on this system is \\d+\\)|diskseq ${gone} is loop\\d+, an unbound loop device .*); the daemon would answer NOT_FOUND\n$`));

  const unbound = claimUnboundLoop(t);
  const leftover = await ask(String(unbound.diskseq));
  t.is(leftover.code, 4);
  t.is(leftover.stderr, `diskseqd: diskseq ${unbound.diskseq} is ${unbound.name}, an unbound loop device (a diskseq left from its last detach): ` +
    'never served; the daemon would answer NOT_FOUND\n');
  t.regex(leftover.stdout, new RegExp(`^${esc(file)}: valid \\(1 rule\\)\n$`));
});
