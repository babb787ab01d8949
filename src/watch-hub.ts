/**
 * Fan-out of registry changes to watching connections. Each change is described once
 * (one sysfs read per attribute, whatever the number of watchers) and sent to every
 * watcher with its own request id. A watcher that stops reading is dropped by its
 * connection's output bound, like any other client that does not read.
 */
import type Long from 'long';
import { describeAll, describeDevice } from './device-info.js';
import type { DeviceSnapshot } from './opener.js';
import { encodeEvent } from './protocol.js';
import type { RegistryChange, Registry } from './registry.js';
import { EventKind } from './wire.js';

/** Sends one packet to a watcher; returns false when its connection is closed. */
export type WatchSink = (packet: Buffer) => boolean;

const KIND: Record<RegistryChange['kind'], EventKind> = {
  added: EventKind.EVENT_KIND_ADDED,
  removed: EventKind.EVENT_KIND_REMOVED,
  changed: EventKind.EVENT_KIND_CHANGED,
};

export class WatchHub {
  private readonly watchers = new Map<WatchSink, Long>();

  constructor(private readonly registry: Registry, readonly maxWatchers: number) {
    registry.subscribe((change) => this.publish(change));
  }

  /** Watchers now. */
  get count(): number {
    return this.watchers.size;
  }

  /**
   * Starts a watch: an ADDED event for every current device (partitions too), one SYNCED,
   * then live events — all with `id`. Runs in one turn of the loop, so no change can fall
   * between the snapshot and the subscription. Returns the function that ends the watch.
   */
  start(id: Long, sink: WatchSink): () => void {
    for (const device of describeAll(this.registry.sysfs, this.registry.disks(), true)) {
      if (!sink(encodeEvent(id, EventKind.EVENT_KIND_ADDED, device))) return () => undefined;
    }
    if (!sink(encodeEvent(id, EventKind.EVENT_KIND_SYNCED))) return () => undefined;
    this.watchers.set(sink, id);
    return () => this.watchers.delete(sink);
  }

  private publish(change: RegistryChange): void {
    if (this.watchers.size === 0) return;
    const device = change.kind === 'removed' ? removedSnapshot(change) : describeDevice(this.registry.sysfs, change.disk, change.part);
    for (const [sink, id] of [...this.watchers]) {
      if (!sink(encodeEvent(id, KIND[change.kind], device))) this.watchers.delete(sink);
    }
  }
}

/** What is still known of a device that is gone: its identity, not its attributes. */
function removedSnapshot(change: RegistryChange): DeviceSnapshot {
  const node = change.part ?? change.disk;
  return {
    diskseq: change.disk.diskseq, partition: change.part?.partition ?? 0, name: node.name,
    major: node.major, minor: node.minor, sizeBytes: 0n, readOnly: false, removable: false,
    driver: change.disk.driver, attributes: {},
  };
}
