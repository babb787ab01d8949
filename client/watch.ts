/**
 * DeviceWatch: the `Watch` stream as an async iterator.
 *
 * The protocol has no way to cancel a watch except closing the connection, so every watch
 * runs on a connection of its own; ending the iteration (break, return, throw out of a
 * `for await`) closes that connection and with it the watch. Events the consumer has not
 * taken yet are buffered up to a bound; past it the connection stops reading, and a
 * daemon that drops slow watchers will then end the stream with a ConnectionError.
 */
import { EventKind, type WireResponse } from '../proto/contract.js';
import { closeFds, Connection, type ResponseHandler } from './connection.js';
import { deviceFromWire, deviceToJSON, type Device, type DeviceJSON } from './device.js';
import { installDisposers } from './opened.js';
import { AbortError, errorFromWire, protocolError } from './errors.js';

/** What happened to a device. 'synced': the initial snapshot of 'added' events is complete. */
export type WatchEventKind = 'added' | 'removed' | 'changed' | 'synced';

/** One event of the watch stream; `device` is absent on 'synced'. JSON.stringify gives WatchEventJSON. */
export interface WatchEvent {
  kind: WatchEventKind;
  device?: Device;
}

/** The JSON-safe form of a WatchEvent. */
export interface WatchEventJSON {
  kind: WatchEventKind;
  device?: DeviceJSON;
}

/** Options of Client.watch(). */
export interface WatchOptions {
  /** Aborting ends the stream: the pending (or next) next() rejects with an AbortError. */
  signal?: AbortSignal;
}

/** The JSON-safe form of a WatchEvent (for `diskseq-open --watch`). */
export function watchEventToJSON(event: WatchEvent): WatchEventJSON {
  return event.device === undefined ? { kind: event.kind } : { kind: event.kind, device: deviceToJSON(event.device) };
}

const KINDS: ReadonlyMap<number, WatchEventKind> = new Map([
  [EventKind.EVENT_KIND_ADDED, 'added'],
  [EventKind.EVENT_KIND_REMOVED, 'removed'],
  [EventKind.EVENT_KIND_CHANGED, 'changed'],
  [EventKind.EVENT_KIND_SYNCED, 'synced'],
]);

/** Buffered events at which reading pauses, and at which it resumes. */
const HIGH_WATER = 1024;
const LOW_WATER = 256;

interface Waiter {
  resolve(result: IteratorResult<WatchEvent>): void;
  reject(error: unknown): void;
}

/** A running watch; iterate it with `for await`; close(), or dispose of it, to end it. */
export class DeviceWatch implements AsyncIterableIterator<WatchEvent>, Disposable, AsyncDisposable {
  private readonly queue: WatchEvent[] = [];
  private readonly waiters: Waiter[] = [];
  private connection: Connection | null = null;
  /** The error to throw once the buffered events are consumed. */
  private failure: Error | null = null;
  private finished = false;
  private readonly onAbort = (): void => this.fail(new AbortError(this.signal?.reason));

  /**
   * Connects and sends the WatchRequest. Never throws: a connection failure is thrown by
   * the first next(). `onEnd` runs once, when the watch ends for any reason.
   */
  constructor(socketPath: string, private readonly onEnd: (watch: DeviceWatch) => void, private readonly signal?: AbortSignal) {
    if (signal?.aborted) {
      this.fail(new AbortError(signal.reason));
      return;
    }
    try {
      this.connection = Connection.open(socketPath);
      this.connection.send({ watch: {} }, this.handler());
    } catch (error) {
      this.fail(error as Error);
      return;
    }
    signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** The next event; rejects with the stream's error (DiskseqError, ConnectionError ...). */
  next(): Promise<IteratorResult<WatchEvent>> {
    const event = this.queue.shift();
    if (event !== undefined) {
      if (this.queue.length === LOW_WATER) this.connection?.resumeReading();
      return Promise.resolve({ value: event, done: false });
    }
    if (this.failure !== null) {
      const failure = this.failure;
      this.failure = null;
      return Promise.reject(failure);
    }
    if (this.finished) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Ends the watch and closes its connection (what `break` in a `for await` calls). */
  return(): Promise<IteratorResult<WatchEvent>> {
    this.queue.length = 0;
    this.failure = null;
    this.end();
    for (const waiter of this.waiters.splice(0)) waiter.resolve({ value: undefined, done: true });
    return Promise.resolve({ value: undefined, done: true });
  }

  /** Ends the watch; idempotent (same as return()). */
  close(): void {
    void this.return();
  }

  /** Same as close(); defined where the runtime has Symbol.dispose. */
  declare [Symbol.dispose]: () => void;
  /** Same as close(); defined where the runtime has Symbol.asyncDispose. */
  declare [Symbol.asyncDispose]: () => Promise<void>;

  private handler(): ResponseHandler {
    return {
      onResponse: (response, fds) => {
        if (fds.length > 0) {
          closeFds(fds);
          this.fail(protocolError('an fd arrived with a watch response'));
          return true;
        }
        this.onResponse(response);
        return this.finished;
      },
      onFailure: (error) => this.fail(error),
    };
  }

  private onResponse(response: WireResponse): void {
    if (response.body === 'error') {
      this.fail(errorFromWire(response.error!));
      return;
    }
    if (response.body !== 'event') {
      this.fail(protocolError(`expected a DeviceEvent, got ${response.body ?? 'an empty response'}`));
      return;
    }
    const kind = KINDS.get(response.event!.kind ?? 0);
    if (kind === undefined) {
      this.fail(protocolError(`unknown event kind ${response.event!.kind}`));
      return;
    }
    const wireDevice = response.event!.device;
    const event: WatchEvent = wireDevice ? { kind, device: deviceFromWire(wireDevice) } : { kind };
    const waiter = this.waiters.shift();
    if (waiter !== undefined) {
      waiter.resolve({ value: event, done: false });
      return;
    }
    this.queue.push(event);
    if (this.queue.length === HIGH_WATER) this.connection?.pauseReading();
  }

  /** Ends the stream with an error, delivered after the events already buffered. */
  private fail(error: Error): void {
    if (this.finished) return;
    this.end();
    const waiter = this.waiters.shift();
    if (waiter !== undefined) waiter.reject(error);
    else this.failure = error;
    for (const other of this.waiters.splice(0)) other.resolve({ value: undefined, done: true });
  }

  private end(): void {
    if (this.finished) return;
    this.finished = true;
    this.signal?.removeEventListener('abort', this.onAbort);
    this.connection?.close();
    this.onEnd(this);
  }
}

installDisposers(DeviceWatch.prototype);
