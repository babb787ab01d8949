/**
 * One open costs one hop off the event loop (docs/design.md, "Open and verify"): counted
 * on the addon's job pool (native.jobPoolStats) around each open through the daemon's own
 * opener, in this process, on real loop devices. A verified open is one job, whatever the
 * request reads (an `expect` key, a parent disk's key, the policy's keys), through the
 * devtmpfs node for root and through a private node for anyone else; a failed
 * verification (a–d, g) closes its fd inside that same job. Only a refusal after the job
 * (e, f) costs a second one: the close of the refused fd, off the loop, before the answer.
 */
import test from 'ava';
import { fstatSync } from 'node:fs';
import { native } from '../native/index.js';
import { BrokerError } from '../src/errors.js';
import { Policy } from '../src/policy/index.js';
import { ErrorCode } from '../proto/contract.js';
import { needsRoot } from './helpers/ci.js';
import { countJobs, inProcessOpener, NOBODY_PEER, open, openParams, ROOT_PEER } from './helpers/in-process-opener.js';
import { createLoop, reattachOrReplace } from '../testkit/loop.js';

test.serial('a verified open is one job, for root and through a private node, whatever it reads', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({ partscan: true, partitionsMiB: [2] }, t);
  const policy = Policy.fromJSON(JSON.stringify({
    rules: [{
      name: 'nobody-reads', peer: { uids: [NOBODY_PEER.uid] }, device: { names: [`${loop.name}*`], attributes: { 'loop/backing_file': '*' } },
      access: ['read-only'], loop_devices: true,
    }],
  }), 'test');
  const { opener } = inProcessOpener(t, () => policy);
  const cases = [
    { what: 'root, whole disk', peer: ROOT_PEER, params: openParams(loop.diskseq) },
    { what: 'root, partition 1, expect a key of the parent disk', peer: ROOT_PEER,
      params: openParams(loop.diskseq, { partition: 1, expect: new Map([['loop/backing_file', loop.image.path]]) }) },
    { what: 'uid 65534 through a private node, a policy key', peer: NOBODY_PEER, params: openParams(loop.diskseq) },
    { what: 'uid 65534, partition 1 (the key from the parent)', peer: NOBODY_PEER, params: openParams(loop.diskseq, { partition: 1 }) },
  ];
  for (const c of cases) {
    const { result, jobs } = await countJobs(() => open(opener, c.params, c.peer));
    if (result instanceof Error) {
      t.fail(`${c.what}: ${result.message}`);
      continue;
    }
    const { fd, device } = result.opened;
    try {
      t.is(native.probeFdSync(fd).diskseq, loop.diskseq, `${c.what}: the fd is the instance asked for`);
      t.is(device.partition, c.params.partition);
      if (c.params.partition > 0 || c.peer !== ROOT_PEER) t.is(device.attributes['loop/backing_file'], loop.image.path, `${c.what}: the key was read`);
      if (c.peer === NOBODY_PEER) {
        const st = fstatSync(fd);
        // No "exclusive" in the grant: nobody but the daemon may reopen it (exclusive-reopen.test.ts).
        t.deepEqual([st.uid, st.gid, st.mode & 0o777], [0, 0, 0], `${c.what}: the node is root:root, mode 000`);
      }
    } finally {
      native.close(fd);
    }
    t.deepEqual(jobs, { openVerify: 1 }, `${c.what}: one job`);
  }
});

test.serial('a failed verification closes its fd in the same job; a refusal after it costs one close', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const { opener, registry } = inProcessOpener(t, () => Policy.builtinDefault());
  const old = loop.diskseq;

  // e fails after the job: the refused fd is closed off the loop before the answer.
  const refused = await countJobs(() => open(opener, openParams(old, { expect: new Map([['ro', '1']]) }), ROOT_PEER));
  t.true(refused.result instanceof BrokerError && refused.result.code === ErrorCode.ERROR_CODE_EXPECTATION_FAILED, String(refused.result));
  t.deepEqual(refused.jobs, { openVerify: 1, close: 1 });

  // The index still says loopN is `old` (no uevents here), but loopN is a new instance now:
  // the job's c check fails and it closes the fd itself. The retry finds `old` gone.
  reattachOrReplace(t, loop, {}); // loopN re-attached, or (claimed by someone else meanwhile) left unbound
  t.truthy(registry.find(old), 'the index has not heard of the re-attach');
  const stale = await countJobs(() => open(opener, openParams(old), ROOT_PEER));
  t.true(stale.result instanceof BrokerError && stale.result.code === ErrorCode.ERROR_CODE_NOT_FOUND, String(stale.result));
  t.deepEqual(stale.jobs, { openVerify: 1 }, 'one job for the failed verification, no close job');
});
