/**
 * Describing indexed devices for List and Watch: the Device message's fields and the
 * allow-listed attributes the device can have, read from sysfs. Not on the open path: the
 * opener reports what it verified on the fd instead. A description is read once per
 * generation of its disk (the registry bumps it on every uevent for the disk or its
 * partitions) and at most DESCRIPTION_MAX_AGE_MS old, so a burst of Lists costs one set
 * of sysfs reads per device. Snapshots of many devices are described in fair turns
 * (src/fair-turns.ts): a List never stalls other clients' opens (docs/design.md, "Limits").
 */
import { monotonicMs } from './clock.js';
import type { FairTurns } from './fair-turns.js';
import type { DiskEntry, PartitionEntry } from './registry.js';
import type { Sysfs } from './sysfs.js';
import { ATTRIBUTE_KEYS } from '../proto/attribute-keys.js';
import type { DeviceInfo } from '../proto/contract.js';

/** A disk (part undefined) or one of its partitions. */
export interface DeviceRef {
  disk: DiskEntry;
  part?: PartitionEntry;
}

/** Devices described per step of a snapshot, at most (fewer when the turn's time is up). */
const BATCH = 32;

/**
 * How long a description is served from the cache. Uevents invalidate it at once; this
 * bounds how stale an attribute the kernel changes without a uevent can be in a List
 * (`ro` after BLKROSET, a loop's offset or flags changed at the same size).
 */
export const DESCRIPTION_MAX_AGE_MS = 1000;

interface CachedDescription {
  info: DeviceInfo;
  generation: number;
  at: number;
}

/** Descriptions by index entry; an entry that leaves the index takes its description along. */
const cache = new WeakMap<DiskEntry | PartitionEntry, CachedDescription>();

/**
 * A snapshot of a disk (part undefined) or one of its partitions: the cached one if it is
 * of the disk's current generation and young enough, else read from sysfs now.
 */
export function describeDevice(sysfs: Sysfs, disk: DiskEntry, part?: PartitionEntry): DeviceInfo {
  const node = part ?? disk;
  const now = monotonicMs();
  const cached = cache.get(node);
  if (cached !== undefined && cached.generation === disk.generation && now - cached.at < DESCRIPTION_MAX_AGE_MS) return cached.info;
  const info = readDescription(sysfs, disk, part);
  cache.set(node, { info, generation: disk.generation, at: now });
  return info;
}

/** The description as sysfs shows it now. */
function readDescription(sysfs: Sysfs, disk: DiskEntry, part: PartitionEntry | undefined): DeviceInfo {
  const node = part ?? disk;
  const device = sysfs.deviceByName(node.name, part !== undefined);
  const attributes: Record<string, string> = {};
  for (const key of ATTRIBUTE_KEYS) {
    if (!canHave(disk, part !== undefined, key)) continue;
    const value = device.attribute(key);
    if (value !== undefined) attributes[key] = value;
  }
  // sysfs `size` counts 512-byte sectors whatever the logical block size.
  const sectors = attributes['size'] !== undefined && /^\d+$/.test(attributes['size']) ? BigInt(attributes['size']) : 0n;
  return {
    diskseq: disk.diskseq,
    partition: part?.partition ?? 0,
    name: node.name,
    major: node.major,
    minor: node.minor,
    sizeBytes: sectors * 512n,
    readOnly: attributes['ro'] === '1',
    removable: attributes['removable'] === '1',
    driver: disk.driver,
    attributes,
  };
}

/** Every indexed disk, and its partitions when asked, in diskseq order (no sysfs reads). */
export function listDevices(disks: Iterable<DiskEntry>, includePartitions: boolean): DeviceRef[] {
  const sorted = [...disks].sort((a, b) => (a.diskseq < b.diskseq ? -1 : a.diskseq > b.diskseq ? 1 : 0));
  const out: DeviceRef[] = [];
  for (const disk of sorted) {
    out.push({ disk });
    if (!includePartitions) continue;
    for (const number of [...disk.partitions.keys()].sort((a, b) => a - b)) out.push({ disk, part: disk.partitions.get(number)! });
  }
  return out;
}

/**
 * Describes `devices` in fair turns (a small batch per step, taking turns with every other
 * snapshot) and hands each description to `sink`, which returns false to stop (its
 * connection closed). Resolves true when every device went to the sink, false when the
 * sink stopped or `signal` aborted.
 */
export async function describeInTurns(turns: FairTurns, sysfs: Sysfs, devices: readonly DeviceRef[],
  sink: (device: DeviceInfo) => boolean, signal?: AbortSignal): Promise<boolean> {
  let next = 0;
  let stopped = false;
  const done = await turns.run((deadline) => {
    for (let n = 0; n < BATCH && next < devices.length; n++) {
      const { disk, part } = devices[next++]!;
      if (!sink(describeDevice(sysfs, disk, part))) {
        stopped = true;
        return false;
      }
      if (monotonicMs() >= deadline) break;
    }
    return next < devices.length;
  }, signal);
  return done && !stopped;
}

/**
 * Whether a device can have this attribute at all, so that List does not pay a failing
 * sysfs read for each key a kind of device never has: loop/* only on loop devices, dm/*
 * only on device-mapper, device/* and wwid never on those two (they have no `device`),
 * partition and start only on partitions.
 */
function canHave(disk: DiskEntry, isPartition: boolean, key: string): boolean {
  const virtual = disk.isLoop || disk.driver === 'device-mapper';
  if (key.startsWith('loop/')) return disk.isLoop;
  if (key.startsWith('dm/')) return disk.driver === 'device-mapper';
  if (key.startsWith('device/') || key === 'wwid') return !virtual;
  if (key === 'partition' || key === 'start') return isPartition;
  return true;
}
