/**
 * Policy decisions: root, first-match order, deny effect, access and exclusive grants,
 * the loop_devices rule, peer and device selectors, default deny.
 */
import test, { type ExecutionContext } from 'ava';
import type { AccessMode } from '../proto/contract.js';
import { Policy } from '../src/policy/index.js';
import { accountFiles, device, GID, peer, UID } from './helpers/policy-fixtures.js';

function load(t: ExecutionContext, rules: unknown[]): Policy {
  return Policy.fromJSON(JSON.stringify({ rules }), 'policy.json', accountFiles(t));
}

const ro = { access: 'read-only' as AccessMode, exclusive: false };
const rw = { access: 'read-write' as AccessMode, exclusive: false };
const alice = peer(UID.alice, GID.alice);
const bob = peer(UID.bob, GID.bob);

test('decision: the built-in default allows root and denies everyone else', (t) => {
  const policy = Policy.builtinDefault();
  t.deepEqual(policy.decide(peer(0, 0), device(), { access: 'read-write', exclusive: true }), {
    allowed: true,
    rule: 'root',
    reason: 'uid 0 is always allowed',
  });
  const denied = policy.decide(alice, device(), ro);
  t.false(denied.allowed);
  t.is(denied.rule, 'default-deny');
  t.is(denied.reason, 'no rule allows uid 1000 to open sda');
  t.is(policy.attributeKeys.size, 0);
});

test('decision: root is allowed even when a deny rule matches every peer and device', (t) => {
  const policy = load(t, [{ name: 'deny-all', effect: 'deny' }]);
  const decision = policy.decide(peer(0, 0), device({ isLoop: true, name: 'loop0' }), { access: 'read-write', exclusive: true });
  t.true(decision.allowed);
  t.is(decision.rule, 'root');
  t.is(policy.decide(alice, device(), ro).rule, 'deny-all');
});

test('decision: the first matching rule decides, in file order', (t) => {
  const allowFirst = load(t, [
    { name: 'alice-sda', peer: { uids: ['alice'] }, device: { names: ['sda'] } },
    { name: 'deny-alice', effect: 'deny', peer: { uids: ['alice'] } },
  ]);
  t.like(allowFirst.decide(alice, device(), ro), { allowed: true, rule: 'alice-sda' });
  t.like(allowFirst.decide(alice, device({ name: 'sdb' }), ro), { allowed: false, rule: 'deny-alice' });

  const denyFirst = load(t, [
    { name: 'deny-alice', effect: 'deny', peer: { uids: ['alice'] } },
    { name: 'alice-sda', peer: { uids: ['alice'] }, device: { names: ['sda'] } },
  ]);
  const decision = denyFirst.decide(alice, device(), ro);
  t.like(decision, { allowed: false, rule: 'deny-alice' });
  t.is(decision.reason, 'rule "deny-alice" denies sda');
});

test('decision: a rule that does not match the peer is skipped', (t) => {
  const policy = load(t, [
    { name: 'bob-only', peer: { uids: ['bob'] }, access: ['read-write'] },
    { name: 'alice-ro', peer: { uids: ['alice'] } },
  ]);
  t.like(policy.decide(bob, device(), rw), { allowed: true, rule: 'bob-only' });
  t.like(policy.decide(alice, device(), ro), { allowed: true, rule: 'alice-ro' });
  t.like(policy.decide(peer(2000, 2000), device(), ro), { allowed: false, rule: 'default-deny' });
});

test('decision: an allow rule that does not grant the access mode denies, naming itself', (t) => {
  const policy = load(t, [
    { name: 'alice-ro', peer: { uids: [UID.alice] } },
    { name: 'alice-rw-later', peer: { uids: [UID.alice] }, access: ['read-write'] },
  ]);
  t.like(policy.decide(alice, device(), ro), { allowed: true, rule: 'alice-ro' });
  const decision = policy.decide(alice, device(), rw);
  t.deepEqual(decision, {
    allowed: false,
    rule: 'alice-ro',
    reason: 'rule "alice-ro" grants read-only on sda, not read-write',
  });
  t.like(policy.decide(alice, device(), { access: 'write-only', exclusive: false }), { allowed: false, rule: 'alice-ro' });
});

