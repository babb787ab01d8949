/**
 * One request, one policy snapshot (docs/design.md, "Open and verify"): the keys the open
 * job reads are chosen from the policy in force when the request starts, and both
 * decisions (pre-authorisation and the one that counts) use that same policy, whatever a
 * SIGHUP reload does meanwhile. Here the reload lands right after the request took its
 * snapshot, before pre-authorisation and the job: the new policy denies on
 * `loop/backing_file`, a key the old one never read. Were the final decision taken with the
 * new policy, that key would be unread — absent never matches, the deny rule would be
 * skipped, and the new policy's allow rule would decide. The request must be decided by the
 * old policy throughout; the next request by the new one, with the key read.
 */
import test from 'ava';
import { native } from '../native/index.js';
import { BrokerError } from '../src/errors.js';
import { Policy } from '../src/policy/index.js';
import type { OpenTrace } from '../src/opener.js';
import { ErrorCode } from '../proto/contract.js';
import { needsRoot } from './helpers/ci.js';
import { inProcessOpener, NOBODY_PEER, openParams } from './helpers/in-process-opener.js';
import { createLoop } from '../testkit/loop.js';

test('a reload between pre-authorisation and the job: the request is decided by the policy it started with', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const allow = { peer: { uids: [NOBODY_PEER.uid] }, device: { names: [loop.name] }, access: ['read-only'], loop_devices: true };
  const before = Policy.fromJSON(JSON.stringify({ rules: [{ name: 'old-allow', ...allow }] }), 'old');
  const after = Policy.fromJSON(JSON.stringify({
    rules: [
      { name: 'new-deny-backing', effect: 'deny', peer: { uids: [NOBODY_PEER.uid] }, device: { attributes: { 'loop/backing_file': '*' } } },
      { name: 'new-allow', ...allow },
    ],
  }), 'new');
  t.false(before.attributeKeys.has('loop/backing_file'), 'the old policy reads no attribute');
  let current = before;
  let reads = 0;
  // SIGHUP lands right after the request read the policy reference.
  const { opener } = inProcessOpener(t, () => {
    reads++;
    const snapshot = current;
    current = after;
    return snapshot;
  });

  const trace: OpenTrace = {};
  const opened = await opener.open(openParams(loop.diskseq), NOBODY_PEER, trace);
  native.close(opened.fd);
  t.is(reads, 1, 'the request read the policy once');
  t.is(trace.rule, 'old-allow', 'decided by the policy the request started with');

  const next: OpenTrace = {};
  const refused = await opener.open(openParams(loop.diskseq), NOBODY_PEER, next).catch((error: unknown) => error);
  t.true(refused instanceof BrokerError && refused.code === ErrorCode.ERROR_CODE_PERMISSION_DENIED, String(refused));
  t.is(next.rule, 'new-deny-backing', 'the next request: the new policy, its deny rule matched on the key it needs');
});
