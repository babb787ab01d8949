// Every fd the daemon opens or receives has one owner and is closed on every path: after
// a battery of hostile and failing requests, its open fd count is back at its baseline.
import test from 'ava';
import Long from 'long';
import { openSync } from 'node:fs';
import { native } from '../native/index.js';
import { diskseqd } from '../proto/gen/diskseqd.js';
import { within } from '../testkit/cleanup.js';
import { createLoop } from '../testkit/loop.js';
import type { WireClient } from '../testkit/wire-client.js';
import { expectOpened, expectRefused, startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';
import { NOBODY, runPeer } from './helpers/peer.js';

function encodeOpen(id: number, diskseq: bigint): Uint8Array {
  return diskseqd.v1.Request.encode({ id: Long.fromNumber(id, true), open: { diskseq: Long.fromString(diskseq.toString(), true) } }).finish();
}

/** Expects the daemon to drop `client` (any close reason but our own). */
async function expectDropped(client: WireClient, what: string): Promise<boolean> {
  const reason = await within(client.whenClosed(), 5000, `the daemon dropping ${what}`);
  return reason.kind !== 'local';
}

test('fd accounting: after hostile and failing requests the daemon is back at its baseline fd count', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({ partitionsMiB: [2], partscan: true }, t);
  const stale = createLoop({}, t);
  const { daemon, client, connect } = await startBroker(t, { worldAccessible: true });

  // Warm up every path that may allocate long-lived fds lazily, then take the baseline.
  await client.request({ hello: { protocolVersion: 1, clientName: 'fd-accounting' } });
  await client.list(true);
  for (const params of [{}, { access: 'rw' as const }, { exclusive: true }, { partition: 1 }]) {
    expectOpened(t, await client.open({ diskseq: loop.diskseq, ...params }), `warm-up ${JSON.stringify(params)}`).close();
  }
  const baseline = await daemon.stableFdCount();
  t.log(`baseline: ${baseline} fds`);

  // 1. Protocol violations, each on its own connection: garbage, an fd riding along,
  //    oversized, empty.
  const violations: [string, (c: WireClient) => void][] = [
    ['garbage', (c) => c.sendRaw(Buffer.alloc(64, 0xff))],
    ['a valid request carrying an fd', (c) => c.sendRaw(encodeOpen(1, loop.diskseq), openSync('/dev/null', 'r'))],
    ['garbage carrying an fd', (c) => c.sendRaw(Buffer.alloc(8, 0xff), openSync(loop.devPath, 'r'))],
    ['an oversized request', (c) => c.sendRaw(diskseqd.v1.Request.encode({ id: Long.fromNumber(1, true), hello: { protocolVersion: 1, clientName: 'x'.repeat(6000) } }).finish())],
    ['an empty packet', (c) => c.sendRaw(Buffer.alloc(0))],
  ];
  for (const [what, send] of violations) {
    for (let i = 0; i < 5; i++) {
      const hostile = connect();
      send(hostile);
      t.true(await expectDropped(hostile, what), what);
    }
  }

  // 2. Failing requests on a connection that stays open.
  const old = stale.diskseq;
  expectOpened(t, await client.open({ diskseq: old }), 'index the soon-stale instance').close();
  stale.reattach();
  expectRefused(t, await client.open({ diskseq: old }), 'NOT_FOUND', 'stale diskseq');
  expectRefused(t, await client.open({ diskseq: 0 }), 'INVALID_ARGUMENT');
  expectRefused(t, await client.open({ diskseq: loop.diskseq, expect: { size: '1' } }), 'EXPECTATION_FAILED');
  expectRefused(t, await client.open({ diskseq: loop.diskseq, partition: 9 }), 'NOT_FOUND');
  const held = expectOpened(t, await client.open({ diskseq: loop.diskseq, exclusive: true }), 'exclusive holder');
  for (let i = 0; i < 5; i++) expectRefused(t, await client.open({ diskseq: loop.diskseq, exclusive: true }), 'BUSY');
  held.close();
  const peer = await runPeer(NOBODY, { socket: daemon.socketPath, steps: [{ op: 'open', diskseq: loop.diskseq.toString() }] });
  t.like(peer.results[0], { ok: false, code: 'PERMISSION_DENIED' });

  // 3. Clients that vanish with opens in flight.
  for (let i = 0; i < 20; i++) {
    const quitter = connect();
    for (let j = 0; j < 4; j++) quitter.sendRaw(encodeOpen(j + 1, loop.diskseq));
    quitter.close();
  }

  // 4. A client that never reads while its opens pile up, then goes away.
  const deaf = native.connectSeqpacket(daemon.socketPath, true);
  let sent = 0;
  try {
    for (; sent < 3000; sent++) if (!native.send(deaf, Buffer.from(encodeOpen(sent + 1, loop.diskseq)), -1)) break;
    await new Promise((r) => setTimeout(r, 300));
  } finally {
    native.close(deaf);
  }
  t.log(`the deaf client queued ${sent} opens`);

  // 5. Connections that come and go without a word.
  for (let i = 0; i < 20; i++) connect().close();

  // The daemon is still serving, and its fds are back where they were.
  expectOpened(t, await client.open({ diskseq: loop.diskseq }), 'open after the hostile cases').close();
  t.is(daemon.exit, undefined, 'the daemon survived');
  const after = await daemon.settleFds(baseline, 5000);
  if (after !== baseline) t.log(daemon.fdTargets().join('\n'));
  t.is(after, baseline, 'open fds back at baseline');
});
