/**
 * Rules that load but can never take effect are warnings (src/policy/lint.ts): each kind
 * names its rule and field; rules that can take effect, deny rules on loop devices and
 * the docs' examples give none. Also the decision's explanation that the dry run prints,
 * and who sees the full status (status_viewers).
 */
import test from 'ava';
import { Policy } from '../src/policy/index.js';
import { accountFiles, device, GID, peer, UID } from './helpers/policy-fixtures.js';

const alice = { uids: [UID.alice] };

/** Each rule that can never take effect, and the field its warning must name. */
const NEVER: Array<{ title: string; rule: Record<string, unknown>; field: string; problem: RegExp }> = [
  {
    title: 'loop name glob without loop_devices',
    rule: { peer: alice, device: { names: ['loop*'] } },
    field: 'device.names', problem: /matches only loop devices.*"loop_devices": true/,
  },
  {
    title: 'loop/* attribute without loop_devices',
    rule: { peer: alice, device: { attributes: { 'loop/backing_file': '/srv/*' } } },
    field: 'device.attributes', problem: /loop\/backing_file exists only on loop devices/,
  },
  {
    title: 'drivers ["loop"] without loop_devices',
    rule: { peer: alice, device: { drivers: ['loop'] } },
    field: 'device.drivers', problem: /matches only loop devices/,
  },
  {
    title: 'loop/* and dm/* attributes together',
    rule: { peer: alice, loop_devices: true, device: { attributes: { 'loop/backing_file': '*', 'dm/name': '*' } } },
    field: 'device.attributes', problem: /no device is a loop device and a device-mapper device/,
  },
  {
    title: 'dm/* attribute with drivers excluding device-mapper',
    rule: { peer: alice, device: { drivers: ['sd', 'nvme'], attributes: { 'dm/uuid': 'LVM-*' } } },
    field: 'device.drivers', problem: /dm\/uuid exists only on device-mapper devices.*\(sd, nvme\)/,
  },
  {
    title: 'loop names with drivers excluding loop',
    rule: { effect: 'deny', device: { drivers: ['sd'], names: ['loop1*'] } },
    field: 'device.drivers', problem: /loop device name exists only on loop devices/,
  },
  {
    title: 'loop names with a dm/* attribute',
    rule: { peer: alice, loop_devices: true, device: { names: ['loop*'], attributes: { 'dm/name': '*' } } },
    field: 'device.attributes', problem: /dm\/name exists only on device-mapper devices/,
  },
  {
    title: 'partition attribute on whole disks only',
    rule: { peer: alice, device: { partitions: false, attributes: { partition: '1' } } },
    field: 'device.attributes', problem: /only partitions have partition/,
  },
  {
    title: 'read_only against an ro glob',
    rule: { peer: alice, device: { read_only: true, attributes: { ro: '0' } } },
    field: 'device.read_only', problem: /never matches/,
  },
  {
    title: 'write-only grant on read-only devices',
    rule: { peer: alice, device: { read_only: true }, access: ['read-write', 'write-only'] },
    field: 'access', problem: /every write fails \(EPERM\)/,
  },
];

for (const { title, rule, field, problem } of NEVER) {
  test(`warning: ${title}`, (t) => {
    const text = JSON.stringify({ rules: [{ name: 'fine', peer: alice }, { name: 'never', ...rule }] });
    const policy = Policy.fromJSON(text, 'policy.json', accountFiles(t));
    t.is(policy.warnings.length, 1, JSON.stringify(policy.warnings));
    const [warning] = policy.warnings;
    t.is(warning!.rule, 'never');
    t.is(warning!.field, field);
    t.regex(warning!.problem, problem);
    t.is(warning!.message, `policy.json: rule "never": field "${field}": ${warning!.problem}`);
  });
}

test('no warning for rules that can take effect', (t) => {
  const rules = [
    { name: 'loops', peer: alice, device: { names: ['loop*'] }, loop_devices: true },
    { name: 'deny-loops', effect: 'deny', device: { names: ['loop*'] } },
    { name: 'mixed-names', peer: alice, device: { names: ['loop*', 'sd*'] } },
    { name: 'vm-images', peer: alice, device: { drivers: ['loop'], attributes: { 'loop/backing_file': '/srv/*' } }, loop_devices: true },
    { name: 'dm', peer: alice, device: { drivers: ['device-mapper'], attributes: { 'dm/name': 'vg-*' } }, access: ['read-write'] },
    { name: 'partitions', peer: alice, device: { whole_disk: false, attributes: { start: '2048' } } },
    { name: 'read-only-devices', peer: alice, device: { read_only: true, attributes: { ro: '1' } }, access: ['read-only', 'read-write'] },
    { name: 'plain', peer: {} },
  ];
  const policy = Policy.fromJSON(JSON.stringify({ rules }), 'policy.json', accountFiles(t));
  t.deepEqual(policy.warnings, []);
});

