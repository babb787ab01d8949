/**
 * The registry kept current by the kernel's uevents: the listener subscribes before the
 * first scan (so nothing falls between them), each event re-reads the one device it names,
 * and an overrun of the uevent socket costs one full rescan.
 */
import type { Logger } from './log.js';
import { Registry } from './registry.js';
import type { Sysfs } from './sysfs.js';
import { UeventListener } from './uevents.js';

/** A live registry and the listener feeding it (close the listener at shutdown). */
export interface LiveRegistry {
  registry: Registry;
  uevents: UeventListener;
  /** Resolves once the first scan is complete. */
  scanned: Promise<void>;
}

/** Options of a live registry. */
export interface LiveRegistryOptions {
  /** SO_RCVBUF of the uevent socket in bytes. */
  ueventBufferBytes: number;
  /** Called after each overrun, once the rescan is done (for tests and logs). */
  onOverrun?: () => void;
  /**
   * Scan in the background (Registry.startInitialScan) instead of before returning: the
   * daemon then serves while it runs. `scanned` resolves when it is done.
   */
  background?: boolean;
}

/** Subscribes to uevents, scans sysfs (or starts to), and handles what arrived meanwhile. */
export function startLiveRegistry(sysfs: Sysfs, log: Logger, options: LiveRegistryOptions): LiveRegistry {
  let registry: Registry | undefined;
  const uevents = new UeventListener({
    onEvent: (event) => {
      if (event.action === 'remove' && !event.isPartition) registry?.forget(event.name);
      // A partition that sysfs lists may still be in the middle of its BLKPG add (no /dev
      // node yet, or not openable): it is indexed only on its own `add` event.
      else registry?.refresh(event.name, event.action === 'change', event.action === 'add' && event.isPartition ? event.name : undefined);
    },
    onOverrun: () => {
      registry?.scan();
      options.onOverrun?.();
    },
  }, log, options.ueventBufferBytes);
  registry = new Registry(sysfs, log, () => uevents.drain());
  if (options.background) return { registry, uevents, scanned: registry.startInitialScan() };
  registry.scan();
  uevents.drain();
  return { registry, uevents, scanned: Promise.resolve() };
}
