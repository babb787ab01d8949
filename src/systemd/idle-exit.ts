/**
 * Idle exit (`--idle-exit SECONDS`): under socket activation the daemon need not run while
 * nobody uses it; systemd starts it again on the next connection.
 *
 * The server reports every busy/idle transition through update(): idle means no open
 * connection and no request in flight or waiting (wait_ms). When the daemon has stayed
 * idle for idleMs, onIdle runs. It returns whether the daemon is exiting: at the deadline
 * the server stops accepting only if no client is waiting in the listen backlog
 * (Server.stopAccepting); clients that are get served, and the countdown starts again
 * once they are gone. A client is never dropped, and never left waiting behind a daemon
 * that has decided to exit.
 */

/** Calls onIdle once the daemon has been idle for idleMs without a break. */
export class IdleExit {
  private idle = true;
  private timer: NodeJS.Timeout | null = null;
  private exiting = false;
  private closed = false;

  /**
   * Starts idle, counting at once: a daemon nobody connects to exits after idleMs.
   * onIdle runs from a timer callback and returns true when the daemon exits (then it
   * never runs again) or false to go on (the countdown restarts at the next idle spell).
   * It must not throw.
   */
  constructor(private readonly idleMs: number, private readonly onIdle: () => boolean) {
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
    if (idle) this.arm();
    else this.disarm();
  }

  /** Whether onIdle said the daemon is exiting. */
  get expired(): boolean {
    return this.exiting;
  }

  /** Stops the countdown for good (the daemon is shutting down for another reason). */
  close(): void {
    this.closed = true;
    this.disarm();
  }

  private arm(): void {
    if (this.closed || this.exiting || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.idle || this.closed) return;
      this.exiting = this.onIdle();
      // Clients found at the deadline made the daemon busy (update(false)) inside onIdle;
      // if they came and went already, count again from now.
      if (!this.exiting && this.idle) this.arm();
    }, this.idleMs);
    // Never the reason the process stays up: the listener's poller is.
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

/** Parses the `--idle-exit SECONDS` value into milliseconds; throws a usage message. */
export function parseIdleExit(value: string): number {
  if (!/^[0-9]+(\.[0-9]+)?$/.test(value) || Number(value) <= 0) {
    throw new Error(`--idle-exit takes a number of seconds > 0, got ${JSON.stringify(value)}`);
  }
  return Math.round(Number(value) * 1000);
}
