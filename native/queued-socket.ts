/**
 * What PacketSocket (SEQPACKET) and StreamSocket (Varlink's SOCK_STREAM) share: an output
 * queue with bounds and a stall clock, the daemon's account of the fds the peer has not
 * received (FdsInFlight, docs/design.md "Limits: fds in flight"), back-pressure on reading,
 * and the close that keeps a socket shut down, not closed, until the peer has taken or
 * dropped its fds. The subclasses write (a packet, or the rest of a message), read, and say
 * what to poll for.
 *
 * Ownership: the socket fd from construction until it is released (close(), or once the
 * peer has its fds, or destroy()); an fd queued with its output until it is sent, or given
 * to the item's `dispose` when the queue is discarded.
 */
import { FdsInFlight, type UnreceivedFdAccount } from './fds-in-flight.js';
import { closeOffLoop, native, type Poller } from './index.js';

/** One receive buffer per size, for every socket of the process (see receiveBuffer). */
const receiveBuffers = new Map<number, Buffer>();

/**
 * The buffer a socket reads into, shared by every socket that reads at most `size` bytes at
 * a time: what a read delivers is handed to its callback and consumed there (decoded, or
 * copied by the Varlink framer) before the next read of any socket can happen on this
 * thread. Per socket it cost 4 KiB (64 KiB on Varlink) of malloc for each connection,
 * which 1,024 connections left behind as resident memory after they closed.
 */
export function receiveBuffer(size: number): Buffer {
  let buffer = receiveBuffers.get(size);
  if (buffer === undefined) {
    buffer = Buffer.allocUnsafeSlow(size);
    receiveBuffers.set(size, buffer);
  }
  return buffer;
}

/** Why a socket closed. */
export type CloseReason =
  | { kind: 'local' }
  | { kind: 'peer-closed' }
  | { kind: 'output-overflow' }
  | { kind: 'output-stalled' }
  | { kind: 'error'; error: Error };

/** The output bounds both kinds of socket have (the count of queued items is passed apart). */
export interface OutputLimits {
  /** Bytes that may wait in the output queue before the socket is closed as stuck. */
  maxQueuedBytes: number;
  /** fds that may wait in the output queue (each one is a device held open for the peer). */
  maxQueuedFds: number;
  /**
   * How long queued output (or an fd the account holds back) may wait without the peer
   * taking any of it before the socket is closed as stuck; 0: no limit.
   */
  stallTimeoutMs: number;
  /**
   * The daemon's side: where the fds this socket has sent and the peer not yet received are
   * counted, and whether one more may go. Also keeps a closed socket shut down, not closed,
   * until the peer has them all.
   */
  unreceivedFds?: UnreceivedFdAccount;
}

/** The callbacks both kinds of socket have. */
export interface OutputEvents {
  /**
   * Called once when the connection ends: no more reads or sends, every queued fd closed,
   * the socket closed (or shut down while the peer still holds fds; see onReleased).
   */
  onClose(reason: CloseReason): void;
  /** Called once the socket fd itself is closed: right after onClose, or when a shut-down socket is drained. */
  onReleased?(): void;
  /** Called when queued output has all been sent, or fds may flow again after the account refused them. */
  onDrain?(): void;
  /** The kernel refused to pass an fd (ETOOMANYREFS: too many in flight for this user); it is retried. */
  onFdRefused?(error: Error): void;
}

/** One item of output: its bytes, the fd still to send with it (-1: none), and how that fd is closed if never sent. */
export interface QueuedOutput {
  data: Buffer;
  fd: number;
  dispose: (fd: number) => void;
}

/** How an fd that is never sent is closed by default: off the loop (a last close may block). */
export const closeUnsent = (fd: number): void => void closeOffLoop(fd);

/** The shared half of PacketSocket and StreamSocket (see the module comment). */
export abstract class QueuedSocket<Item extends QueuedOutput, Limits extends OutputLimits, Events extends OutputEvents> {
  readonly fd: number;
  protected readonly poller: Poller;
  protected readonly queue: Item[] = [];
  /** The daemon's side only. */
  protected readonly inFlight: FdsInFlight | undefined;
  protected queuedBytes = 0;
  protected queuedFds = 0;
  protected reading = true;
  protected closed = false;
  private released = false;
  /** The head of the queue (or the next fd) waits for the account, not for buffer space. */
  protected heldBack = false;
  private stallTimer: NodeJS.Timeout | undefined;

  /** `maxQueued`: items that may wait in the output queue. The subclass calls updatePolling() once it is set up. */
  constructor(fd: number, protected readonly limits: Limits, private readonly maxQueued: number, protected readonly events: Events) {
    this.fd = fd;
    if (limits.unreceivedFds !== undefined) this.inFlight = new FdsInFlight(fd, limits.unreceivedFds);
    this.poller = new native.Poller(fd, (status, ready) => this.onReady(status, ready));
  }

  /** True once close() has run (for any reason). */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Whether output is waiting for the peer to read. */
  get hasQueuedOutput(): boolean {
    return this.queue.length > 0;
  }

  /** fds sent that the peer may not have received yet (an upper bound; 0 without an account). */
  get unreceivedFds(): number {
    return this.inFlight?.count ?? 0;
  }

  /**
   * Whether the account refuses one more fd now (after re-reading SIOCOUTQ). While it does,
   * the socket looks again now and then, calls onDrain once it would accept one, and runs
   * the stall clock.
   */
  fdsHeldBack(): boolean {
    if (this.closed || this.admitsFd()) return false;
    this.heldBack = true;
    this.recheckLater();
    this.updateStall(false);
    return true;
  }

  /** Re-reads SIOCOUTQ and forgets what the peer has received since (daemon's side). */
  refreshUnreceived(): void {
    this.inFlight?.refresh();
  }

