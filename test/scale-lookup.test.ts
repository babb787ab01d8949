/**
 * Scale (docs/design.md, "Registry"): with a synthetic sysfs tree of 10,000 disks the
 * initial scan completes, List arrives complete over several packets, and lookups — hits
 * and misses alike — touch sysfs only for the one device asked for: exactly the same reads
 * as with 10 disks, and none at all for a miss. Reads are counted (Sysfs.counters, and the
 * names each read concerns), never timed.
 *
 * The daemon's pieces run in this process (wired as src/main.ts wires them, without
 * uevents), so the counters can be read. One disk of each tree is this test's own real
 * loop device (real major, minor, DEVNAME and diskseq) so that a hit goes through the whole
 * open-and-verify and delivers an fd.
 */
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../native/index.js';
import { diskseqd } from '../proto/gen/diskseqd.js';
import { createLogger } from '../src/log.js';
import { Opener } from '../src/opener.js';
import { Policy } from '../src/policy/index.js';
import { PrivateNodes } from '../src/private-nodes.js';
import { Registry } from '../src/registry.js';
import { Server } from '../src/server.js';
import { Sysfs, type SysfsCounters } from '../src/sysfs.js';
import { WatchHub } from '../src/watch-hub.js';
import { FairTurns } from '../src/fair-turns.js';
import { DEFAULT_QUOTA_LIMITS, Quotas } from '../src/quotas.js';
import { RequestTally } from '../src/request-tally.js';
import { needsRoot } from './helpers/ci.js';
import { createLoop, type LoopFixture } from '../testkit/loop.js';
import { createSyntheticSysfs, SYNTHETIC_DISKSEQ_BASE, type SyntheticDisk, type SyntheticSysfs } from '../testkit/synthetic-sysfs.js';
import { WireClient, type OpenOutcome } from '../testkit/wire-client.js';

/** A Sysfs that also records which device each read concerns (a name or major:minor). */
class RecordingSysfs extends Sysfs {
  readonly touched: string[] = [];
  override listBlockDevices(): string[] {
    this.touched.push('*');
    return super.listBlockDevices();
  }
  override readUevent(name: string) {
    this.touched.push(name);
    return super.readUevent(name);
  }
  override parentOf(name: string) {
    this.touched.push(name);
    return super.parentOf(name);
  }
  override partitionsOf(name: string) {
    this.touched.push(name);
    return super.partitionsOf(name);
  }
  override deviceByName(name: string, isPartition: boolean) {
    this.touched.push(name);
    return super.deviceByName(name, isPartition);
  }
  override deviceByDevt(major: number, minor: number, isPartition: boolean) {
    this.touched.push(`${major}:${minor}`);
    return super.deviceByDevt(major, minor, isPartition);
  }
}

/** The daemon's pieces in this process, on a private socket; stopped in teardown. */
async function inProcessDaemon(t: ExecutionContext, tree: SyntheticSysfs) {
  const dir = mkdtempSync(join(tmpdir(), 'diskseqd-scale-'));
  // Never the daemon's own /dev/.diskseqd (its constructor empties the directory); root
  // peers never use it anyway.
  const nodes = mkdtempSync('/dev/.diskseqd-scale-');
  const log = createLogger('silent');
  const sysfs = new RecordingSysfs(tree.root, tree.procDevices);
  const registry = new Registry(sysfs, log);
  registry.scan();
  const scanCounters = { ...sysfs.counters };
  const opener = new Opener(registry, sysfs, () => Policy.builtinDefault(), new PrivateNodes(nodes), log);
  const socketPath = join(dir, 'd.sock');
  const turns = new FairTurns();
  const quotas = new Quotas({ ...DEFAULT_QUOTA_LIMITS, connections: { total: 16, perUid: 16 } });
  const server = new Server({ socketPath, socketMode: 0o600, backlog: 16 }, {
    opener, registry, log, serverVersion: 'scale-test', watchHub: new WatchHub(registry, turns), turns, quotas, tally: new RequestTally(),
    limits: { maxInFlight: 16, maxQueuedPackets: 1024, maxQueuedBytes: 64 << 20, maxQueuedFds: 16, stallTimeoutMs: 30_000 },
  });
  server.start();
  t.teardown(async () => {
    await server.shutdown(1000);
    rmSync(dir, { recursive: true, force: true });
    rmSync(nodes, { recursive: true, force: true });
  });
  return { sysfs, registry, socketPath, scanCounters };
}

