/**
 * The registry: an index diskseq -> disk (and its partitions by number), built from one
 * sysfs scan and kept current by re-reading single devices when the kernel's uevents name
 * them. It is a cache for speed only; correctness comes from verifying every opened fd.
 *
 * Lookups never scan. diskseq only grows, so an X at or below the highest diskseq seen
 * that is not in the index is absent for good; only an X above it can still appear. Full
 * rescans happen at start and after a uevent overrun, never because a client asked. The
 * start's scan runs while the daemon already serves (startInitialScan): an X it has not
 * reached yet is never answered absent.
 */
import { monotonicMs } from './clock.js';
import type { Logger } from './log.js';
import { PartitionProvenance } from './partition-provenance.js';
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
  /**
   * A loop device attached with LO_FLAGS_PARTSCAN (loop/partscan reads 1); false for every
   * other driver. Read when the disk is indexed and again at each re-read of it.
   */
  partscan: boolean;
  /**
   * Removable media (sysfs `removable`): read at the first open of this disk instance and
   * kept here, so a full scan of thousands of disks reads nothing but their uevent files.
   */
  removable: boolean | undefined;
  /**
   * Bumped each time the registry re-reads this disk from sysfs — a uevent for it or one of
   * its partitions, a verification mismatch, a full scan — before it reports what changed:
   * what was cached about the disk or its partitions at an earlier generation is stale.
   */
  generation: number;
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

/** A change of the index, as watchers see it. Identity is (diskseq, partition). */
export interface RegistryChange {
  kind: 'added' | 'removed' | 'changed';
  disk: DiskEntry;
  /** Set for a partition's own change. */
  part?: PartitionEntry;
}

/** Why a wait ended without the device. */
export type WaitFailure = 'gone' | 'timeout' | 'cancelled';

interface Waiter {
  diskseq: bigint;
  partition: number;
  /** The waiting peer's uid, and when it started waiting (monotonicMs()), for the status view. */
  uid: number;
  since: number;
  settle(failure: WaitFailure | null): void;
}

/** A request waiting for its device, as the status view shows it. */
export interface WaitingOpenInfo {
  diskseq: bigint;
  partition: number;
  uid: number;
  waitedMs: number;
}

/** The last full scan of sysfs: when it ended (Date.now()) and how long it took. */
export interface ScanInfo {
  at: number;
  us: number;
}

/** Kernel names of loop devices: only these can be told unbound by one stat. */
const LOOP_NAME = /^loop[0-9]+$/;

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

export class Registry {
  private readonly byDiskseq = new Map<bigint, DiskEntry>();
  private readonly byName = new Map<string, DiskEntry>();
  /** Partition sysfs name -> its disk, so a removed partition still finds its parent. */
  private readonly partitionOwner = new Map<string, DiskEntry>();
  private readonly waiters = new Map<bigint, Set<Waiter>>();
  private readonly listeners = new Set<(change: RegistryChange) => void>();
  private waiterCount = 0;
  private highest = 0n;
  private lastFullScan: ScanInfo | undefined;
  /** While the initial scan indexes bound disks: resolves when every one is indexed. */
  private indexing: Promise<void> | undefined;
  /** While the initial scan runs at all (the highest diskseq is known only at its end). */
  private scanning: Promise<void> | undefined;

  /**
   * @param drainEvents reads pending uevents before a miss is answered, so a device the
   *   kernel already announced is never reported absent
   * @param provenance which loop partition was added to which disk instance, kept where a
   *   restart finds it (src/partition-provenance.ts); in memory only by default
   */
  constructor(
    readonly sysfs: Sysfs,
    private readonly log: Logger,
    private readonly drainEvents: () => void = () => undefined,
    private readonly provenance: PartitionProvenance = PartitionProvenance.inMemory(),
  ) {}

  /** The highest diskseq seen on any disk, bound or not. */
  get highestSeen(): bigint {
    return this.highest;
  }

  /** Number of disks in the index. */
  get size(): number {
    return this.byDiskseq.size;
  }

