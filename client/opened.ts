/**
 * Opened: a delivered device fd and its description, owned by the caller; and the
 * Symbol.dispose / Symbol.asyncDispose methods of the library's closable objects.
 */
import { close as closeCallback, closeSync } from 'node:fs';
import type { Device } from './device.js';

/**
 * Gives `prototype` [Symbol.dispose] (close()) and [Symbol.asyncDispose] (`closeAsync`,
 * default close()) where the runtime has those symbols: Node 20 defines both, but its V8
 * has no `using` syntax (TypeScript compiles `using` and `await using` for it). Installed
 * at run time instead of as computed class members, so that a runtime without the symbols
 * gets no method keyed "undefined".
 */
export function installDisposers<T extends { close(): void }>(prototype: T, closeAsync?: (this: T) => Promise<void>): void {
  const symbols = Symbol as { dispose?: symbol; asyncDispose?: symbol };
  if (typeof symbols.dispose === 'symbol') {
    Object.defineProperty(prototype, symbols.dispose, {
      value: function dispose(this: T): void {
        this.close();
      },
      writable: true, configurable: true,
    });
  }
  if (typeof symbols.asyncDispose === 'symbol') {
    Object.defineProperty(prototype, symbols.asyncDispose, {
      value: closeAsync ?? async function asyncDispose(this: T): Promise<void> {
        this.close();
      },
      writable: true, configurable: true,
    });
  }
}

/**
 * A device fd delivered by Client.open() — already re-checked with BLKGETDISKSEQ in this
 * process — and the device it is bound to. The fd is the caller's: close it with close()
 * (idempotent), by disposal (`using` / `await using`), or take it over and close it
 * yourself — but not both ways: once closed, the number can belong to another fd.
 */
export class Opened implements Disposable, AsyncDisposable {
  /** A CLOEXEC fd bound to the requested disk instance. */
  readonly fd: number;
  /** The device as the daemon described it and this process verified it. */
  readonly device: Device;
  private closed = false;

  /** Takes ownership of `fd`. Client.open() makes these. */
  constructor(fd: number, device: Device) {
    this.fd = fd;
    this.device = device;
  }

  /** True once close() (or a disposal) has closed the fd. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Closes the fd; idempotent. Throws what close(2) reports (the fd is released anyway). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }

  /**
   * Closes the fd on libuv's thread pool, off the event loop (the last close of a block
   * device can flush it, or detach an autoclear loop device); idempotent. What
   * `await using` calls.
   */
  closeAsync(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    return new Promise((resolve, reject) => closeCallback(this.fd, (error) => (error ? reject(error) : resolve())));
  }

  /** Same as close(); defined where the runtime has Symbol.dispose. */
  declare [Symbol.dispose]: () => void;
  /** Same as closeAsync(); defined where the runtime has Symbol.asyncDispose. */
  declare [Symbol.asyncDispose]: () => Promise<void>;
}

installDisposers(Opened.prototype, Opened.prototype.closeAsync);