/** Every DeviceList packet of one List request, as sent. */
async function listPackets(socketPath: string, includePartitions: boolean): Promise<diskseqd.v1.IDeviceList[]> {
  const client = WireClient.connect(socketPath);
  try {
    return (await client.listResponses(includePartitions)).map((response) => {
      if (!response.devices) throw new Error(`unexpected response ${JSON.stringify(response.toJSON())}`);
      return response.devices;
    });
  } finally {
    client.close();
  }
}

/** The test's real loop device (PARTSCAN, partition 1 added) as a disk of the tree. */
function realDisk(loop: LoopFixture): SyntheticDisk {
  const dev = (name: string) => readFileSync(`/sys/class/block/${name}/dev`, 'utf8').trim().split(':').map(Number) as [number, number];
  const [major, minor] = dev(loop.name);
  const [pMajor, pMinor] = dev(loop.partitionName(1));
  return {
    name: loop.name, devname: loop.name, major, minor, diskseq: loop.diskseq, sizeSectors: loop.image.sizeBytes / 512,
    readOnly: false, removable: false, loop: { backingFile: loop.image.path, partscan: true },
    partitions: [{ number: 1, name: loop.partitionName(1), major: pMajor, minor: pMinor }],
  };
}

const trees: { big?: SyntheticSysfs; small?: SyntheticSysfs; loop?: LoopFixture } = {};

test.before(() => {
  if (process.getuid?.() !== 0) return; // each test reports the skip (or the CI failure)
  const loop = createLoop({ partscan: true, partitionsMiB: [2] });
  trees.loop = loop;
  trees.big = createSyntheticSysfs({ count: 10_000, partitionsEvery: 500, extra: [realDisk(loop)] });
  trees.small = createSyntheticSysfs({ count: 10, partitionsEvery: 5, extra: [realDisk(loop)] });
});

test.after.always(() => {
  trees.big?.remove();
  trees.small?.remove();
  trees.loop?.cleanup();
});

test('the initial scan of 10,000 disks reads each uevent once, and List arrives complete over several packets', async (t) => {
  if (!needsRoot(t)) return;
  const tree = trees.big!;
  const { registry, scanCounters, sysfs, socketPath } = await inProcessDaemon(t, tree);
  t.is(registry.size, 10_001, 'every disk indexed (10,000 synthetic + our loop)');
  t.is(registry.highestSeen, tree.highest);
  t.is(scanCounters.directoryListings, 1, 'one listing of class/block');
  t.is(scanCounters.ueventReads, tree.entries, 'one uevent read per disk and partition');
  // Attributes are read only for loop devices (bound? PARTSCAN?): as many at 10,000 disks
  // as at 10, where the only loop device is ours.
  const small = await inProcessDaemon(t, trees.small!);
  t.is(small.scanCounters.ueventReads, trees.small!.entries);
  t.is(scanCounters.attributeReads, small.scanCounters.attributeReads, 'no per-disk attribute reads for non-loop disks');

  const packets = await listPackets(socketPath, true);
  t.true(packets.length > 1, `List split over ${packets.length} packets`);
  t.deepEqual(packets.map((p) => p.more === true), packets.map((_, i) => i < packets.length - 1), 'more on all but the last');
  const listed = packets.flatMap((p) => p.devices ?? []).map((d) => `${d.name} ${String(d.diskseq)} ${d.partition ?? 0} ${d.major}:${d.minor}`).sort();
  const expected = tree.disks.flatMap((d) => [
    `${d.name} ${d.diskseq} 0 ${d.major}:${d.minor}`,
    ...d.partitions.map((p) => `${p.name} ${d.diskseq} ${p.number} ${p.major}:${p.minor}`),
  ]).sort();
  t.is(listed.length, tree.entries);
  t.deepEqual(listed, expected, 'every disk and partition exactly once, with its diskseq and number');
  t.is(sysfs.counters.ueventReads, scanCounters.ueventReads, 'List reads no uevent');
});

/** One lookup and the reads it caused. */
interface Probe {
  outcome: string;
  reads: SysfsCounters;
  touched: string[];
}

async function probe(sysfs: RecordingSysfs, client: WireClient, request: Parameters<WireClient['open']>[0]): Promise<Probe> {
  const before = { ...sysfs.counters };
  sysfs.touched.length = 0;
  const outcome: OpenOutcome = await client.open(request);
  const reads = {
    ueventReads: sysfs.counters.ueventReads - before.ueventReads,
    attributeReads: sysfs.counters.attributeReads - before.attributeReads,
    directoryListings: sysfs.counters.directoryListings - before.directoryListings,
  };
  let result: string;
  if (outcome.ok) {
    const fdProbe = native.probeFdSync(outcome.fd);
    native.close(outcome.fd);
    result = fdProbe.diskseq === BigInt(request.diskseq.toString()) ? `fd ${outcome.device.name}` : `WRONG fd diskseq ${fdProbe.diskseq}`;
  } else {
    result = outcome.code;
  }
  return { outcome: result, reads, touched: [...new Set(sysfs.touched)].sort() };
}

