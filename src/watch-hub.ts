/**
 * Fan-out of registry changes to watching connections. Each change is described once
 * (its sysfs reads are shared by all watchers) and sent to every watcher with its own
 * request id. A watcher that stops reading is dropped by its connection's output bounds,
 * like any other client that does not read. How many may watch is the caller's bound
 * (src/quotas.ts); the snapshot each starts with is described in fair turns.
 */
import type Long from 'long';
import { describeDevice, describeInTurns, listDevices } from './device-info.js';
import type { FairTurns } from './fair-turns.js';
import { encodeEvent } from './protocol.js';
import type { RegistryChange, Registry } from './registry.js';
import { EventKind, type DeviceInfo } from '../proto/contract.js';

/** Sends one packet to a watcher; returns false when its connection is closed. */
export type WatchSink = (packet: Buffer) => boolean;

const KIND: Record<RegistryChange['kind'], EventKind> = {
  added: EventKind.EVENT_KIND_ADDED,
  removed: EventKind.EVENT_KIND_REMOVED,
  changed: EventKind.EVENT_KIND_CHANGED,
};

/** Live events held back per watcher while its snapshot is being sent. */
const MAX_HELD_EVENTS = 4096;

interface Watcher {
  id: Long;
  /** Live events that arrived during the snapshot; null once the watcher is live. */
  held: Buffer[] | null;
  sink: WatchSink;
  /** Ends the watcher's connection: it cannot keep up. */
  drop: () => void;
}

export class WatchHub {
  private readonly watchers = new Set<Watcher>();

  constructor(private readonly registry: Registry, private readonly turns: FairTurns) {
    registry.subscribe((change) => this.publish(change));
  }

  /** Watchers now. */
  get count(): number {
    return this.watchers.size;
  }

  /**
   * Starts a watch: an ADDED event for every current device (partitions too), one SYNCED,
   * then live events — all with `id`. Live events are subscribed to before the snapshot
   * is taken and held back until SYNCED has been sent, so none falls between them.
   * `drop` closes the watcher's connection if it falls too far behind; `signal` (its
   * connection closing) ends the snapshot early. Resolves to the function that ends the
   * watch.
   */
  async start(id: Long, sink: WatchSink, drop: () => void, signal?: AbortSignal): Promise<() => void> {
    const watcher: Watcher = { id, held: [], sink, drop };
    this.watchers.add(watcher);
    const stop = () => {
      this.watchers.delete(watcher);
    };
    const devices = listDevices(this.registry.disks(), true);
    const complete = await describeInTurns(this.turns, this.registry.sysfs, devices,
      (device) => this.watchers.has(watcher) && sink(encodeEvent(id, EventKind.EVENT_KIND_ADDED, device)), signal);
    if (!complete) {
      stop();
      return stop;
    }
    const held = watcher.held ?? [];
    watcher.held = null;
    if (sink(encodeEvent(id, EventKind.EVENT_KIND_SYNCED))) {
      for (const packet of held) if (!sink(packet)) break;
    }
    return stop;
  }

  private publish(change: RegistryChange): void {
    if (this.watchers.size === 0) return;
    const device = change.kind === 'removed' ? removedSnapshot(change) : describeDevice(this.registry.sysfs, change.disk, change.part);
    for (const watcher of [...this.watchers]) {
      const packet = encodeEvent(watcher.id, KIND[change.kind], device);
      if (watcher.held !== null) {
        // A watcher whose snapshot takes longer than this many changes cannot keep up.
        if (watcher.held.push(packet) > MAX_HELD_EVENTS) {
          this.watchers.delete(watcher);
          watcher.drop();
        }
      } else if (!watcher.sink(packet)) {
        this.watchers.delete(watcher);
      }
    }
  }
}

/** What is still known of a device that is gone: its identity, not its attributes. */
function removedSnapshot(change: RegistryChange): DeviceInfo {
  const node = change.part ?? change.disk;
  return {
    diskseq: change.disk.diskseq, partition: change.part?.partition ?? 0, name: node.name,
    major: node.major, minor: node.minor, sizeBytes: 0n, readOnly: false, removable: false,
    driver: change.disk.driver, attributes: {},
  };
}
