// List and Watch describe devices from a cache (docs/design.md, "Limits: fair turns"), and
// never serve a description after its device's change event: a loop device grown with
// LOOP_SET_CAPACITY (a `change` uevent, RESIZE=1) is listed with its new size by the next
// List, however soon, and a watcher's CHANGED event carries the new size too.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { truncateSync } from 'node:fs';
import { needsRoot } from './helpers/ci.js';
import { diskseqd } from '../proto/gen/diskseqd.js';
import { startBroker } from './helpers/broker.js';
import { createLoop } from '../testkit/loop.js';
import { WireClient } from '../testkit/wire-client.js';
import { DESCRIPTION_MAX_AGE_MS } from '../src/device-info.js';

test('a device that changed is described anew at once, in List and in the watchers\' CHANGED event', async (t) => {
  if (!needsRoot(t)) return;
  t.timeout(60_000);
  const loop = createLoop({ sizeMiB: 8 }, t);
  const { client, daemon } = await startBroker(t, {});
  const watcher = WireClient.connect(daemon.socketPath);
  t.teardown(() => watcher.close());
  const changed: bigint[] = [];
  let synced = false;
  watcher.watch((response) => {
    const event = response.event;
    if (event?.kind === diskseqd.v1.EventKind.EVENT_KIND_SYNCED) synced = true;
    if (event?.kind === diskseqd.v1.EventKind.EVENT_KIND_CHANGED && event.device?.name === loop.name) {
      changed.push(BigInt(event.device.sizeBytes?.toString() ?? '0'));
    }
  });
  const sizeOf = async (): Promise<bigint | undefined> => (await client.list(false)).find((d) => d.name === loop.name)?.sizeBytes;

  // Each round: List (cached from now on), grow the loop, List again before the cache's
  // age bound could have refreshed it. A round that took longer proves nothing: try again.
  let proved = 0;
  for (let round = 0, mib = 8; round < 10 && proved < 3; round++) {
    const before = await sizeOf();
    t.is(before, BigInt(mib) << 20n);
    const started = performance.now();
    mib += 4;
    truncateSync(loop.image.path, mib << 20);
    execFileSync('losetup', ['--set-capacity', loop.devPath]);
    const after = await sizeOf();
    const ms = performance.now() - started;
    t.is(after, BigInt(mib) << 20n, `round ${round}: listed ${ms.toFixed(0)} ms after the change with its new size`);
    if (ms < DESCRIPTION_MAX_AGE_MS) proved++;
    else t.log(`round ${round} took ${ms.toFixed(0)} ms, longer than the cache keeps a description: it proves nothing`);
  }
  t.true(proved >= 3, 'at least three rounds shorter than the cache\'s age bound');
  t.true(synced);
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.true(changed.length > 0, 'the watcher saw CHANGED events');
  t.deepEqual(changed, [...changed].sort((a, b) => (a < b ? -1 : 1)), 'each with a size no smaller than the last');
  t.is(changed.at(-1), (await sizeOf()), 'the last CHANGED event carries the size the device has now');
});
