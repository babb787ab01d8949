// Default policy: root may open anything, everyone else is denied — and denied before
// anything is opened, so root never opens (let alone O_EXCL) a device for a peer who may
// not have it.
import test from 'ava';
import { closeSync, constants, openSync } from 'node:fs';
import { createLoop } from '../testkit/loop.js';
import { expectRefused, startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';
import { NOBODY, runPeer } from './helpers/peer.js';

test('a peer running as uid 65534 is refused with PERMISSION_DENIED', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({ partitionsMiB: [2], partscan: true }, t);
  const { daemon } = await startBroker(t, { worldAccessible: true });

  const report = await runPeer(NOBODY, {
    socket: daemon.socketPath,
    steps: [
      { op: 'open', diskseq: loop.diskseq.toString() },
      { op: 'open', diskseq: loop.diskseq.toString(), partition: 1 },
      { op: 'open', diskseq: loop.diskseq.toString(), access: 'rw' },
    ],
  });
  t.is(report.uid, 65534, 'the peer really ran as nobody');
  t.is(report.gid, 65534);
  t.deepEqual(report.results.map((r) => (r.ok ? `delivered ${r.name}` : r.code)), ['PERMISSION_DENIED', 'PERMISSION_DENIED', 'PERMISSION_DENIED']);

  const denials = daemon.audits().filter((a) => a.op === 'open' && a.peer?.uid === 65534);
  t.is(denials.length, 3, 'one audit line per request');
  t.true(denials.every((a) => a.decision === 'deny' && a.code === 'PERMISSION_DENIED'));
});

test('refused before any open: while the test holds the device O_EXCL, the peer gets PERMISSION_DENIED, not BUSY', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const { daemon, client } = await startBroker(t, { worldAccessible: true });

  const held = openSync(loop.devPath, constants.O_RDONLY | constants.O_EXCL);
  t.teardown(() => closeSync(held));
  // Control: the hold is effective — root's exclusive request does reach the open and gets BUSY.
  expectRefused(t, await client.open({ diskseq: loop.diskseq, exclusive: true }), 'BUSY', 'root, exclusive, while held');

  // Through the raw protocol client: the code is exactly what the daemon sent.
  const report = await runPeer(NOBODY, { socket: daemon.socketPath, via: 'wire', steps: [{ op: 'open', diskseq: loop.diskseq.toString(), exclusive: true }] });
  t.is(report.uid, 65534);
  const [result] = report.results;
  t.false(result?.ok ?? true);
  if (result && !result.ok) t.is(result.code, 'PERMISSION_DENIED', 'an open was attempted on behalf of a peer that may not have the device');
});
