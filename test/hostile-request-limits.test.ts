// The per-connection and daemon-wide request bounds (the README's "Limits"), observed from a
// client: --max-in-flight (the next request is not even read while the limit is reached),
// --max-waiting (opens waiting for a device to appear), --max-watchers; and that what a
// client holds — waits, watches — is released when it disconnects.
import test from 'ava';
import type Long from 'long';
import { DaemonProcess, describeFootprint } from '../testkit/daemon.js';

import { encodeRequest, highestDiskseqNow } from '../testkit/fuzz-packets.js';
import { RawClient } from '../testkit/raw-client.js';
import { ask, outcomeOf, readAnswer, u64 } from './helpers/hostile-requests.js';
import { needsRoot } from './helpers/ci.js';

/** A diskseq no device will have during the test: an open of it waits its whole wait_ms. */
const absent = (): Long => u64(highestDiskseqNow() + 1_000_000_000n);

test('--max-in-flight: while 4 requests wait, the 5th is not read; it is answered when one finishes', async (t) => {
  if (!needsRoot(t)) return; // the daemon needs root (its private-node directory in /dev)
  const daemon = await DaemonProcess.start({ capture: 'counts', extraArgs: ['--max-in-flight', '4'] }, t);
  const before = { fds: await daemon.stableFdCount(), rssBytes: daemon.rssBytes() };
  t.log(`daemon before: ${describeFootprint(before)}`);
  const client = new RawClient(daemon.socketPath);
  t.teardown(() => client.close());
  const diskseq = absent();
  // One short wait and three long ones fill the 4 slots; the Hello behind them can only be
  // read once the short wait has ended, and must then be answered before the long ones end.
  await client.send(encodeRequest({ id: u64(1), open: { diskseq, waitMs: 300 } }));
  for (const id of [2, 3, 4]) await client.send(encodeRequest({ id: u64(id), open: { diskseq, waitMs: 3000 } }));
  await client.send(encodeRequest({ id: u64(5), hello: { protocolVersion: 1 } }));
  const order: string[] = [];
  for (let i = 0; i < 5; i++) {
    const { response } = await readAnswer(client, 10_000);
    order.push(`${response.id}:${outcomeOf(response)}`);
  }
  t.deepEqual(order.slice(0, 2), ['1:TIMEOUT', '5:hello'], `answers in order ${order.join(', ')}`);
  t.deepEqual(order.slice(2).sort(), ['2:TIMEOUT', '3:TIMEOUT', '4:TIMEOUT']);
  client.close();
  t.is(await daemon.settleFds(before.fds), before.fds);
  t.log(`daemon after: ${describeFootprint(daemon.footprint())}`);
});

test('--max-waiting bounds waiting opens daemon-wide; a client that leaves releases its waits', async (t) => {
  if (!needsRoot(t)) return; // the daemon needs root (its private-node directory in /dev)
  const daemon = await DaemonProcess.start({ capture: 'counts', extraArgs: ['--max-waiting', '20'] }, t);
  const before = { fds: await daemon.stableFdCount(), rssBytes: daemon.rssBytes() };
  t.log(`daemon before: ${describeFootprint(before)}`);
  const diskseq = absent();
  // Two clients park 10 long waits each (16 may be in flight per connection).
  const parked = [new RawClient(daemon.socketPath), new RawClient(daemon.socketPath)];
  t.teardown(() => parked.forEach((c) => c.close()));
  // A Hello behind each client's waits: its answer says the daemon has read them. The daemon
  // orders nothing between connections, so a probe sent earlier could take a slot first.
  for (const client of parked) {
    for (let i = 0; i < 10; i++) await client.send(encodeRequest({ id: u64(i + 1), open: { diskseq, waitMs: 600_000 } }));
    t.is(outcomeOf((await ask(client, { id: u64(100), hello: { protocolVersion: 1 } })).response), 'hello');
  }
  const probe = new RawClient(daemon.socketPath);
  t.teardown(() => probe.close());
  // A short wait is refused now that all 20 are parked; it is a plain TIMEOUT otherwise.
  const probeOnce = async (): Promise<string> => outcomeOf((await ask(probe, { id: u64(99), open: { diskseq, waitMs: 1 } })).response);
  let outcome = await probeOnce();
  t.is(outcome, 'RESOURCE_EXHAUSTED', 'the 21st waiting open is refused');
  t.false(probe.isEnded, 'refusing a wait keeps the connection');

  for (const client of parked) client.close();
  // Their 20 waits end with their connections: a short wait is accepted (and times out) again.
  outcome = await probeOnce();
  for (let tries = 0; outcome !== 'TIMEOUT' && tries < 100; tries++) outcome = await probeOnce();
  t.is(outcome, 'TIMEOUT', 'waits of closed connections are released');
  probe.close();
  t.is(await daemon.settleFds(before.fds), before.fds);
  t.log(`daemon after: ${describeFootprint(daemon.footprint())}`);
  t.is(daemon.count('internal error'), 0);
});

test('--max-watchers bounds watching connections; a watcher that leaves frees its slot', async (t) => {
  if (!needsRoot(t)) return; // the daemon needs root (its private-node directory in /dev)
  const daemon = await DaemonProcess.start({ capture: 'counts', extraArgs: ['--max-watchers', '3'] }, t);
  const before = { fds: await daemon.stableFdCount(), rssBytes: daemon.rssBytes() };
  t.log(`daemon before: ${describeFootprint(before)}`);
  /** Starts a watch; resolves with the Error code, or 'synced' once the snapshot is complete. */
  const watch = async (client: RawClient): Promise<string> => {
    await client.send(encodeRequest({ id: u64(7), watch: {} }));
    for (;;) {
      const { response } = await readAnswer(client);
      if (response.body === 'error') return outcomeOf(response);
      if (response.body === 'event' && response.event?.kind === 4) return 'synced';
    }
  };
  const watchers = [0, 1, 2].map(() => new RawClient(daemon.socketPath));
  t.teardown(() => watchers.forEach((c) => c.close()));
  for (const w of watchers) t.is(await watch(w), 'synced');
  // A second watch on a watching connection (live events of the first may come first).
  await watchers[0]!.send(encodeRequest({ id: u64(8), watch: {} }));
  let second = await readAnswer(watchers[0]!);
  while (second.response.id.toString() === '7') second = await readAnswer(watchers[0]!);
  t.is(outcomeOf(second.response), 'INVALID_ARGUMENT', 'one watch per connection');
  const fourth = new RawClient(daemon.socketPath);
  t.teardown(() => fourth.close());
  t.is(await watch(fourth), 'RESOURCE_EXHAUSTED', 'the 4th watcher is refused');
  t.false(fourth.isEnded);
  watchers[0]!.close();
  await daemon.settleFds(before.fds + 3);
  t.is(await watch(fourth), 'synced', 'a slot freed by a closed watcher is reused');
  for (const c of [...watchers, fourth]) c.close();
  t.is(await daemon.settleFds(before.fds), before.fds);
  t.log(`daemon after: ${describeFootprint(daemon.footprint())}`);
});
