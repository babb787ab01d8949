/**
 * The registry kept current by the kernel's uevents: the listener subscribes before the
 * first scan (so nothing falls between them), each event re-reads the one device it names,
 * and an overrun of the uevent socket costs one full rescan.
 */
import type { Logger } from './log.js';
import type { PartitionProvenance } from './partition-provenance.js';
import { Registry } from './registry.js';
import type { Sysfs } from './sysfs.js';
import { UeventListener } from './uevents.js';

/** Overruns of the uevent socket since start, for the status view. */
export interface OverrunStats {
  count: number;
  /** When the last one was noticed (Date.now()); undefined: never. */
  lastAt: number | undefined;
}

/** A live registry and the listener feeding it (close the listener at shutdown). */
export interface LiveRegistry {
  registry: Registry;
  uevents: UeventListener;
  overruns: Readonly<OverrunStats>;
  /** Resolves once the first scan is complete. */
  scanned: Promise<void>;
}

/** Options of a live registry. */
export interface LiveRegistryOptions {
  /** SO_RCVBUF of the uevent socket in bytes. */
  ueventBufferBytes: number;
  /** Called after each overrun, once the rescan is done (for tests and logs). */
  onOverrun?: () => void;
  /** Where loop partitions' provenance is kept (default: in memory only). */
  provenance?: PartitionProvenance;
  /**
   * Scan in the background (Registry.startInitialScan) instead of before returning: the
   * daemon then serves while it runs. `scanned` resolves when it is done.
   */
  background?: boolean;
}

/** Subscribes to uevents, scans sysfs (or starts to), and handles what arrived meanwhile. */
export function startLiveRegistry(sysfs: Sysfs, log: Logger, options: LiveRegistryOptions): LiveRegistry {
  let registry: Registry | undefined;
  const overruns: OverrunStats = { count: 0, lastAt: undefined };
  const uevents = new UeventListener({
    onEvent: (event) => {
      if (registry === undefined) return;
      if (event.action === 'remove' && !event.isPartition) return registry.forget(event.name);
      // Which disk instance a partition was added to is known only from its `add` event.
      if (event.isPartition && event.action === 'add') registry.partitionAdded(event.name, event.diskseq);
      if (event.isPartition && event.action === 'remove') registry.partitionRemoved(event.name);
      // A partition that sysfs lists may still be in the middle of its BLKPG add (no /dev
      // node yet, or not openable): it is indexed only on its own `add` event.
      registry.refresh(event.name, event.action === 'change', event.action === 'add' && event.isPartition ? event.name : undefined);
    },
    onOverrun: () => {
      overruns.count++;
      overruns.lastAt = Date.now();
      registry?.scan();
      options.onOverrun?.();
    },
  }, log, options.ueventBufferBytes);
  registry = new Registry(sysfs, log, () => uevents.drain(), options.provenance);
  if (options.background) return { registry, uevents, overruns, scanned: registry.startInitialScan() };
  registry.scan();
  uevents.drain();
  return { registry, uevents, overruns, scanned: Promise.resolve() };
}
