/**
 * The registry: an index diskseq -> disk (and its partitions by number), built from sysfs.
 * It is a cache for speed only; correctness comes from verifying every opened fd. Lookups
 * never scan: diskseq only grows, so an X at or below the highest diskseq seen that is not
 * in the index is absent for good. Only an X above it may still appear; such a miss costs
 * one rescan, rate-limited and shared by every request waiting for it.
 */
import type { Logger } from './log.js';
import type { Sysfs, Uevent } from './sysfs.js';

/** A disk in the index (never an unbound loop device). */
export interface DiskEntry {
  readonly name: string;
  readonly devname: string;
  readonly major: number;
  readonly minor: number;
  readonly diskseq: bigint;
  /** Driver of the major ('loop', 'device-mapper', ...). */
  readonly driver: string;
  readonly isLoop: boolean;
  /** Partitions by number. A loop device without LO_FLAGS_PARTSCAN never has any here. */
  readonly partitions: Map<number, PartitionEntry>;
}

/** A partition in the index; its identity is (parent diskseq, number), never its dev_t. */
export interface PartitionEntry {
  readonly name: string;
  readonly devname: string;
  readonly major: number;
  readonly minor: number;
  readonly partition: number;
  readonly disk: DiskEntry;
}

/** Options of the registry. */
export interface RegistryOptions {
  /** Lower bound between two miss-triggered rescans. */
  minRescanIntervalMs: number;
}

export class Registry {
  private readonly byDiskseq = new Map<bigint, DiskEntry>();
  private readonly byName = new Map<string, DiskEntry>();
  private highest = 0n;
  private lastScanEnd = 0;
  private lastScanCost = 0;
  private pendingRescan: Promise<void> | undefined;

  constructor(
    readonly sysfs: Sysfs,
    private readonly log: Logger,
    private readonly options: RegistryOptions = { minRescanIntervalMs: 10 },
  ) {}

  /** The highest diskseq seen on any disk, bound or not. */
  get highestSeen(): bigint {
    return this.highest;
  }

  /** Number of disks in the index. */
  get size(): number {
    return this.byDiskseq.size;
  }

  /** Every indexed disk, in no particular order. */
  disks(): IterableIterator<DiskEntry> {
    return this.byDiskseq.values();
  }

  /** The disk with this diskseq if it is in the index now; never touches sysfs. */
  find(diskseq: bigint): DiskEntry | undefined {
    return this.byDiskseq.get(diskseq);
  }

  /** Whether a diskseq not in the index could still appear (it is above all seen). */
  couldAppear(diskseq: bigint): boolean {
    return diskseq > this.highest;
  }

  /**
   * The disk with this diskseq. A miss above the highest diskseq seen waits for one shared,
   * rate-limited rescan; any other miss answers at once.
   */
  async resolve(diskseq: bigint): Promise<DiskEntry | undefined> {
    const hit = this.byDiskseq.get(diskseq);
    if (hit !== undefined || !this.couldAppear(diskseq)) return hit;
    await this.rescanSoon();
    return this.byDiskseq.get(diskseq);
  }

  /** Rebuilds the whole index from sysfs. */
  scan(): void {
    const started = performance.now();
    const names = this.sysfs.listBlockDevices();
    const partitions: Uevent[] = [];
    this.byDiskseq.clear();
    this.byName.clear();
    for (const name of names) {
      const uevent = this.sysfs.readUevent(name);
      if (uevent === null) continue;
      if (uevent.isPartition) partitions.push(uevent);
      else this.addDisk(uevent);
    }
    for (const uevent of partitions) {
      const parentName = this.sysfs.parentOf(uevent.name);
      const disk = parentName === null ? undefined : this.byName.get(parentName);
      if (disk !== undefined) this.addPartition(disk, uevent);
    }
    this.lastScanEnd = performance.now();
    this.lastScanCost = this.lastScanEnd - started;
    this.log.debug({ disks: this.byDiskseq.size, ms: Math.round(this.lastScanCost * 10) / 10 }, 'sysfs scan');
  }

  /**
   * Re-reads one device (for a partition: its parent disk) from sysfs and replaces what
   * the index holds for that name. Used after a verification failure.
   */
  refresh(name: string): void {
    const old = this.byName.get(name);
    if (old !== undefined) this.remove(old);
    const uevent = this.sysfs.readUevent(name);
    if (uevent === null) return;
    if (uevent.isPartition) {
      const parent = this.sysfs.parentOf(name);
      if (parent !== null) this.refresh(parent);
      return;
    }
    const disk = this.addDisk(uevent);
    if (disk === undefined) return;
    for (const partName of this.sysfs.partitionsOf(name)) {
      const partUevent = this.sysfs.readUevent(partName);
      if (partUevent?.isPartition) this.addPartition(disk, partUevent);
    }
  }

  /** Drops a disk from the index (its name and diskseq). */
  remove(disk: DiskEntry): void {
    if (this.byDiskseq.get(disk.diskseq) === disk) this.byDiskseq.delete(disk.diskseq);
    if (this.byName.get(disk.name) === disk) this.byName.delete(disk.name);
  }

  private addDisk(uevent: Uevent): DiskEntry | undefined {
    if (uevent.diskseq === null) return undefined;
    if (uevent.diskseq > this.highest) this.highest = uevent.diskseq;
    const driver = this.sysfs.driverOf(uevent.major);
    const isLoop = driver === 'loop';
    // An unbound loop device has a diskseq (left by its last detach) but no content:
    // an fd opened on it is not pinned and would follow the next attach.
    if (isLoop && !this.sysfs.isLoopBound(uevent.name)) return undefined;
    const disk: DiskEntry = {
      name: uevent.name, devname: uevent.devname, major: uevent.major, minor: uevent.minor,
      diskseq: uevent.diskseq, driver, isLoop, partitions: new Map(),
    };
    const previous = this.byDiskseq.get(disk.diskseq);
    if (previous !== undefined) this.remove(previous);
    const sameName = this.byName.get(disk.name);
    if (sameName !== undefined) this.remove(sameName);
    this.byDiskseq.set(disk.diskseq, disk);
    this.byName.set(disk.name, disk);
    return disk;
  }

  private addPartition(disk: DiskEntry, uevent: Uevent): void {
    // Without LO_FLAGS_PARTSCAN, BLKPG partitions of a loop device survive its detach and
    // would be served from the next instance's bytes: never index them.
    if (disk.isLoop && this.sysfs.attributeByName(disk.name, 'loop/partscan', false) !== '1') return;
    if (uevent.diskseq !== disk.diskseq) return; // read across a re-attach; the next look fixes it
    disk.partitions.set(uevent.partition, {
      name: uevent.name, devname: uevent.devname, major: uevent.major, minor: uevent.minor,
      partition: uevent.partition, disk,
    });
  }

  private rescanSoon(): Promise<void> {
    this.pendingRescan ??= new Promise<void>((resolve) => {
      // Rate limit: at least the minimum interval, and never more than ~10% of the time.
      const gap = Math.max(this.options.minRescanIntervalMs, this.lastScanCost * 10);
      const delay = Math.max(0, this.lastScanEnd + gap - performance.now());
      setTimeout(() => {
        this.pendingRescan = undefined;
        try {
          this.scan();
        } catch (error) {
          this.log.error({ err: error }, 'sysfs rescan failed');
        }
        resolve();
      }, delay);
    });
    return this.pendingRescan;
  }
}