test('decision: write-only and read-write are separate grants', (t) => {
  const policy = load(t, [{ name: 'wo', peer: { uids: [UID.alice] }, access: ['write-only'] }]);
  t.true(policy.decide(alice, device(), { access: 'write-only', exclusive: false }).allowed);
  t.false(policy.decide(alice, device(), rw).allowed);
  t.false(policy.decide(alice, device(), ro).allowed);
});

test('decision: exclusive is granted only by "exclusive": true', (t) => {
  const plain = load(t, [{ name: 'plain', peer: { uids: [UID.alice] }, access: ['read-write'] }]);
  t.true(plain.decide(alice, device(), rw).allowed);
  t.deepEqual(plain.decide(alice, device(), { access: 'read-write', exclusive: true }), {
    allowed: false,
    rule: 'plain',
    reason: 'rule "plain" does not grant exclusive opens of sda',
  });
  const excl = load(t, [{ name: 'excl', peer: { uids: [UID.alice] }, access: ['read-write'], exclusive: true }]);
  const decision = excl.decide(alice, device(), { access: 'read-write', exclusive: true });
  t.deepEqual(decision, { allowed: true, rule: 'excl', reason: 'rule "excl" grants read-write, exclusive on sda' });
  t.true(excl.decide(alice, device(), rw).allowed, 'a non-exclusive open never needs the exclusive grant');
});

test('decision: loop disks and loop partitions need loop_devices for non-root peers', (t) => {
  const without = load(t, [{ name: 'alice-any', peer: { uids: [UID.alice] } }]);
  const loopDisk = device({ name: 'loop3', driver: 'loop', isLoop: true });
  const loopPart = device({ name: 'loop3p1', driver: 'loop', isLoop: true, partition: 1 });
  for (const d of [loopDisk, loopPart]) {
    const decision = without.decide(alice, d, ro);
    t.false(decision.allowed, d.name);
    t.is(decision.rule, 'default-deny');
    t.is(
      decision.reason,
      `no rule allows uid 1000 to open ${d.name} (rule "alice-any" matched but does not allow loop devices: it lacks "loop_devices": true)`,
    );
    t.like(without.decide(peer(0, 0), d, { access: 'read-write', exclusive: true }), { allowed: true, rule: 'root' });
  }
  t.true(without.decide(alice, device(), ro).allowed, 'the same rule still matches non-loop devices');

  const withLoop = load(t, [{ name: 'alice-loops', peer: { uids: [UID.alice] }, loop_devices: true }]);
  t.like(withLoop.decide(alice, loopDisk, ro), { allowed: true, rule: 'alice-loops' });
  t.like(withLoop.decide(alice, loopPart, ro), { allowed: true, rule: 'alice-loops' });
});

test('decision: a rule skipped for a loop device lets a later loop rule decide', (t) => {
  const policy = load(t, [
    { name: 'alice-rw', peer: { uids: [UID.alice] }, access: ['read-write'] },
    { name: 'alice-loop-ro', peer: { uids: [UID.alice] }, loop_devices: true },
  ]);
  const loop = device({ name: 'loop0', driver: 'loop', isLoop: true });
  t.like(policy.decide(alice, loop, ro), { allowed: true, rule: 'alice-loop-ro' });
  t.like(policy.decide(alice, loop, rw), { allowed: false, rule: 'alice-loop-ro' });
  t.like(policy.decide(alice, device(), rw), { allowed: true, rule: 'alice-rw' });
});

test('decision: deny rules apply to loop devices without loop_devices', (t) => {
  const policy = load(t, [
    { name: 'no-loops', effect: 'deny', device: { drivers: ['loop'] } },
    { name: 'alice-loops', peer: { uids: [UID.alice] }, loop_devices: true },
  ]);
  t.like(policy.decide(alice, device({ name: 'loop0', driver: 'loop', isLoop: true }), ro), { allowed: false, rule: 'no-loops' });
});

