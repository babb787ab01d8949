/**
 * Idle exit (`--idle-exit SECONDS`): under socket activation the daemon need not run while
 * nobody uses it; systemd starts it again on the next connection.
 *
 * The server takes a hold for every open connection and every request still in flight or
 * waiting (wait_ms), and releases it when that ends. When nothing has been held for
 * idleMs, onIdle runs once. From then on the server must stop accepting and serve what it
 * already has; drained() tells when that is done.
 *
 * What happens to a client that connects around the deadline (the server's part): an
 * accepted connection is never dropped. At the deadline the server stops polling the
 * listener, and — when it bound the path itself — unlinks the path first so no new connect() can reach the socket, then accepts whatever
 * is already queued in the backlog and serves it to the end, and only then closes the
 * listener and exits. Under socket activation the path is systemd's and stays: a client
 * that connects after the last accept waits in the backlog of systemd's own copy of the
 * socket, and systemd starts a new instance for it once this one has exited.
 */

/** Counts holds and fires onIdle after idleMs without any. */
export class IdleExit {
  private holds = 0;
  private timer: NodeJS.Timeout | null = null;
  private fired = false;
  private closed = false;
  private drainWaiters: Array<() => void> = [];

  /**
   * Starts counting at once: a daemon that nobody connects to exits after idleMs.
   * onIdle runs at most once, from a timer callback; it must not throw.
   */
  constructor(private readonly idleMs: number, private readonly onIdle: () => void) {
    if (!Number.isFinite(idleMs) || idleMs <= 0) throw new RangeError(`idle period must be > 0 ms, got ${idleMs}`);
    this.arm();
  }

  /**
   * Marks one connection or request busy until the returned release is called. Release
   * is idempotent, so every path that ends the connection or request may call it.
   */
  hold(): () => void {
    this.holds++;
    this.disarm();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holds--;
      if (this.holds === 0) {
        if (this.fired) this.wakeDrainWaiters();
        else this.arm();
      }
    };
  }

  /** Current number of holds (connections + requests in flight or waiting). */
  get busy(): number {
    return this.holds;
  }

  /** Whether the idle period has passed and onIdle ran. */
  get expired(): boolean {
    return this.fired;
  }

  /** Resolves once nothing is held (at once if nothing is). Meant for after onIdle. */
  drained(): Promise<void> {
    if (this.holds === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Stops the timer for good (the daemon is shutting down for another reason). */
  close(): void {
    this.closed = true;
    this.disarm();
    this.wakeDrainWaiters();
  }

  private arm(): void {
    if (this.closed || this.fired || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.holds > 0 || this.closed) return;
      this.fired = true;
      this.onIdle();
    }, this.idleMs);
    // Never the reason the process stays up: the listener's poller is.
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private wakeDrainWaiters(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const wake of waiters) wake();
  }
}

/** Parses the `--idle-exit SECONDS` value into milliseconds; throws a usage message. */
export function parseIdleExit(value: string): number {
  if (!/^[0-9]+(\.[0-9]+)?$/.test(value) || Number(value) <= 0) {
    throw new Error(`--idle-exit takes a number of seconds > 0, got ${JSON.stringify(value)}`);
  }
  return Math.round(Number(value) * 1000);
}