  /** Requests waiting for a device to appear. */
  get waiting(): number {
    return this.waiterCount;
  }

  /** Partitions in the index. */
  get partitionCount(): number {
    return this.partitionOwner.size;
  }

  /** The last full scan (at start, then after each uevent overrun); undefined before the first. */
  get lastScan(): ScanInfo | undefined {
    return this.lastFullScan;
  }

  /**
   * The waiting requests (of `uid` only, when given), oldest first, at most `limit`. Walks
   * every waiter (at most the daemon's --max-waiting): for the status view, not a hot path.
   */
  waitingOpens(limit: number, uid?: number): WaitingOpenInfo[] {
    const now = monotonicMs();
    const all: Waiter[] = [];
    for (const set of this.waiters.values()) for (const waiter of set) if (uid === undefined || waiter.uid === uid) all.push(waiter);
    all.sort((a, b) => a.since - b.since);
    return all.slice(0, limit).map((w) => ({ diskseq: w.diskseq, partition: w.partition, uid: w.uid, waitedMs: Math.floor(now - w.since) }));
  }

  /** Every indexed disk, in no particular order. */
  disks(): IterableIterator<DiskEntry> {
    return this.byDiskseq.values();
  }

  /** The disk with this diskseq if it is in the index now; never touches sysfs. */
  find(diskseq: bigint): DiskEntry | undefined {
    return this.byDiskseq.get(diskseq);
  }

  /**
   * Handles every uevent already pending on the kernel's socket, so that an answer
   * reflects what the kernel has announced: called before a miss is answered NOT_FOUND and
   * before a List or Watch snapshot. Handling an event re-reads its device, which may change
   * the index, wake waiters and notify watchers (docs/design.md, "Registry").
   */
  handlePendingUevents(): void {
    this.drainEvents();
  }

  /** Whether a diskseq not in the index could still appear (it is above all seen). */
  couldAppear(diskseq: bigint): boolean {
    return diskseq > this.highest;
  }