test('lookups at 10,000 disks read only the one device, exactly as at 10; misses read nothing', async (t) => {
  if (!needsRoot(t)) return;
  const loop = trees.loop!;
  const [major, minor] = readFileSync(`/sys/class/block/${loop.name}/dev`, 'utf8').trim().split(':');
  const [pMajor, pMinor] = readFileSync(`/sys/class/block/${loop.partitionName(1)}/dev`, 'utf8').trim().split(':');
  const loopDevice = [loop.name, `${major}:${minor}`];
  const loopPartition = [...loopDevice, loop.partitionName(1), `${pMajor}:${pMinor}`];
  const far = SYNTHETIC_DISKSEQ_BASE + 1_000_000_000n;
  const cases: { what: string; request: Parameters<WireClient['open']>[0]; outcome: string | RegExp; device: string[] }[] = [
    { what: 'hit: our loop, whole disk', request: { diskseq: loop.diskseq }, outcome: `fd ${loop.name}`, device: loopDevice },
    { what: 'hit: our loop, partition 1', request: { diskseq: loop.diskseq, partition: 1 }, outcome: `fd ${loop.partitionName(1)}`, device: loopPartition },
    // synth3 has no /dev node: the open fails, the one device is re-read, and that is all.
    { what: 'hit: synth3 (no /dev node)', request: { diskseq: SYNTHETIC_DISKSEQ_BASE + 6n }, outcome: /^(NOT_FOUND|STALE)$/, device: ['synth3', '252:3'] },
    { what: 'miss: absent partition of our loop', request: { diskseq: loop.diskseq, partition: 2 }, outcome: 'NOT_FOUND', device: [loop.name] },
    { what: 'miss: absent partition of synth3', request: { diskseq: SYNTHETIC_DISKSEQ_BASE + 6n, partition: 2 }, outcome: 'NOT_FOUND', device: [] },
    { what: 'miss: absent diskseq below the highest', request: { diskseq: SYNTHETIC_DISKSEQ_BASE + 1n }, outcome: 'NOT_FOUND', device: [] },
    { what: 'miss: below the highest, with wait_ms', request: { diskseq: SYNTHETIC_DISKSEQ_BASE + 3n, waitMs: 600_000 }, outcome: 'NOT_FOUND', device: [] },
    { what: 'miss: above the highest', request: { diskseq: far }, outcome: 'NOT_FOUND', device: [] },
    { what: 'miss: above the highest, with wait_ms', request: { diskseq: far, waitMs: 50 }, outcome: 'TIMEOUT', device: [] },
    { what: 'miss: diskseq 1', request: { diskseq: 1 }, outcome: 'NOT_FOUND', device: [] },
  ];

  const results: Record<string, Probe[]> = {};
  for (const [size, tree] of [['10', trees.small!], ['10,000', trees.big!]] as const) {
    const { sysfs, socketPath } = await inProcessDaemon(t, tree);
    const client = WireClient.connect(socketPath);
    t.teardown(() => client.close());
    results[size] = [];
    for (const c of cases) results[size].push(await probe(sysfs, client, c.request));
  }

  for (const [i, c] of cases.entries()) {
    const [small, big] = [results['10']![i]!, results['10,000']![i]!];
    if (typeof c.outcome === 'string') t.is(big.outcome, c.outcome, `${c.what}: outcome`);
    else t.regex(big.outcome, c.outcome, `${c.what}: outcome`);
    t.is(small.outcome, big.outcome, `${c.what}: same outcome at 10 disks`);
    t.deepEqual(big.reads, small.reads, `${c.what}: the same reads at 10,000 disks as at 10`);
    t.deepEqual(big.touched.filter((name) => !c.device.includes(name)), [], `${c.what}: reads concern only ${c.device.join(', ') || 'nothing'}`);
    if (c.device.length === 0) t.deepEqual(big.reads, { ueventReads: 0, attributeReads: 0, directoryListings: 0 }, `${c.what}: no read at all`);
    t.log(`${c.what}: ${big.outcome}; reads ${JSON.stringify(big.reads)}`);
  }
});
