/**
 * One connected SOCK_STREAM socket, for the Varlink front-end (docs/design.md, "Second
 * front-end: Varlink"): non-blocking reads driven by uv_poll that hand over whatever bytes
 * arrived (the caller frames them), and whole messages written in order, each with at most
 * one fd. A stream has no packet boundaries, so two things differ from PacketSocket:
 *
 * - partial writes: a message the kernel took only in part stays at the head of the queue
 *   with its offset and is continued when the socket is writable;
 * - an fd rides on the first byte of its message: the sendmsg that writes that byte carries
 *   the SCM_RIGHTS (a message with an fd is never started behind another one in the same
 *   sendmsg), and the continuation of a partly sent message carries none.
 *
 * The daemon's side counts the fds the peer has not received, as PacketSocket does
 * (docs/design.md, "Limits: fds in flight"): every write is booked from SIOCOUTQ
 * (FdsInFlight), a message whose fd the account refuses waits at the head of the queue,
 * and a closed socket whose peer still has fds unreceived is shut down, not closed, until
 * the peer takes or drops them (onReleased).
 *
 * Ownership, as for PacketSocket: the socket fd from construction until it is released
 * (close(), or once the peer has its fds, or destroy()); an fd passed to send() from that
 * call on — closed as soon as the kernel took the first byte with it, or when the queue is
 * discarded.
 */
import { FdsInFlight, type UnreceivedFdAccount } from './fds-in-flight.js';
import { closeOffLoop, native, POLL_DISCONNECT, POLL_READABLE, POLL_WRITABLE, type Poller } from './index.js';
import type { CloseReason } from './packet-socket.js';

export type { CloseReason };

/** Sizes and bounds of one StreamSocket. */
export interface StreamSocketLimits {
  /** Bytes read per recvmsg. */
  receiveSize: number;
  /** Messages, bytes and fds that may wait unsent before the socket is closed as stuck. */
  maxQueuedMessages: number;
  maxQueuedBytes: number;
  maxQueuedFds: number;
  /**
   * How long queued output (or an fd the account holds back) may wait without the peer
   * taking any of it; 0: no limit.
   */
  stallTimeoutMs: number;
  /**
   * The daemon's side: where the fds this socket has sent and the peer not yet received are
   * counted, and whether one more may go; also keeps a closed socket shut down until the
   * peer has them all (see the module comment).
   */
  unreceivedFds?: UnreceivedFdAccount;
}

/** Bytes (and fds) that arrived in one read. `data` is only valid during the callback. */
export interface StreamChunk {
  data: Buffer;
  /** fds received with these bytes; the callee owns them and must close them. */
  fds: number[];
  /** MSG_CTRUNC: more fds were sent than fit, the kernel discarded the rest. */
  controlTruncated: boolean;
}

/** Callbacks of one StreamSocket. */
export interface StreamSocketEvents {
  onData(chunk: StreamChunk): void;
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

interface QueuedMessage {
  data: Buffer;
  /** Bytes of data already sent. */
  offset: number;
  /** The fd still to send with the first byte, or -1. */
  fd: number;
  /** How that fd is closed if it is never sent. */
  dispose: (fd: number) => void;
}

/** How an fd that is never sent is closed by default: off the loop (a last close may block). */
const closeUnsent = (fd: number): void => void closeOffLoop(fd);

/** Reads per readiness callback before yielding to the loop, for fairness. */
const READ_BURST = 16;

export class StreamSocket {
  readonly fd: number;
  private readonly poller: Poller;
  private readonly receiveBuffer: Buffer;
  private readonly queue: QueuedMessage[] = [];
  /** The daemon's side only. */
  private readonly inFlight: FdsInFlight | undefined;
  private queuedBytes = 0;
  private queuedFds = 0;
  private reading = true;
  private closed = false;
  private released = false;
  /** The head of the queue (or the next fd) waits for the account, not for buffer space. */
  private heldBack = false;
  private stallTimer: NodeJS.Timeout | undefined;