test('decision: "groups" matches the primary gid or any supplementary group, "gids" only the primary', (t) => {
  const policy = load(t, [
    { name: 'qubes-members', peer: { groups: ['qubes'] } },
    { name: 'staff-primary', peer: { gids: ['staff'] } },
  ]);
  t.like(policy.decide(peer(UID.alice, GID.alice, [GID.staff, GID.qubes]), device(), ro), { allowed: true, rule: 'qubes-members' });
  t.like(policy.decide(peer(2000, GID.qubes, []), device(), ro), { allowed: true, rule: 'qubes-members' });
  t.like(policy.decide(peer(2000, GID.staff), device(), ro), { allowed: true, rule: 'staff-primary' });
  t.like(policy.decide(peer(UID.alice, GID.alice, [GID.staff]), device(), ro), { allowed: false, rule: 'default-deny' });
});

test('decision: peer selectors combine with AND', (t) => {
  const policy = load(t, [{ name: 'alice-in-qubes', peer: { uids: ['alice'], groups: ['qubes'] } }]);
  t.true(policy.decide(peer(UID.alice, GID.alice, [GID.qubes]), device(), ro).allowed);
  t.false(policy.decide(peer(UID.alice, GID.alice, []), device(), ro).allowed);
  t.false(policy.decide(peer(UID.bob, GID.bob, [GID.qubes]), device(), ro).allowed);
});

test('decision: "peer": {} matches every non-root peer', (t) => {
  const policy = load(t, [{ name: 'everyone', peer: {}, device: { names: ['sr0'] } }]);
  t.true(policy.decide(peer(65534, 65534), device({ name: 'sr0' }), ro).allowed);
  t.false(policy.decide(peer(65534, 65534), device(), ro).allowed);
});

test('decision: attribute globs match, and an absent attribute never matches', (t) => {
  const policy = load(t, [
    { name: 'vm-volumes', peer: { uids: [UID.alice] }, device: { attributes: { 'dm/name': 'qubes_dom0-vm--*' } } },
    { name: 'any-serial', peer: { uids: [UID.alice] }, device: { attributes: { 'device/serial': '*' } } },
  ]);
  t.deepEqual([...policy.attributeKeys].sort(), ['device/serial', 'dm/name']);
  const vm = device({ name: 'dm-3', driver: 'device-mapper', attributes: { 'dm/name': 'qubes_dom0-vm--work--private' } });
  t.like(policy.decide(alice, vm, ro), { allowed: true, rule: 'vm-volumes' });
  t.deepEqual(vm.reads, ['dm/name'], 'only the referenced attribute was read');
  const other = device({ name: 'dm-4', attributes: { 'dm/name': 'qubes_dom0-root' } });
  t.like(policy.decide(alice, other, ro), { allowed: false, rule: 'default-deny' });
  // No serial attribute at all: even "*" does not match. An empty one does.
  t.like(policy.decide(alice, device({ name: 'vda' }), ro), { allowed: false, rule: 'default-deny' });
  t.like(policy.decide(alice, device({ name: 'vda', attributes: { 'device/serial': '' } }), ro), { allowed: true, rule: 'any-serial' });
});

test('decision: all attribute globs of a rule must match', (t) => {
  const policy = load(t, [
    { name: 'two', peer: { uids: [UID.alice] }, device: { attributes: { 'device/vendor': 'ACME*', 'device/model': 'Disk[0-9]' } } },
  ]);
  t.true(policy.decide(alice, device({ attributes: { 'device/vendor': 'ACME Corp', 'device/model': 'Disk7' } }), ro).allowed);
  t.false(policy.decide(alice, device({ attributes: { 'device/vendor': 'ACME Corp', 'device/model': 'DiskX' } }), ro).allowed);
  t.false(policy.decide(alice, device({ attributes: { 'device/vendor': 'ACME Corp' } }), ro).allowed);
});

