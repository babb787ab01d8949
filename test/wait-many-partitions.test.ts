/**
 * Many opens wait for many partitions that one `partx --add` creates one after the other
 * (wait_ms; docs/design.md, "Registry"). While the kernel adds partition k, sysfs can
 * already list it before its /dev node exists (a kernel fact); the daemon must still
 * deliver every partition to its waiter — never STALE or NOT_FOUND for a partition that is
 * being added.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { native } from '../native/index.js';
import { readMarker } from '../testkit/image.js';
import { createLoop, deletePartitions } from '../testkit/loop.js';
import { startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';

const PARTITIONS = 32;

const ROUNDS = 5;

test('waits for 32 partitions added by one partx --add all get their own partition', async (t) => {
  if (!needsRoot(t)) return;
  const sentinel = createLoop({}, t);
  const absent = sentinel.diskseq; // gone for good: an open of it drains the daemon's uevents
  sentinel.detach();
  const { client, connect } = await startBroker(t);
  // A connection has at most 16 requests in flight (--max-in-flight): 8 waits each.
  const clients = [client, ...Array.from({ length: PARTITIONS / 8 - 1 }, () => connect())];
  const loop = createLoop({ partscan: true, sizeMiB: PARTITIONS + 4, partitionsMiB: Array.from({ length: PARTITIONS }, () => 1), addPartitions: false }, t);
  const failures: string[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const pending = Array.from({ length: PARTITIONS }, (_, i) => clients[i % clients.length]!.open({ diskseq: loop.diskseq, partition: i + 1, waitMs: 30_000 }));
    for (const c of clients) {
      const { response } = await c.request({ hello: { protocolVersion: 1 } }); // every wait is registered
      t.truthy(response.hello);
    }
    execFileSync('partx', ['--add', loop.devPath], { stdio: 'pipe' });
    const outcomes = await Promise.all(pending);
    for (const [i, outcome] of outcomes.entries()) {
      if (!outcome.ok) {
        failures.push(`round ${round} partition ${i + 1}: ${outcome.code} (${outcome.message})`);
        continue;
      }
      try {
        if (native.probeFdSync(outcome.fd).diskseq !== loop.diskseq) failures.push(`round ${round} partition ${i + 1}: wrong diskseq`);
        if (readMarker(outcome.fd) !== loop.image.partitions[i]!.marker) failures.push(`round ${round} partition ${i + 1}: wrong bytes`);
      } finally {
        native.close(outcome.fd);
      }
    }
    deletePartitions(loop.devPath);
    // Make the daemon see the removals before the next round's waits.
    const gone = await client.open({ diskseq: absent });
    t.is(gone.ok ? 'fd' : gone.code, 'NOT_FOUND');
  }
  t.deepEqual(failures, [], 'every waiter got its partition');
});
