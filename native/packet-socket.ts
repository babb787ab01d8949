/**
 * One connected SOCK_SEQPACKET socket: non-blocking packet reads driven by uv_poll, and
 * packet writes with at most one fd each, queued (bounded) while the peer is not reading.
 * Shared by the daemon's connections and the client library, like seatd's
 * common/connection.c. The daemon's side adds three things (docs/design.md, "Limits"): it
 * counts the fds the peer has not received yet and sends no more while its account says
 * so; it closes at once when the peer hangs up, even while it is not reading; and it tells
 * a zero-length packet from end-of-file.
 *
 * Ownership: the PacketSocket owns its socket fd from construction and closes it exactly
 * once. An fd passed to send() is owned by the PacketSocket from that call on: it is
 * closed after it has been sent, or disposed of (send's `dispose`, off the loop by
 * default) when it never is. On the daemon's side a
 * closed socket whose peer still has fds unreceived is shut down, not closed: those fds
 * are charged to the daemon until the peer takes or drops them, which only SIOCOUTQ on
 * this end can tell. The fd is closed once SIOCOUTQ reads 0 (onReleased), or by destroy().
 */
import { FdsInFlight, type UnreceivedFdAccount } from './fds-in-flight.js';
import { closeOffLoop, native, POLL_DISCONNECT, POLL_PRIORITIZED, POLL_READABLE, POLL_WRITABLE, type Poller } from './index.js';

export type { UnreceivedFdAccount } from './fds-in-flight.js';

/** Sizes and bounds of one PacketSocket. */
export interface PacketSocketLimits {
  /** Receive buffer size: a longer packet is reported as truncated. */
  receiveSize: number;
  /** Packets that may wait in the output queue before the socket is closed as stuck. */
  maxQueuedPackets: number;
  /** Bytes that may wait in the output queue before the socket is closed as stuck. */
  maxQueuedBytes: number;
  /** fds that may wait in the output queue (each one is a device held open for the peer). */
  maxQueuedFds: number;
  /**
   * How long queued output may wait without any of it being taken by the peer before the
   * socket is closed as stuck; 0: no limit.
   */
  stallTimeoutMs: number;
  /**
   * The daemon's side: where the fds this socket has sent and the peer not yet received are
   * counted, and whether one more may go. Also keeps a closed socket shut down, not closed,
   * until the peer has them all (see the module comment).
   */
  unreceivedFds?: UnreceivedFdAccount;
  /**
   * The daemon's side: when the peer hangs up, close at once, even while not reading, and
   * without reading what it sent before (nobody is left to answer). A client must not: the
   * responses still queued for it would be lost.
   */
  closeOnHangUp?: boolean;
  /** The daemon's side: SO_PASSCRED, so a zero-length packet is delivered, not taken for end-of-file. */
  passCredentials?: boolean;
  /** Raise the send buffer to at least this many bytes (as the kernel counts them). */
  minSendBuffer?: number;
}

/** What arrived in one packet. `data` is only valid during the callback. */
export interface IncomingPacket {
  /** Empty only for a zero-length packet (delivered only with passCredentials). */
  data: Buffer;
  /** fds received with the packet; the callee owns them and must close them. */
  fds: number[];
  truncated: boolean;
  controlTruncated: boolean;
}

/** Why a PacketSocket closed. */
export type CloseReason =
  | { kind: 'local' }
  | { kind: 'peer-closed' }
  | { kind: 'output-overflow' }
  | { kind: 'output-stalled' }
  | { kind: 'error'; error: Error };

/** Callbacks of one PacketSocket. */
export interface PacketSocketEvents {
  onPacket(packet: IncomingPacket): void;
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

interface QueuedPacket {
  data: Buffer;
  fd: number;
  dispose: (fd: number) => void;
}

/** How an fd that is never sent is closed by default: off the loop (a last close may block). */
const closeUnsent = (fd: number): void => void closeOffLoop(fd);

/** Packets read per readiness callback before yielding to the loop, for fairness. */
const READ_BURST = 32;

export class PacketSocket {
  readonly fd: number;
  private readonly poller: Poller;
  private readonly receiveBuffer: Buffer;
  private readonly queue: QueuedPacket[] = [];
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