test('decision: whole_disk and partitions select by partition number', (t) => {
  const policy = load(t, [
    { name: 'disks-only', peer: { uids: [UID.alice] }, device: { partitions: false } },
    { name: 'parts-only', peer: { uids: [UID.bob] }, device: { whole_disk: false } },
  ]);
  const disk = device({ name: 'sda', partition: 0 });
  const part = device({ name: 'sda2', partition: 2 });
  t.like(policy.decide(alice, disk, ro), { allowed: true, rule: 'disks-only' });
  t.like(policy.decide(alice, part, ro), { allowed: false, rule: 'default-deny' });
  t.like(policy.decide(bob, part, ro), { allowed: true, rule: 'parts-only' });
  t.like(policy.decide(bob, disk, ro), { allowed: false, rule: 'default-deny' });
});

test('decision: drivers, name globs and read_only select devices', (t) => {
  const policy = load(t, [
    { name: 'ro-virtio', peer: { uids: [UID.alice] }, device: { drivers: ['virtblk'], names: ['vd[!a]', 'vd[a-c][0-9]'], read_only: true } },
  ]);
  const vd = (name: string, readOnly: boolean, driver = 'virtblk') => device({ name, readOnly, driver });
  t.true(policy.decide(alice, vd('vdb', true), ro).allowed);
  t.true(policy.decide(alice, vd('vdc7', true), ro).allowed);
  t.false(policy.decide(alice, vd('vda', true), ro).allowed, 'negated class');
  t.false(policy.decide(alice, vd('vdb', false), ro).allowed, 'read_only: true needs a read-only device');
  t.false(policy.decide(alice, vd('vdb', true, 'sd'), ro).allowed, 'driver');
  t.false(policy.decide(alice, vd('vdd7', true), ro).allowed, 'range');
});

test('reopen: granted exactly where an exclusive open would be (the deciding rule grants exclusive and the access)', (t) => {
  const policy = load(t, [
    { name: 'alice-exclusive-ro', peer: { uids: ['alice'] }, device: { names: ['sda'] }, access: ['read-only'], exclusive: true },
    { name: 'alice-plain', peer: { uids: ['alice'] }, access: ['read-only', 'read-write'] },
    { name: 'bob-denied', effect: 'deny', peer: { uids: ['bob'] } },
  ]);
  t.true(policy.grantsReopen(alice, device({ name: 'sda' }), 'read-only'), 'exclusive grant: the fd may be reopened');
  t.false(policy.grantsReopen(alice, device({ name: 'sda' }), 'read-write'), 'that rule decides, and grants no read-write');
  t.false(policy.grantsReopen(alice, device({ name: 'sdb' }), 'read-only'), 'a rule without exclusive: no reopen');
  t.true(policy.decide(alice, device({ name: 'sdb' }), ro).allowed, '… though the open itself is allowed');
  t.false(policy.grantsReopen(bob, device({ name: 'sda' }), 'read-only'));
  t.true(policy.grantsReopen(peer(0, 0), device({ name: 'sdb' }), 'read-write'), 'root always');
});

test('decision: attributeKeysFor names every key decide() may read for that peer, and no more', (t) => {
  const policy = load(t, [
    { name: 'alice-by-serial', peer: { uids: [UID.alice] }, device: { attributes: { 'device/serial': 'S1*' } }, access: ['read-only'] },
    { name: 'deny-staff-dm', effect: 'deny', peer: { groups: [GID.staff] }, device: { attributes: { 'dm/name': 'secret-*' } } },
    { name: 'anyone-by-ro', peer: {}, device: { attributes: { ro: '1' } }, access: ['read-only'] },
  ]);
  t.deepEqual([...policy.attributeKeysFor(alice)].sort(), ['device/serial', 'ro']);
  t.deepEqual([...policy.attributeKeysFor(peer(UID.bob, GID.bob, [GID.staff]))].sort(), ['dm/name', 'ro']);
  t.deepEqual([...policy.attributeKeysFor(peer(0, 0))], [], 'root: the rules are never consulted');
  t.is(policy.attributeKeysFor(alice), policy.attributeKeysFor(alice), 'the same set for the same peer');
  // What decide() reads for alice is within her set.
  const read: string[] = [];
  policy.decide(alice, { ...device(), attribute: (key: string) => (read.push(key), undefined) }, ro);
  t.true(read.every((key) => policy.attributeKeysFor(alice).has(key)), `read ${read.join(', ')}`);
});