test('explain: each rule passed over with the selector that failed, then the deciding rule', (t) => {
  const policy = Policy.fromJSON(JSON.stringify({
    rules: [
      { name: 'bob-only', peer: { uids: [UID.bob] } },
      { name: 'staff-group', peer: { groups: [GID.staff] } },
      { name: 'whole-disks', peer: alice, device: { partitions: false } },
      { name: 'images', peer: alice, device: { attributes: { 'loop/backing_file': '/srv/*' } } },
      { name: 'dm', peer: alice, device: { drivers: ['device-mapper'] } },
      { name: 'loops', peer: alice, device: { names: ['loop*'] }, access: ['read-write'], loop_devices: true },
      { name: 'unreached', peer: {} },
    ],
  }), 'policy.json', accountFiles(t));
  const loopPartition = device({ name: 'loop3p1', partition: 1, driver: 'loop', isLoop: true, attributes: { 'loop/backing_file': '/tmp/x.img' } });
  const { decision, skipped } = policy.explain(peer(UID.alice, GID.alice), loopPartition, { access: 'read-write', exclusive: false });
  t.deepEqual(skipped.map((s) => [s.rule.name, s.why]), [
    ['bob-only', 'peer.uids'],
    ['staff-group', 'peer.groups'],
    ['whole-disks', 'device.partitions'],
    ['images', 'device.attributes'],
    ['dm', 'device.drivers'],
  ]);
  t.like(decision, { allowed: true, rule: 'loops' });
  // The same decision as decide() gives.
  t.deepEqual(policy.decide(peer(UID.alice, GID.alice), loopPartition, { access: 'read-write', exclusive: false }), decision);
  // An allow rule that matches a loop device it does not grant is passed over as such.
  const noLoops = Policy.fromJSON(JSON.stringify({ rules: [{ name: 'any', peer: {} }] }), 'p', accountFiles(t));
  const explained = noLoops.explain(peer(UID.alice, GID.alice), loopPartition, { access: 'read-only', exclusive: false });
  t.deepEqual(explained.skipped.map((s) => [s.rule.name, s.why]), [['any', 'loop_devices']]);
  t.like(explained.decision, { allowed: false, rule: 'default-deny' });
});

test('status_viewers: root and the peers it names see the full status; bad entries are errors', (t) => {
  const files = accountFiles(t);
  const policy = Policy.fromJSON(JSON.stringify({ status_viewers: [{ groups: ['staff'] }, { uids: [UID.bob] }], rules: [] }), 'p', files);
  t.true(policy.mayViewFullStatus(peer(0, 0)));
  t.true(policy.mayViewFullStatus(peer(UID.alice, GID.alice, [GID.staff])));
  t.true(policy.mayViewFullStatus(peer(UID.bob, GID.bob)));
  t.false(policy.mayViewFullStatus(peer(UID.alice, GID.alice)));
  t.false(Policy.builtinDefault().mayViewFullStatus(peer(UID.alice, GID.alice)));
  t.true(Policy.builtinDefault().mayViewFullStatus(peer(0, 0)));
  t.true(Policy.fromJSON('{"status_viewers":[{}],"rules":[]}', 'p', files).mayViewFullStatus(peer(UID.alice, GID.alice)));

  const error = t.throws(() => Policy.fromJSON('{"status_viewers":[{"uids":["nosuchuser"]}],"rules":[]}', 'p', files));
  t.regex(error!.message, /^p: field "status_viewers\[0\]\.uids\[0\]": unknown user name "nosuchuser"/);
  t.throws(() => Policy.fromJSON('{"status_viewers":[],"rules":[]}', 'p', files), { message: /field "status_viewers": empty list/ });
  t.throws(() => Policy.fromJSON('{"status_viewers":[{"uids":[0]}],"rules":[]}', 'p', files), { message: /uid 0 \(root\) is always allowed/ });
});
