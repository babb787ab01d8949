/**
 * Describing indexed devices for List (and, later, Watch): the Device message's fields and
 * every allow-listed attribute, read from sysfs now. Not on the open path: the opener
 * reports what it verified on the fd instead.
 */
import type { DeviceSnapshot } from './opener.js';
import type { DiskEntry, PartitionEntry } from './registry.js';
import type { Sysfs } from './sysfs.js';
import { ATTRIBUTE_KEYS } from './wire.js';

/** A snapshot of a disk (partition undefined) or one of its partitions. */
export function describeDevice(sysfs: Sysfs, disk: DiskEntry, part?: PartitionEntry): DeviceSnapshot {
  const node = part ?? disk;
  const attributes: Record<string, string> = {};
  for (const key of ATTRIBUTE_KEYS) {
    const value = sysfs.attributeByName(node.name, key, part !== undefined);
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

/** Snapshots of every indexed disk, and its partitions when asked, in diskseq order. */
export function describeAll(sysfs: Sysfs, disks: Iterable<DiskEntry>, includePartitions: boolean): DeviceSnapshot[] {
  const sorted = [...disks].sort((a, b) => (a.diskseq < b.diskseq ? -1 : a.diskseq > b.diskseq ? 1 : 0));
  const out: DeviceSnapshot[] = [];
  for (const disk of sorted) {
    out.push(describeDevice(sysfs, disk));
    if (!includePartitions) continue;
    for (const number of [...disk.partitions.keys()].sort((a, b) => a - b)) {
      out.push(describeDevice(sysfs, disk, disk.partitions.get(number)));
    }
  }
  return out;
}
