/**
 * Scale through the real daemon process (docs/design.md, "Registry"): pointed at a
 * synthetic sysfs tree of 10,000 disks (--sysfs-root), it serves a complete List (several
 * packets) and a complete Watch snapshot (an ADDED event per device, then one SYNCED) to
 * clients in another process, with its default output bounds, while still answering opens
 * in between.
 */
import test from 'ava';
import { diskseqd } from '../proto/gen/diskseqd.js';
import { createSyntheticSysfs, SYNTHETIC_DISKSEQ_BASE } from '../testkit/synthetic-sysfs.js';
import { WireClient } from '../testkit/wire-client.js';
import { startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';

/** Collects one watch stream until SYNCED (or the connection ends). */
function watchSnapshot(socketPath: string): Promise<{ added: string[]; synced: number; other: string[] }> {
  const client = WireClient.connect(socketPath);
  return new Promise<{ added: string[]; synced: number; other: string[] }>((resolve, reject) => {
    const added: string[] = [];
    const other: string[] = [];
    let done = false;
    client.watch((response) => {
      const kind = response.event?.kind;
      if (kind === diskseqd.v1.EventKind.EVENT_KIND_ADDED) added.push(`${response.event!.device!.name} ${String(response.event!.device!.diskseq)}`);
      else if (kind === diskseqd.v1.EventKind.EVENT_KIND_SYNCED) {
        done = true;
        resolve({ added, synced: 1, other });
      } else other.push(JSON.stringify(response.toJSON()));
    });
    void client.whenClosed().then((reason) => {
      if (!done) reject(new Error(`watch connection closed (${reason.kind}) after ${added.length} ADDED events`));
    });
  }).finally(() => client.close());
}

test('a daemon on 10,000 synthetic disks serves a complete List and a complete Watch snapshot', async (t) => {
  if (!needsRoot(t)) return;
  const tree = createSyntheticSysfs({ count: 10_000, partitionsEvery: 500 });
  t.teardown(() => tree.remove());
  const { client, daemon } = await startBroker(t, { sysfsRoot: tree.root, logLevel: 'warn' });
  const expected = tree.disks.flatMap((d) => [`${d.name} ${d.diskseq}`, ...d.partitions.map((p) => `${p.name} ${d.diskseq}`)]).sort();

  const [listed, watched, miss] = await Promise.all([
    client.list(true),
    watchSnapshot(daemon.socketPath),
    // An open while both are being served: answered (a miss reads nothing, waits for nothing).
    client.open({ diskseq: SYNTHETIC_DISKSEQ_BASE + 1n }),
  ]);
  t.deepEqual(listed.map((d) => `${d.name} ${d.diskseq}`).sort(), expected, 'List: every disk and partition once');
  t.deepEqual([...watched.added].sort(), expected, 'Watch: an ADDED event per device before SYNCED');
  t.deepEqual(watched.other, [], 'nothing but ADDED before SYNCED');
  t.false(miss.ok);
  if (!miss.ok) t.is(miss.code, 'NOT_FOUND');
});
