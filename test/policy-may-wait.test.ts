/**
 * Who may wait for a device that does not exist yet (docs/policy.md, "Waiting for a device
 * that does not exist yet"): root, and a peer some allow rule's peer part matches,
 * whatever its device part; not a peer only deny rules (or no rules) match.
 */
import test from 'ava';
import { Policy } from '../src/policy/index.js';
import { GID, peer, UID } from './helpers/policy-fixtures.js';

const policy = Policy.fromJSON(JSON.stringify({
  rules: [
    { name: 'no-bob', effect: 'deny', peer: { uids: [UID.bob] }, device: {} },
    { name: 'staff-reads-usb', peer: { groups: [GID.staff] }, device: { names: ['sd*'], partitions: true }, access: ['read-only'] },
    { name: 'alice-loops', peer: { uids: [UID.alice] }, device: { drivers: ['loop'] }, access: ['read-only'], loop_devices: true },
  ],
}), 'may-wait test');

test('root, and peers an allow rule\'s peer part matches, may wait; others may not', (t) => {
  t.true(policy.mayEverAllow(peer(0, 0)), 'root');
  t.true(policy.mayEverAllow(peer(UID.alice, GID.alice)), 'alice: an allow rule names her uid');
  t.true(policy.mayEverAllow(peer(4000, 4000, [GID.staff])), 'a staff member: a supplementary group matches');
  t.false(policy.mayEverAllow(peer(UID.bob, GID.bob)), 'bob: only a deny rule matches him');
  t.false(policy.mayEverAllow(peer(4001, 4001)), 'nobody else');
  t.false(Policy.builtinDefault().mayEverAllow(peer(UID.alice, GID.alice)), 'the built-in default allows only root');
  t.true(Policy.builtinDefault().mayEverAllow(peer(0, 0)));
});
