/**
 * The registry equals the kernel's view (docs/design.md, "Registry"): after a burst of
 * attach, detach, re-attach and BLKPG add/delete on the test's own loop devices, the
 * daemon's List (with partitions) equals a fresh sysfs scan of those devices — nothing
 * missing, nothing extra. Unbound loops are absent, and so are the partitions of loops
 * without LO_FLAGS_PARTSCAN (sysfs lists them, the daemon must not).
 */
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { claimUnboundLoop, createLoop, type LoopFixture, reattachOrReplace } from '../testkit/loop.js';
import type { DeviceInfo, WireClient } from '../testkit/wire-client.js';
import { startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';

/** What both sides say about one device. */
interface View {
  name: string;
  diskseq: string;
  partition: number;
  dev: string;
  sizeBytes: string;
  readOnly: boolean;
}

const read = (path: string): string => readFileSync(path, 'utf8').trim();

/**
 * A fresh sysfs scan of loop device `index`: the disk when bound and, when it has
 * LO_FLAGS_PARTSCAN, each partition (with the disk's diskseq) — what the daemon should list.
 */
function sysfsView(index: number): View[] {
  const name = `loop${index}`;
  const dir = `/sys/class/block/${name}`;
  if (!existsSync(`${dir}/loop/backing_file`)) return [];
  const diskseq = read(`${dir}/diskseq`);
  const describe = (node: string, partition: number): View => ({
    name: node, diskseq, partition, dev: read(`/sys/class/block/${node}/dev`),
    sizeBytes: (BigInt(read(`/sys/class/block/${node}/size`)) * 512n).toString(), readOnly: read(`/sys/class/block/${node}/ro`) === '1',
  });
  const views = [describe(name, 0)];
  if (read(`${dir}/loop/partscan`) !== '1') return views;
  for (const entry of readdirSync(dir)) {
    if (entry.startsWith(`${name}p`) && existsSync(`${dir}/${entry}/partition`)) views.push(describe(entry, Number(read(`${dir}/${entry}/partition`))));
  }
  return views;
}

/** Partitions sysfs lists for a loop device, PARTSCAN or not. */
function sysfsPartitions(index: number): string[] {
  const dir = `/sys/class/block/loop${index}`;
  return readdirSync(dir).filter((e) => e.startsWith(`loop${index}p`) && existsSync(`${dir}/${e}/partition`));
}

const owned = (indices: Set<number>) => (name: string): boolean => {
  const match = /^loop(\d+)(?:p\d+)?$/.exec(name);
  return match !== null && indices.has(Number(match[1]));
};

const byName = (a: View, b: View): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

function daemonView(devices: DeviceInfo[], mine: (name: string) => boolean): View[] {
  return devices.filter((d) => mine(d.name)).map((d) => ({
    name: d.name, diskseq: d.diskseq.toString(), partition: d.partition, dev: `${d.major}:${d.minor}`,
    sizeBytes: d.sizeBytes.toString(), readOnly: d.readOnly,
  })).sort(byName);
}

/**
 * Lists after a barrier: an open of a diskseq gone for good makes the daemon drain every
 * uevent already queued (answered NOT_FOUND), and this connection's List comes after it.
 */
async function listAfterDrain(t: ExecutionContext, client: WireClient, absent: bigint): Promise<DeviceInfo[]> {
  const miss = await client.open({ diskseq: absent, waitMs: 600_000 });
  t.false(miss.ok);
  if (!miss.ok) t.is(miss.code, 'NOT_FOUND');
  return client.list(true);
}

function partx(action: '--add' | '--delete', loop: LoopFixture, nr?: number): void {
  execFileSync('partx', [action, ...(nr === undefined ? [] : ['--nr', String(nr)]), loop.devPath], { stdio: 'pipe' });
}

test('after a burst of loop operations, List equals a fresh sysfs scan of the test\'s own devices', async (t) => {
  if (!needsRoot(t)) return;
  const sentinel = createLoop({}, t);
  const absent = sentinel.diskseq;
  sentinel.detach();
  const { client } = await startBroker(t);

  // The burst, all synchronous: the daemon sees the uevents afterwards, piled up.
  const scanned = createLoop({ partscan: true, partitionsMiB: [1, 1, 1] }, t);
  const partial = createLoop({ partscan: true, partitionsMiB: [2, 2] }, t);
  partx('--delete', partial, 1);
  let noPartscan = createLoop({ partscan: false, partitionsMiB: [2] }, t);
  let renewed = createLoop({ partscan: true, partitionsMiB: [2] }, t);
  renewed = reattachOrReplace(t, renewed, { partitionsMiB: [1, 1] });
  renewed = reattachOrReplace(t, renewed, { partitionsMiB: [3] });
  const detached = createLoop({ partscan: true, partitionsMiB: [2] }, t);
  const unbound = claimUnboundLoop(t);
  const detachedDiskseq = detached.diskseq;
  detached.detach();
  let churned = createLoop({ partscan: true, partitionsMiB: [1, 1] }, t);
  const gone = [] as bigint[];
  for (let i = 0; i < 5; i++) {
    partx('--delete', churned, 2);
    partx('--add', churned, 2);
    gone.push(churned.diskseq);
    churned = reattachOrReplace(t, churned, { partitionsMiB: i % 2 === 0 ? [1] : [1, 1] });
  }

  // Only devices we still hold: a detached loop's name may be taken by anyone at once.
  const held = (): Set<number> => new Set([...[scanned, partial, noPartscan, renewed, churned].filter((l) => l.attached).map((l) => l.index), unbound.index]);
  t.is(held().size, 6, 'six distinct loop devices held');
  t.true(sysfsPartitions(noPartscan.index).length > 0, 'sysfs lists the non-PARTSCAN loop\'s partition');
  gone.push(detachedDiskseq);

  const check = async (when: string) => {
    const devices = await listAfterDrain(t, client, absent);
    const indices = held();
    const expected = [...indices].flatMap(sysfsView).sort(byName);
    t.deepEqual(daemonView(devices, owned(indices)), expected, `${when}: List equals the sysfs scan`);
    const listed = new Set(devices.map((d) => d.name));
    t.false(listed.has(unbound.name), `${when}: unbound ${unbound.name} is absent`);
    for (const p of sysfsPartitions(noPartscan.index)) t.false(listed.has(p), `${when}: ${p} (no PARTSCAN) is absent`);
    for (const d of gone) t.false(devices.some((x) => x.diskseq === d), `${when}: detached diskseq ${d} is absent`);
    const disks = devices.filter((d) => d.partition === 0).map((d) => d.diskseq.toString());
    t.is(new Set(disks).size, disks.length, `${when}: no diskseq listed twice`);
  };
  await check('after the burst');

  // Second round: undo some of it and check again.
  gone.push(scanned.diskseq, churned.diskseq, noPartscan.diskseq);
  scanned.detach();
  partx('--add', partial, 1);
  churned = reattachOrReplace(t, churned, { partitionsMiB: [1, 1, 1] });
  noPartscan = reattachOrReplace(t, noPartscan, { partitionsMiB: [1] });
  await check('after the second round');
});
