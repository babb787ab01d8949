/**
 * The daemon's side of a PacketSocket or a StreamSocket (docs/design.md, "Limits: fds in
 * flight"): the fds it sent and the peer has not received yet, charged by the kernel to the
 * daemon. Each sendmsg books its cost from SIOCOUTQ (SentPackets) — a packet, or one write
 * of a stream message, whose fd rides on the first: on a unix stream socket too every
 * sendmsg makes skbs of its own, charged until the peer has read them, and read in order.
 * An account (the daemon's per-uid ledger) says whether one more fd may go; and since a
 * peer's read raises no event on the sender's end, a timer looks again while fds are held
 * back, or while a shut-down socket waits for its peer to take them.
 */
import { native } from './index.js';
import { SentPackets } from './sent-packets.js';

/** Where one socket's unreceived fds are counted (the daemon's per-uid ledger). */
export interface UnreceivedFdAccount {
  /** Whether one more fd may be sent now, the socket having `unreceived` fds in flight. */
  mayAdd(unreceived: number): boolean;
  /** The socket's count of unreceived fds changed by `delta`. */
  changed(delta: number): void;
}

/** Delays of the look-again timer: held back, and shut down waiting for the peer. */
const RETRY_FIRST_MS = 2;
const RETRY_MAX_MS = 250;
const LINGER_MAX_MS = 1000;
/** SIOCOUTQ before and after a tracked send (native.sendTracked). */
const outq = new Int32Array(2);
const outqBytes = new Uint8Array(outq.buffer);

/** The unreceived fds of one socket, and their account (see the module comment). */
export class FdsInFlight {
  private readonly sent = new SentPackets();
  private timer: NodeJS.Timeout | undefined;
  private delayMs = RETRY_FIRST_MS;
  private checking = false;
  private forgotten = false;

  /** `socket` stays the caller's: it must call forget() before closing it. */
  constructor(private readonly socket: number, private readonly account: UnreceivedFdAccount) {}

  /** fds sent that the peer may not have received (an upper bound, exact unless it read mid-send). */
  get count(): number {
    return this.sent.fds;
  }

  /** native.send, booking the packet (and what the peer received meanwhile). Throws like it. */
  send(data: Buffer, fd: number): boolean {
    const sent = native.sendTracked(this.socket, data, fd, outqBytes);
    if (sent) this.book(() => this.sent.sent(outq[0]!, outq[1]!, fd >= 0));
    return sent;
  }

  /**
   * native.sendStream, booking what this write cost (fd counted when it carried one: then
   * it went with the first byte written). Returns the bytes written; throws like it.
   */
  sendStream(data: Buffer, offset: number, fd: number): number {
    const written = native.sendStreamTracked(this.socket, data, offset, fd, outqBytes);
    if (written > 0) this.book(() => this.sent.sent(outq[0]!, outq[1]!, fd >= 0));
    return written;
  }

  /** Re-reads SIOCOUTQ and forgets the packets the peer has received since. */
  refresh(): void {
    if (this.forgotten) return;
    let unreceived = 0;
    try {
      unreceived = native.unreceivedBytes(this.socket);
    } catch {
      // A socket that cannot say holds nothing we could account for.
    }
    this.book(() => this.sent.received(unreceived));
  }

  /** Whether the account lets one more fd go now (re-reading SIOCOUTQ if it first says no). */
  admits(): boolean {
    if (this.account.mayAdd(this.count)) return true;
    this.refresh();
    return this.account.mayAdd(this.count);
  }

  /**
   * Calls `check` after a short delay, re-reading SIOCOUTQ first; the delay grows while
   * `check` keeps asking again (returns true) and starts short again otherwise. One timer
   * at a time: a call while one is set, or from within `check`, does nothing.
   */
  recheck(check: () => boolean): void {
    if (this.timer !== undefined || this.checking || this.forgotten) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.refresh();
      let again: boolean;
      this.checking = true;
      try {
        again = check();
      } finally {
        this.checking = false;
      }
      this.delayMs = again ? Math.min(this.delayMs * 2, RETRY_MAX_MS) : RETRY_FIRST_MS;
      if (again) this.recheck(check);
    }, this.delayMs);
    this.timer.unref();
  }

  /** Calls `done` once the peer has received (or dropped) every fd, looking up to once a second. */
  whenAllReceived(done: () => void): void {
    this.cancel();
    this.delayMs = RETRY_FIRST_MS;
    const look = (): void => {
      this.timer = undefined;
      this.refresh();
      if (this.count === 0) {
        done();
        return;
      }
      this.delayMs = Math.min(this.delayMs * 2, LINGER_MAX_MS);
      this.timer = setTimeout(look, this.delayMs);
    };
    this.timer = setTimeout(look, this.delayMs);
  }

  /**
   * For a socket that is being closed: when the peer still has fds unreceived, shuts it
   * down (the peer reads what is queued, then end-of-file; it can send nothing) and calls
   * `release` once the peer has them all, and returns true; else returns false, and the
   * caller closes it now. Closing it early would free nothing — the peer's queue keeps the
   * fds as long as it keeps its end — and lose SIOCOUTQ, the only way to see them go.
   */
  lingerUntilReceived(release: () => void): boolean {
    this.refresh();
    if (this.count === 0) return false;
    try {
      native.shutdown(this.socket);
    } catch {
      // Not connected any more: SIOCOUTQ says when the kernel has let go.
    }
    this.whenAllReceived(release);
    return true;
  }

  /** Stops the timer. */
  cancel(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** The socket is about to be closed: stops the timer and gives back every fd still counted. */
  forget(): void {
    this.cancel();
    this.book(() => this.sent.received(0));
    this.forgotten = true;
  }

  /** Runs a change of SentPackets and tells the account how the count moved. */
  private book(change: () => void): void {
    const before = this.sent.fds;
    change();
    const delta = this.sent.fds - before;
    if (delta !== 0) this.account.changed(delta);
  }
}
