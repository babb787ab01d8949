/**
 * docs/policy.md cannot rot: every ```json block in it must load as a valid policy, and
 * the two worked examples must decide as the text says.
 */
import { readFileSync } from 'node:fs';
import test from 'ava';
import type { AccessMode } from '../proto/contract.js';
import { Policy } from '../src/policy/index.js';
import { accountFiles, device, GID, peer, UID } from './helpers/policy-fixtures.js';

// Compiled tests live in dist/test/; the doc is at the repository root.
const DOC = new URL('../../docs/policy.md', import.meta.url);
const text = readFileSync(DOC, 'utf8');
const blocks = [...text.matchAll(/^```json\n([\s\S]*?)^```$/gm)].map((match) => match[1]);

const ro = { access: 'read-only' as AccessMode, exclusive: false };
const rwExcl = { access: 'read-write' as AccessMode, exclusive: true };

test('docs: policy.md has the two worked examples as json blocks', (t) => {
  t.is(blocks.length, 2);
});

test('docs: every json block in policy.md is a valid policy, without warnings', (t) => {
  const files = accountFiles(t);
  blocks.forEach((block, i) => {
    let policy: Policy | undefined;
    t.notThrows(() => (policy = Policy.fromJSON(block, `docs/policy.md block ${i}`, files)));
    t.deepEqual(policy?.warnings.map((w) => w.message), [], `block ${i}`);
  });
});

test('docs: the Qubes-style example grants the qubes group its VM volumes, read-write and exclusive', (t) => {
  const block = blocks.find((b) => b.includes('qubes_dom0-vm--'));
  t.truthy(block);
  const policy = Policy.fromJSON(block!, 'qubes example', accountFiles(t));
  const volume = device({ name: 'dm-5', driver: 'device-mapper', attributes: { 'dm/name': 'qubes_dom0-vm--work--private' } });
  const member = peer(UID.alice, GID.alice, [GID.qubes]);
  t.like(policy.decide(member, volume, rwExcl), { allowed: true, rule: 'qubes-vm-volumes' });
  t.like(policy.decide(member, volume, ro), { allowed: true, rule: 'qubes-vm-volumes' });
  t.like(policy.decide(peer(UID.bob, GID.bob), volume, ro), { allowed: false, rule: 'default-deny' });
  // The management group sees the daemon's full status; others only their own share.
  t.true(policy.mayViewFullStatus(member));
  t.false(policy.mayViewFullStatus(peer(UID.bob, GID.bob)));
  const dom0Root = device({ name: 'dm-0', driver: 'device-mapper', attributes: { 'dm/name': 'qubes_dom0-root' } });
  t.like(policy.decide(member, dom0Root, ro), { allowed: false, rule: 'never-dom0-root' });
  t.like(policy.decide(member, device({ name: 'sda' }), ro), { allowed: false, rule: 'default-deny' });
  const loop = device({ name: 'loop0', driver: 'loop', isLoop: true, attributes: { 'dm/name': 'qubes_dom0-vm--x' } });
  t.like(policy.decide(member, loop, ro), { allowed: false, rule: 'default-deny' });
});

test('docs: the backup example grants read-only whole disks only', (t) => {
  const block = blocks.find((b) => b.includes('"backup"'));
  t.truthy(block);
  const policy = Policy.fromJSON(block!, 'backup example', accountFiles(t));
  const backup = peer(UID.backup, GID.backup);
  const sda = device({ name: 'sda' });
  t.like(policy.decide(backup, sda, ro), { allowed: true, rule: 'backup-whole-disks' });
  t.deepEqual(policy.decide(backup, sda, { access: 'read-write', exclusive: false }), {
    allowed: false,
    rule: 'backup-whole-disks',
    reason: 'rule "backup-whole-disks" grants read-only on sda, not read-write',
  });
  t.like(policy.decide(backup, sda, { access: 'read-only', exclusive: true }), { allowed: false, rule: 'backup-whole-disks' });
  t.like(policy.decide(backup, device({ name: 'sda1', partition: 1 }), ro), { allowed: false, rule: 'default-deny' });
  t.like(policy.decide(backup, device({ name: 'loop1', driver: 'loop', isLoop: true }), ro), { allowed: false, rule: 'default-deny' });
  t.like(policy.decide(peer(UID.alice, GID.alice), sda, ro), { allowed: false, rule: 'default-deny' });
});

test('docs: the example error message in policy.md is the one the code produces', (t) => {
  const quoted = text.match(/^policy\.json: rule "backup": .*$/m);
  t.truthy(quoted);
  const error = t.throws(() =>
    Policy.fromJSON('{"rules":[{"name":"backup","peer":{"uids":["backup"]},"access":["read-only","rw"]}]}', 'policy.json', accountFiles(t)),
  );
  t.is(error!.message, quoted![0]);
});
