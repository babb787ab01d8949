/**
 * Idle exit (`--idle-exit SECONDS`): under socket activation the daemon need not run while
 * nobody uses it; systemd starts it again on the next connection.
 *
 * The server reports every busy/idle transition through update(): idle means no open
 * connection and no request in flight or waiting (wait_ms). When the daemon has stayed
 * idle for idleMs, onIdle runs once. From then on the server must stop accepting and serve
 * what it already has; drained() tells when that is done.
 *
 * A client that connects around the deadline is never dropped (Server.stopAccepting): the
 * server stops polling the listener and — when it bound the path itself — unlinks the path
 * first, so no new connect() can reach the socket; then it accepts whatever is already in
 * the backlog and serves it to the end, and only then closes the listener. Under socket
 * activation the path is systemd's and stays: a client that connects after the last accept
 * waits in the backlog of systemd's own copy of the socket, and systemd starts a new
 * instance for it once this one has exited. Without socket activation such a late client
 * finds no socket (ENOENT), exactly as if it had come after the exit.
 */

/** Fires onIdle once the daemon has been idle for idleMs without a break. */
export class IdleExit {
  private idle = true;
  private timer: NodeJS.Timeout | null = null;
  private fired = false;
  private closed = false;
  private drainWaiters: Array<() => void> = [];

  /**
   * Starts idle, counting at once: a daemon nobody connects to exits after idleMs.
   * onIdle runs at most once, from a timer callback; it must not throw.
   */
  constructor(private readonly idleMs: number, private readonly onIdle: () => void) {
    if (!Number.isFinite(idleMs) || idleMs <= 0) throw new RangeError(`idle period must be > 0 ms, got ${idleMs}`);
    this.arm();
  }

  /**
   * The daemon is idle now (true) or busy (false). Cheap; call it on every change of
   * connections or requests in flight. Busy stops the countdown; idle starts it afresh.
   */
  update(idle: boolean): void {
    if (idle === this.idle) return;
    this.idle = idle;
    if (!idle) {
      this.disarm();
    } else if (this.fired) {
      this.wakeDrainWaiters();
    } else {
      this.arm();
    }
  }

  /** Whether the idle period has passed and onIdle ran. */
  get expired(): boolean {
    return this.fired;
  }

  /** Resolves once the daemon is idle (at once if it is). Meant for after onIdle. */
  drained(): Promise<void> {
    if (this.idle) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Stops the countdown for good (the daemon is shutting down for another reason). */
  close(): void {
    this.closed = true;
    this.disarm();
    this.wakeDrainWaiters();
  }

  private arm(): void {
    if (this.closed || this.fired || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.idle || this.closed) return;
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