  /** Subscribes to index changes; returns the unsubscribe function. */
  subscribe(listener: (change: RegistryChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Waits until disk `diskseq` (and its partition, when > 0) is in the index. Resolves
   * null when it is; otherwise with why not: 'gone' as soon as it can no longer appear
   * (an absent X at or below the highest seen, or the awaited partition's disk removed),
   * 'timeout' after timeoutMs, 'cancelled' when the signal fires. Costs nothing while it
   * waits: it is woken only by index changes that concern it. `uid`: the waiting peer's,
   * for the status view.
   */
  waitFor(diskseq: bigint, partition: number, timeoutMs: number, signal?: AbortSignal, uid = -1): Promise<WaitFailure | null> {
    const now = this.check(diskseq, partition);
    if (now !== 'wait') return Promise.resolve(now);
    return new Promise((resolve) => {
      const onAbort = () => waiter.settle('cancelled');
      const timer = setTimeout(() => waiter.settle('timeout'), timeoutMs);
      const waiter: Waiter = {
        diskseq, partition, uid, since: monotonicMs(),
        settle: (failure) => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          const set = this.waiters.get(diskseq);
          if (set?.delete(waiter)) {
            this.waiterCount--;
            if (set.size === 0) this.waiters.delete(diskseq);
          }
          resolve(failure);
        },
      };
      let set = this.waiters.get(diskseq);
      if (set === undefined) this.waiters.set(diskseq, (set = new Set()));
      set.add(waiter);
      this.waiterCount++;
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Whether an answer about (diskseq, partition) must wait for the initial scan: it runs,
   * and that disk (or partition) is not indexed yet. Then `indexed()` says when to look.
   */
  scanPending(diskseq: bigint, partition: number): boolean {
    if (this.indexing === undefined) return false;
    const disk = this.byDiskseq.get(diskseq);
    return disk === undefined || (partition > 0 && !disk.partitions.has(partition));
  }

  /** Resolves once the initial scan has indexed every bound disk (at once when it has). */
  indexed(): Promise<void> {
    return this.indexing ?? Promise.resolve();
  }

  /** Resolves once the initial scan is complete, the highest diskseq included. */
  scanned(): Promise<void> {
    return this.scanning ?? Promise.resolve();
  }

  /**
   * The first scan, for a daemon that already accepts connections (docs/design.md,
   * "Registry": the first scan). It yields to the event loop every `sliceMs`, so requests
   * are read meanwhile; a lookup that misses waits for indexed() before it is
   * answered, a hit is served at once. Only devices with a size are indexed first (one read
   * of /proc/partitions names them; on a synthetic tree an unbound loop device costs one
   * stat, as it has no `loop/` directory): on a host with test churn thousands of unbound
   * loops sit in sysfs. Their uevent files, read only for the highest diskseq (which
   * decides whether a wait_ms can still be met), are read after every disk is indexed.
   * Entries that uevents made meanwhile are newer than the scan's view and stay; the index
   * starts empty, so nothing is removed.
   */
  startInitialScan(sliceMs = 2): Promise<void> {
    let indexed!: () => void;
    this.indexing = new Promise((resolve) => {
      indexed = resolve;
    });
    this.scanning = this.initialScan(sliceMs, () => {
      this.indexing = undefined;
      indexed();
    }).finally(() => {
      this.indexing = undefined;
      indexed();
      this.scanning = undefined;
      this.wakeWaiters();
    });
    return this.scanning;
  }

  private async initialScan(sliceMs: number, onIndexed: () => void): Promise<void> {
    const started = monotonicMs();
    const partitions: Uevent[] = [];
    const empty: string[] = [];
    let sliceStart = 0;
    const next = async (): Promise<void> => {
      await new Promise((resolve) => setImmediate(resolve));
      sliceStart = monotonicMs();
    };
    // Requests are read between slices: a slice ends after `sliceMs`.
    const pause = async (): Promise<void> => {
      if (monotonicMs() - sliceStart >= sliceMs) await next();
    };
    await next(); // the caller goes on to serve first
    // The real /sys: /proc/partitions names the devices that have a size, in one read;
    // everything else (unbound loops, empty drives) is read after indexing. Otherwise one
    // stat tells an unbound loop device.
    const nonEmpty = this.sysfs.nonEmptyBlockDevices();
    const candidates = nonEmpty ?? this.sysfs.listBlockDevices();
    const loopDisks = new Set<string>();
    for (const name of candidates) {
      await pause();
      if (nonEmpty === undefined && LOOP_NAME.test(name) && !this.sysfs.loopBound(name)) {
        empty.push(name);
        continue;
      }
      const uevent = this.sysfs.readUevent(name);
      if (uevent === null) continue;
      if (uevent.isPartition) {
        partitions.push(uevent);
        continue;
      }
      const driver = this.sysfs.driverOf(uevent.major);
      if (driver === 'loop') loopDisks.add(name);
      if (!this.byName.has(name)) this.replace(name, this.entryFor(uevent, driver), false);
    }
    const found = new Map<string, Uevent[]>();
    const loopPartitions = new Map<string, bigint | null>(); // name -> sysfs inode
    for (const uevent of partitions) {
      await pause();
      const parent = this.sysfs.parentOf(uevent.name);
      if (parent === null) continue;
      let list = found.get(parent);
      if (list === undefined) found.set(parent, (list = []));
      list.push(uevent);
      // As in scan(): every loop disk's, bound or not (an unbound one was not read above,
      // but its kernel name says what it is).
      if (loopDisks.has(parent) || LOOP_NAME.test(parent)) loopPartitions.set(uevent.name, this.observeLoopPartition(uevent));
    }
    // Not retainOnly(what this scan found): /proc/partitions leaves out the partitions of a
    // disk without a size, such as the carried-over ones of an unbound loop device, and
    // uevents record entries while the scan runs. Forgetting either would let a later scan
    // take a carried-over partition for one of the current instance.
    this.provenance.forgetGone((name) => this.sysfs.identityOf(name));
    for (const [name, list] of found) {
      const disk = this.byName.get(name);
      if (disk === undefined) continue;
      const admit = disk.isLoop ? (u: Uevent) => this.provenance.allows(u.name, loopPartitions.get(u.name) ?? null, disk.diskseq) : undefined;
      this.syncPartitions(disk, [...list, ...this.currentPartitions(disk)], admit);
    }
    this.provenance.save();
    const indexedMs = monotonicMs() - started;
    onIndexed();
    this.wakeWaiters();
    // The requests that waited for the index go first, and the listing of every block
    // device is read in slices too: in one readdirSync() it held the JS thread for ~5 ms
    // with 5,000 unbound loops in sysfs, and the first open after a socket activation
    // waited for it.
    await next();
    if (nonEmpty !== undefined) {
      const seen = new Set(nonEmpty);
      for (const name of this.sysfs.blockDeviceNames()) {
        if (!seen.has(name)) empty.push(name);
        await pause();
      }
    }
    for (const name of empty) {
      await pause();
      const diskseq = this.sysfs.readUevent(name)?.diskseq;
      if (diskseq != null && diskseq > this.highest) this.highest = diskseq;
    }
    // The status view's "last full scan" (unless an overrun's rescan already recorded one).
    this.lastFullScan ??= { at: Date.now(), us: Math.round((monotonicMs() - started) * 1000) };
    this.log.info({
      disks: this.byDiskseq.size, emptyDevices: empty.length,
      indexedMs: round(indexedMs), ms: round(monotonicMs() - started),
    }, 'sysfs scanned');
  }

  /** A disk's indexed partitions as uevents, so that an admit-only sync keeps them. */
  private currentPartitions(disk: DiskEntry): Uevent[] {
    return [...disk.partitions.values()].map((p) => ({
      name: p.name, devname: p.devname, major: p.major, minor: p.minor, isPartition: true, diskseq: disk.diskseq, partition: p.partition,
    }));
  }

  /** Rebuilds the whole index from sysfs, telling watchers what changed. */
  scan(): void {
    const started = monotonicMs();
    for (const disk of this.byName.values()) disk.generation++;
    const seen = new Set<string>();
    const partitions: Uevent[] = [];
    const loopDisks = new Set<string>();
    for (const name of this.sysfs.listBlockDevices()) {
      const uevent = this.sysfs.readUevent(name);
      if (uevent === null) continue;
      if (uevent.isPartition) {
        partitions.push(uevent);
        continue;
      }
      seen.add(name);
      const driver = this.sysfs.driverOf(uevent.major);
      if (driver === 'loop') loopDisks.add(name);
      this.replace(name, this.entryFor(uevent, driver), false);
    }
    for (const [name, disk] of this.byName) if (!seen.has(name)) this.replace(name, undefined, false, disk);
    const found = new Map<string, Uevent[]>();
    const loopPartitions = new Map<string, bigint | null>(); // name -> sysfs inode
    for (const uevent of partitions) {
      const parent = this.sysfs.parentOf(uevent.name);
      if (parent === null) continue;
      let list = found.get(parent);
      if (list === undefined) found.set(parent, (list = []));
      list.push(uevent);
      // Every loop disk's, bound or not, indexed or not: a partition first seen under an
      // unbound loop must not pass for one of the next instance (see observe()).
      if (loopDisks.has(parent)) loopPartitions.set(uevent.name, this.observeLoopPartition(uevent));
    }
    this.provenance.retainOnly(new Set(loopPartitions.keys()));
    for (const disk of this.byName.values()) {
      // A full scan admits a loop partition by the same rule as the live path.
      const admit = disk.isLoop ? (u: Uevent) => this.provenance.allows(u.name, loopPartitions.get(u.name) ?? null, disk.diskseq) : undefined;
      this.syncPartitions(disk, found.get(disk.name) ?? [], admit);
    }
    this.provenance.save();
    const us = Math.round((monotonicMs() - started) * 1000);
    this.lastFullScan = { at: Date.now(), us };
    this.log.debug({ disks: this.byDiskseq.size, ms: us / 1000 }, 'sysfs scan');
    this.wakeWaiters();
  }

  /**
   * Re-reads one device (for a partition: its parent disk) from sysfs and updates the
   * index. `changeEvent`: the kernel sent a `change` for it, which under the same diskseq
   * means its attributes (size, read-only) changed.
   */
  refresh(name: string, changeEvent = false, announced?: string): void {
    const owner = this.partitionOwner.get(name);
    if (owner !== undefined) return this.refresh(owner.name, false, announced);
    const uevent = this.sysfs.readUevent(name);
    if (uevent?.isPartition) {
      const parent = this.sysfs.parentOf(name);
      if (parent !== null) this.refresh(parent, false, announced);
      return;
    }
    const before = this.byName.get(name);
    if (before !== undefined) before.generation++;
    const disk = this.replace(name, uevent === null ? undefined : this.entryFor(uevent), changeEvent);
    if (disk !== undefined) {
      const partitions: Uevent[] = [];
      for (const partName of this.sysfs.partitionsOf(name)) {
        const partUevent = this.sysfs.readUevent(partName);
        if (partUevent?.isPartition) partitions.push(partUevent);
      }
      // A partition sysfs lists may still be in the middle of its BLKPG add: no /dev node
      // yet (ENOENT) or not openable yet (ENXIO). The kernel's own `add` uevent for it comes
      // once it is ready; index a new partition only then. A loop disk's partition needs
      // that `add` for this very instance (partitionAdded), recorded in its provenance: one
      // carried over from the previous instance never had one.
      this.syncPartitions(disk, partitions, disk.isLoop
        ? (p) => this.provenance.allows(p.name, this.sysfs.identityOf(p.name), disk.diskseq)
        : (p) => p.name === announced);
    }
    this.provenance.save();
    if (before !== undefined || disk !== undefined) this.wakeWaiters();
  }

  /**
   * The kernel announced partition `name` added to the disk instance `diskseq` (the
   * event's DISKSEQ, not what sysfs says now: the disk may have changed since). For a loop
   * disk's partition this is recorded as its provenance; call refresh(name) next.
   */
  partitionAdded(name: string, diskseq: bigint | null): void {
    if (diskseq === null) return; // no DISKSEQ: nothing to record, and so never admitted
    const parent = this.sysfs.parentOf(name);
    const parentUevent = parent === null ? null : this.sysfs.readUevent(parent);
    if (parentUevent === null || this.sysfs.driverOf(parentUevent.major) !== 'loop') return;
    const ino = this.sysfs.identityOf(name);
    if (ino !== null) this.provenance.recordAdd(name, ino, diskseq);
  }

  /** The kernel announced the removal of partition `name`; call refresh(name) next. */
  partitionRemoved(name: string): void {
    this.provenance.forget(name);
  }

  /** Drops a partition's parent or a disk by name; used when a removal is announced. */
  forget(name: string): void {
    const disk = this.byName.get(name);
    if (disk === undefined) return;
    this.replace(name, undefined, false, disk);
    this.wakeWaiters();
  }

  /** A new entry for a disk uevent, or undefined when it must not be indexed. */
  private entryFor(uevent: Uevent, driver = this.sysfs.driverOf(uevent.major)): DiskEntry | undefined {
    if (uevent.diskseq === null) return undefined;
    if (uevent.diskseq > this.highest) this.highest = uevent.diskseq;
    const isLoop = driver === 'loop';
    const device = this.sysfs.deviceByName(uevent.name, false);
    // An unbound loop device has a diskseq (left by its last detach) but no content: an
    // fd opened on it is not pinned and would follow the next attach.
    if (isLoop && device.attribute('loop/backing_file') === undefined) return undefined;
    return {
      name: uevent.name, devname: uevent.devname, major: uevent.major, minor: uevent.minor,
      diskseq: uevent.diskseq, driver, isLoop, partitions: new Map(),
      partscan: isLoop && device.attribute('loop/partscan') === '1',
      removable: undefined, generation: 0,
    };
  }

  /**
   * Puts `next` (or nothing) where `name` was. Identity is the diskseq: the same diskseq
   * keeps the old entry (and, for a change event, reports 'changed'); a different one is a
   * removal of the old instance and an addition of the new.
   */
  private replace(name: string, next: DiskEntry | undefined, changeEvent: boolean, old = this.byName.get(name)): DiskEntry | undefined {
    if (old !== undefined && next !== undefined && old.diskseq === next.diskseq) {
      old.partscan = next.partscan; // LOOP_SET_STATUS64 can flip it under the same diskseq
      if (changeEvent) this.emit({ kind: 'changed', disk: old });
      return old;
    }
    if (old !== undefined) {
      for (const part of old.partitions.values()) {
        this.partitionOwner.delete(part.name);
        this.emit({ kind: 'removed', disk: old, part });
      }
      this.byName.delete(name);
      if (this.byDiskseq.get(old.diskseq) === old) this.byDiskseq.delete(old.diskseq);
      this.emit({ kind: 'removed', disk: old });
    }
    if (next === undefined) return undefined;
    const stale = this.byDiskseq.get(next.diskseq);
    if (stale !== undefined) this.replace(stale.name, undefined, false, stale); // renamed under us
    this.byName.set(name, next);
    this.byDiskseq.set(next.diskseq, next);
    this.emit({ kind: 'added', disk: next });
    return next;
  }

  /** A loop partition a full scan found: its provenance, if no daemon saw it before; its inode. */
  private observeLoopPartition(uevent: Uevent): bigint | null {
    const ino = this.sysfs.identityOf(uevent.name);
    if (ino !== null && uevent.diskseq !== null) this.provenance.observe(uevent.name, ino, uevent.diskseq);
    return ino;
  }

  /** Makes a disk's partitions those in `found`, reporting additions and removals. */
  private syncPartitions(disk: DiskEntry, found: Uevent[], admitNew: (uevent: Uevent) => boolean = () => true): void {
    // Without LO_FLAGS_PARTSCAN, BLKPG partitions of a loop device survive its detach and
    // would be served from the next instance's bytes: never index them.
    const usable = !disk.isLoop || disk.partscan;
    const next = new Map<number, Uevent>();
    if (usable) for (const uevent of found) if (uevent.diskseq === disk.diskseq) next.set(uevent.partition, uevent);
    for (const [number, part] of disk.partitions) {
      const now = next.get(number);
      if (now !== undefined && now.major === part.major && now.minor === part.minor && now.name === part.name) continue;
      disk.partitions.delete(number);
      this.partitionOwner.delete(part.name);
      this.emit({ kind: 'removed', disk, part });
    }
    for (const [number, uevent] of next) {
      if (disk.partitions.has(number) || !admitNew(uevent)) continue;
      const part: PartitionEntry = {
        name: uevent.name, devname: uevent.devname, major: uevent.major, minor: uevent.minor, partition: number, disk,
      };
      disk.partitions.set(number, part);
      this.partitionOwner.set(part.name, disk);
      this.emit({ kind: 'added', disk, part });
    }
  }

  private emit(change: RegistryChange): void {
    for (const listener of this.listeners) listener(change);
  }

  /** Settles waiters whose device is now present, or can no longer appear. */
  private wakeWaiters(): void {
    if (this.waiterCount === 0) return;
    for (const set of [...this.waiters.values()]) {
      for (const waiter of [...set]) {
        const state = this.check(waiter.diskseq, waiter.partition);
        if (state !== 'wait') waiter.settle(state);
      }
    }
  }

  private check(diskseq: bigint, partition: number): null | 'gone' | 'wait' {
    const disk = this.byDiskseq.get(diskseq);
    if (disk === undefined) return this.couldAppear(diskseq) ? 'wait' : 'gone';
    if (partition === 0 || disk.partitions.has(partition)) return null;
    return 'wait'; // a present disk may still get the partition (BLKPG add)
  }
}