  /** Stops reading (back-pressure); the kernel buffers, then the peer blocks. */
  pauseReading(): void {
    if (!this.reading || this.closed) return;
    this.reading = false;
    this.updatePolling();
  }

  /** Resumes reading after pauseReading(); what already waits is reported on the next loop turn. */
  resumeReading(): void {
    if (this.reading || this.closed) return;
    this.reading = true;
    this.updatePolling();
  }

  /**
   * Ends the connection and closes every queued fd; idempotent. The socket itself is
   * closed too, unless (daemon's side) the peer still has fds unreceived: then it is shut
   * down and closed once they are taken or dropped (onReleased).
   */
  close(reason: CloseReason = { kind: 'local' }): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.stallTimer);
    this.inFlight?.cancel();
    this.poller.close();
    for (const item of this.queue.splice(0)) {
      // The peer never got it; ours may be the last reference to a device, whose last
      // close can flush or detach a loop device: keep it off the event loop.
      if (item.fd >= 0) item.dispose(item.fd);
    }
    this.queuedBytes = 0;
    this.queuedFds = 0;
    const linger = this.inFlight?.lingerUntilReceived(() => {
      this.release();
      this.events.onReleased?.();
    }) ?? false;
    if (!linger) this.release();
    this.events.onClose(reason);
    if (!linger) this.events.onReleased?.();
  }

  /** close(), and closes the socket now even if the peer still holds fds (shutdown); idempotent. */
  destroy(): void {
    this.close();
    if (!this.released) {
      this.release();
      this.events.onReleased?.();
    }
  }

  /** Sends what the queue holds, as far as the kernel and the account let it. */
  protected abstract flushQueue(): void;
  /** The poller fired. */
  protected abstract onReady(status: number, ready: number): void;
  /** Polls for what the socket waits for now. */
  protected abstract updatePolling(): void;

  /**
   * Whether a new item may be written at once: nothing queued before it, and its fd (if
   * any) admitted by the account. Otherwise it is to be queued — held back for the account
   * when nothing else waits.
   */
  protected mayWriteNow(fd: number): boolean {
    if (this.queue.length > 0) return false;
    if (fd < 0 || this.admitsFd()) return true;
    this.heldBack = true;
    return false;
  }

  /**
   * Queues `item`, `unsent` bytes of it still to go; closes the socket (false) when that
   * exceeds a bound. The item's fd is the queue's from here on.
   */
  protected enqueue(item: Item, unsent: number): boolean {
    this.queue.push(item);
    this.queuedBytes += unsent;
    if (item.fd >= 0) this.queuedFds++;
    if (this.queue.length > this.maxQueued || this.queuedBytes > this.limits.maxQueuedBytes ||
        this.queuedFds > this.limits.maxQueuedFds) {
      this.close({ kind: 'output-overflow' });
      return false;
    }
    if (this.heldBack) this.recheckLater();
    this.updateStall(false);
    this.updatePolling();
    return true;
  }

  /** The end of a flush that did not close the socket: poll, look again, run the clock, say when drained. */
  protected flushed(progress: boolean): void {
    if (this.closed) return;
    this.updatePolling();
    if (this.heldBack) this.recheckLater();
    this.updateStall(progress);
    if (this.queue.length === 0 && !this.heldBack) this.events.onDrain?.();
  }

  /**
   * A sendmsg failed: true when it was the kernel refusing the fd for now (ETOOMANYREFS),
   * which holds the output back to be tried again; otherwise the socket is closed (the
   * peer's end gone, or an error) and false.
   */
  protected sendFailed(error: unknown, withFd: boolean): boolean {
    const code = (error as NodeJS.ErrnoException).code ?? '';
    if (code === 'ETOOMANYREFS' && withFd) {
      this.heldBack = true;
      this.events.onFdRefused?.(error as Error);
      return true;
    }
    this.close(['EPIPE', 'ECONNRESET'].includes(code) ? { kind: 'peer-closed' } : { kind: 'error', error: error as Error });
    return false;
  }

  protected admitsFd(): boolean {
    return this.inFlight?.admits() ?? true;
  }

  /** Closes the socket fd and gives back what it still had counted. */
  private release(): void {
    if (this.released) return;
    this.released = true;
    this.inFlight?.forget();
    native.close(this.fd);
  }

  /**
   * The clock of a peer that is not taking its output: it runs while output waits in the
   * queue or fds wait for the peer to receive those it has, restarts when the peer takes
   * some, and stops when nothing waits.
   */
  private updateStall(progress: boolean): void {
    if (this.queue.length === 0 && !this.heldBack) {
      clearTimeout(this.stallTimer);
      this.stallTimer = undefined;
      return;
    }
    if (this.limits.stallTimeoutMs <= 0 || (this.stallTimer !== undefined && !progress)) return;
    clearTimeout(this.stallTimer);
    this.stallTimer = setTimeout(() => this.close({ kind: 'output-stalled' }), this.limits.stallTimeoutMs);
    this.stallTimer.unref();
  }

  /** While fds are held back, only the peer's reads can change that: look again now and then. */
  private recheckLater(): void {
    if (this.closed) return;
    this.inFlight?.recheck(() => {
      if (this.closed) return false;
      if (this.queue.length > 0) {
        this.flushQueue();
        return this.heldBack && !this.closed;
      }
      if (!this.admitsFd()) return true;
      this.heldBack = false;
      this.updateStall(true);
      this.events.onDrain?.();
      // onDrain may have asked again (fdsHeldBack) and been refused: its own look-again
      // was skipped, as this one runs, so this one goes on.
      return this.heldBack && !this.closed;
    });
  }
}
