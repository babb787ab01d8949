/**
 * Describing indexed devices for List and Watch: the Device message's fields and the
 * allow-listed attributes the device can have, read from sysfs now. Not on the open path:
 * the opener reports what it verified on the fd instead. Describing thousands of devices
 * takes many sysfs reads, so it yields to the event loop between small batches: a List
 * never stalls other clients' opens.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { DiskEntry, PartitionEntry } from './registry.js';
import type { Sysfs } from './sysfs.js';
import { ATTRIBUTE_KEYS } from '../proto/attribute-keys.js';
import type { DeviceInfo } from '../proto/contract.js';

/** A disk (part undefined) or one of its partitions. */
export interface DeviceRef {
  disk: DiskEntry;
  part?: PartitionEntry;
}

/** Devices described per turn of the event loop. */
const BATCH = 32;

/** A snapshot of a disk (part undefined) or one of its partitions. */
export function describeDevice(sysfs: Sysfs, disk: DiskEntry, part?: PartitionEntry): DeviceInfo {
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

/** Snapshots of `devices`, yielding to the event loop after every small batch. */
export async function* describeGradually(sysfs: Sysfs, devices: readonly DeviceRef[]): AsyncGenerator<DeviceInfo> {
  for (let i = 0; i < devices.length; i++) {
    if (i > 0 && i % BATCH === 0) await nextTurn();
    yield describeDevice(sysfs, devices[i]!.disk, devices[i]!.part);
  }
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