  constructor(fd: number, private readonly limits: PacketSocketLimits, private readonly events: PacketSocketEvents) {
    this.fd = fd;
    this.receiveBuffer = Buffer.allocUnsafe(limits.receiveSize);
    if (limits.unreceivedFds !== undefined) this.inFlight = new FdsInFlight(fd, limits.unreceivedFds);
    if (limits.passCredentials) native.setPassCredentials(fd);
    if (limits.minSendBuffer !== undefined) native.ensureSendBuffer(fd, limits.minSendBuffer);
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
   * the socket looks again now and then and calls onDrain once it would accept one.
   */
  fdsHeldBack(): boolean {
    if (this.closed || this.admitsFd()) return false;
    this.heldBack = true;
    this.recheckLater();
    this.updateStall(false);
    return true;
  }

  /** Re-reads SIOCOUTQ and forgets the packets the peer has received since (daemon's side). */
  refreshUnreceived(): void {
    this.inFlight?.refresh();
  }

  /**
   * Sends one packet, with `fd` in SCM_RIGHTS when fd >= 0 (ownership of fd passes here).
   * Queues it when the peer's receive buffer is full or the account holds fds back; closes
   * the socket when the queue bound is exceeded or the send fails. Returns false when the
   * socket is (now) closed. An fd that is never sent goes to `dispose` (the daemon charges
   * its close to its disk).
   */
  send(data: Buffer, fd = -1, dispose: (fd: number) => void = closeUnsent): boolean {
    if (this.closed) {
      if (fd >= 0) dispose(fd);
      return false;
    }
    if (this.queue.length === 0 && (fd < 0 || this.admitsFd())) {
      const outcome = this.trySend(data, fd);
      if (outcome === 'sent') return true;
      if (outcome === 'failed') {
        if (fd >= 0) dispose(fd);
        return false;
      }
    } else if (this.queue.length === 0) {
      this.heldBack = true;
    }
    this.queue.push({ data, fd, dispose });
    this.queuedBytes += data.length;
    if (fd >= 0) this.queuedFds++;
    if (this.queue.length > this.limits.maxQueuedPackets || this.queuedBytes > this.limits.maxQueuedBytes ||
        this.queuedFds > this.limits.maxQueuedFds) {
      this.close({ kind: 'output-overflow' });
      return false;
    }
    if (this.heldBack) this.recheckLater();
    this.updateStall(false);
    this.updatePolling();
    return true;
  }

  /** Stops reading packets (back-pressure); the kernel buffers, then the peer blocks. */
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
    // Packets may already be waiting; the poller reports them on the next loop turn.
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
    for (const packet of this.queue.splice(0)) {
      // The peer never got it; ours may be the last reference to a device, whose last
      // close can flush or detach a loop device: keep it off the event loop.
      if (packet.fd >= 0) packet.dispose(packet.fd);
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
   * One sendmsg. 'sent': the peer holds its own copy of fd, ours is closed. 'again': the
   * peer's buffer is full, nothing was sent and fd is still the caller's. 'held': the
   * kernel refused the fd (ETOOMANYREFS), as for 'again'. 'failed': the socket is closed
   * and fd is still the caller's to close.
   */
  private trySend(data: Buffer, fd: number): 'sent' | 'again' | 'held' | 'failed' {
    let sent: boolean;
    try {
      sent = this.inFlight === undefined ? native.send(this.fd, data, fd) : this.inFlight.send(data, fd);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ETOOMANYREFS' && fd >= 0) {
        this.heldBack = true;
        this.events.onFdRefused?.(error as Error);
        return 'held';
      }
      const gone = ['EPIPE', 'ECONNRESET'].includes((error as NodeJS.ErrnoException).code ?? '');
      this.close(gone ? { kind: 'peer-closed' } : { kind: 'error', error: error as Error });
      return 'failed';
    }
    if (!sent) return 'again';
    if (fd >= 0) native.close(fd);
    return 'sent';
  }

  private flushQueue(): void {
    let progress = false;
    this.heldBack = false;
    while (this.queue.length > 0 && !this.closed) {
      const head = this.queue[0]!;
      if (head.fd >= 0 && !this.admitsFd()) {
        this.heldBack = true;
        break;
      }
      // On 'failed', close() has already disposed of the whole queue, head included.
      if (this.trySend(head.data, head.fd) !== 'sent') break;
      this.queue.shift();
      this.queuedBytes -= head.data.length;
      if (head.fd >= 0) this.queuedFds--;
      progress = true;
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
      // EPOLLERR: typically the peer closed with our packets unread (ECONNRESET).
      this.close(this.hungUp() ? { kind: 'peer-closed' } : { kind: 'error', error: new Error(`poll failed with libuv status ${status}`) });
      return;
    }
    // POLLRDHUP: the peer shut down writing, or closed. Only a close (POLLHUP) ends us early.
    if (this.limits.closeOnHangUp && ready & (POLL_DISCONNECT | POLL_PRIORITIZED) && this.hungUp()) {
      this.close({ kind: 'peer-closed' });
      return;
    }
    if (ready & POLL_WRITABLE) this.flushQueue();
    if (!this.closed && this.reading && ready & (POLL_READABLE | POLL_DISCONNECT)) this.readBurst();
  }

  private hungUp(): boolean {
    try {
      return native.peerHungUp(this.fd);
    } catch {
      return true;
    }
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
      // End-of-file reads as 0 bytes, and so does a zero-length packet; only the
      // credentials SO_PASSCRED attaches to every packet tell the second one apart.
      if (received.bytes === 0 && received.fds.length === 0 && !received.truncated && !received.credentials) {
        this.close({ kind: 'peer-closed' });
        return;
      }
      this.events.onPacket({
        data: this.receiveBuffer.subarray(0, received.bytes),
        fds: received.fds,
        truncated: received.truncated,
        controlTruncated: received.controlTruncated,
      });
    }
  }

  /**
   * Reading: readable and peer shut-down. Not reading: on the daemon's side POLLPRI, which
   * a unix socket never raises, so that epoll reports only POLLHUP and POLLERR: a peer that
   * hangs up is noticed while its requests are not being read. Writable while output
   * waits for buffer space (not while it waits for the account: the socket is writable
   * then, and polling for it would spin).
   */
  private updatePolling(): void {
    if (this.closed) return;
    let events = this.reading ? POLL_READABLE | POLL_DISCONNECT : this.limits.closeOnHangUp ? POLL_PRIORITIZED : 0;
    if (this.queue.length > 0 && !this.heldBack) events |= POLL_WRITABLE;
    if (events === 0) this.poller.stop();
    else this.poller.start(events);
  }
}