  constructor(fd: number, private readonly limits: StreamSocketLimits, private readonly events: StreamSocketEvents) {
    this.fd = fd;
    this.receiveBuffer = Buffer.allocUnsafe(limits.receiveSize);
    if (limits.unreceivedFds !== undefined) this.inFlight = new FdsInFlight(fd, limits.unreceivedFds);
    this.poller = new native.Poller(fd, (status, ready) => this.onReady(status, ready));
    this.updatePolling();
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

  /** Re-reads SIOCOUTQ and forgets the writes the peer has read since (daemon's side). */
  refreshUnreceived(): void {
    this.inFlight?.refresh();
  }

  /**
   * Sends one whole message, with `fd` on its first byte when fd >= 0 (ownership of fd
   * passes here). What the kernel does not take now, or what waits for the account, is
   * queued; the socket closes when a queue bound is exceeded or a send fails. Returns false
   * when the socket is (now) closed. An fd that is never sent goes to `dispose` (the daemon
   * charges its close to its disk).
   */
  send(data: Buffer, fd = -1, dispose: (fd: number) => void = closeUnsent): boolean {
    if (this.closed || data.length === 0) {
      if (fd >= 0) dispose(fd);
      return !this.closed;
    }
    const message: QueuedMessage = { data, offset: 0, fd, dispose };
    if (this.queue.length === 0 && (fd < 0 || this.admitsFd())) {
      if (!this.write(message)) return false;
      if (message.offset === data.length) return true;
    } else if (this.queue.length === 0) {
      this.heldBack = true;
    }
    this.queue.push(message);
    this.queuedBytes += data.length - message.offset;
    if (message.fd >= 0) this.queuedFds++;
    if (this.queue.length > this.limits.maxQueuedMessages || this.queuedBytes > this.limits.maxQueuedBytes ||
        this.queuedFds > this.limits.maxQueuedFds) {
      this.close({ kind: 'output-overflow' });
      return false;
    }
    if (this.heldBack) this.recheckLater();
    this.updateStall(false);
    this.updatePolling();
    return true;
  }

  /** Stops reading (back-pressure); the kernel buffers, then the peer blocks. */
  pauseReading(): void {
    if (!this.reading || this.closed) return;
    this.reading = false;
    this.updatePolling();
  }

  /** Resumes reading after pauseReading(). */
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
    for (const message of this.queue.splice(0)) {
      // Never delivered; ours may be the last reference to a device: off the event loop.
      if (message.fd >= 0) message.dispose(message.fd);
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

  /** Closes the socket fd and gives back what it still had counted. */
  private release(): void {
    if (this.released) return;
    this.released = true;
    this.inFlight?.forget();
    native.close(this.fd);
  }

  private admitsFd(): boolean {
    return this.inFlight?.admits() ?? true;
  }

  /**
   * One sendmsg of the rest of `message`, its fd attached when nothing of it has gone yet.
   * Advances message.offset; once any byte went, the fd went with it and our copy is
   * closed (message.fd = -1). ETOOMANYREFS (the kernel refuses the fd for now) sends
   * nothing and holds the message back. Returns false when the socket failed (and is now
   * closed); message.fd is then still the caller's to dispose of — unless it is queued, in
   * which case close() already did.
   */
  private write(message: QueuedMessage): boolean {
    const fd = message.offset === 0 ? message.fd : -1;
    let sent: number;
    try {
      sent = this.inFlight === undefined ? native.sendStream(this.fd, message.data, message.offset, fd)
        : this.inFlight.sendStream(message.data, message.offset, fd);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? '';
      if (code === 'ETOOMANYREFS' && fd >= 0) {
        this.heldBack = true;
        this.events.onFdRefused?.(error as Error);
        return true;
      }
      const queued = this.queue[0] === message;
      this.close(['EPIPE', 'ECONNRESET'].includes(code) ? { kind: 'peer-closed' } : { kind: 'error', error: error as Error });
      if (!queued && message.fd >= 0) message.dispose(message.fd);
      return false;
    }
    if (sent > 0 && message.fd >= 0) {
      native.close(message.fd); // the peer holds its own copy now
      message.fd = -1;
    }
    message.offset += sent;
    return true;
  }

  private flushQueue(): void {
    let progress = false;
    this.heldBack = false;
    while (this.queue.length > 0 && !this.closed) {
      const head = this.queue[0]!;
      const hadFd = head.fd >= 0;
      if (hadFd && !this.admitsFd()) {
        this.heldBack = true;
        break;
      }
      const before = head.offset;
      if (!this.write(head)) return;
      this.queuedBytes -= head.offset - before;
      if (hadFd && head.fd < 0) this.queuedFds--;
      if (head.offset > before) progress = true;
      if (head.offset < head.data.length) break; // the kernel is full (or refused the fd): wait
      this.queue.shift();
    }
    if (this.closed) return;
    this.updatePolling();
    if (this.heldBack) this.recheckLater();
    this.updateStall(progress);
    if (this.queue.length === 0 && !this.heldBack) this.events.onDrain?.();
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

  private onReady(status: number, ready: number): void {
    if (this.closed) return;
    if (status < 0) {
      this.close({ kind: 'error', error: new Error(`poll failed with libuv status ${status}`) });
      return;
    }
    if (ready & POLL_WRITABLE) this.flushQueue();
    if (!this.closed && this.reading && ready & (POLL_READABLE | POLL_DISCONNECT)) this.readBurst();
  }

  private readBurst(): void {
    for (let i = 0; i < READ_BURST && this.reading && !this.closed; i++) {
      let received;
      try {
        received = native.recv(this.fd, this.receiveBuffer);
      } catch (error) {
        this.close({ kind: 'error', error: error as Error });
        return;
      }
      if (received === null) return;
      if (received.bytes === 0 && received.fds.length === 0) {
        this.close({ kind: 'peer-closed' });
        return;
      }
      this.events.onData({
        data: this.receiveBuffer.subarray(0, received.bytes),
        fds: received.fds,
        controlTruncated: received.controlTruncated,
      });
    }
  }

  /**
   * Reading: readable and peer shut-down. Writable while output waits for buffer space
   * (not while it waits for the account: the socket is writable then, and polling for it
   * would spin). No POLLPRI trick as on SEQPACKET: on a stream it also means out-of-band
   * data, which a client could send to make the daemon spin; a peer that hangs up while
   * not read is noticed by the account's timer (SIOCOUTQ falls to 0) or the stall clock.
   */
  private updatePolling(): void {
    if (this.closed) return;
    const events = (this.reading ? POLL_READABLE | POLL_DISCONNECT : 0) | (this.queue.length > 0 && !this.heldBack ? POLL_WRITABLE : 0);
    if (events === 0) this.poller.stop();
    else this.poller.start(events);
  }
}
