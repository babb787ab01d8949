/**
 * One connected SOCK_SEQPACKET socket: non-blocking packet reads driven by uv_poll, and
 * packet writes with at most one fd each, queued (bounded) while the peer is not reading.
 * Shared by the daemon's connections and the client library, like seatd's
 * common/connection.c.
 *
 * Ownership: the PacketSocket owns its socket fd from construction and closes it exactly
 * once (close() is idempotent). An fd passed to send() is owned by the PacketSocket from
 * that call on: it is closed after it has been sent, or disposed of (send's `dispose`,
 * off the loop by default) when it never is.
 */
import { closeOffLoop, native, POLL_DISCONNECT, POLL_READABLE, POLL_WRITABLE, type Poller } from './index.js';

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
}

/** What arrived in one packet. `data` is only valid during the callback. */
export interface IncomingPacket {
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
  /** Called once, after the socket fd and every queued fd have been closed. */
  onClose(reason: CloseReason): void;
  /** Called when queued output has all been sent. */
  onDrain?(): void;
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
  private queuedBytes = 0;
  private queuedFds = 0;
  private reading = true;
  private closed = false;
  private stallTimer: NodeJS.Timeout | undefined;

  constructor(fd: number, private readonly limits: PacketSocketLimits, private readonly events: PacketSocketEvents) {
    this.fd = fd;
    this.receiveBuffer = Buffer.allocUnsafe(limits.receiveSize);
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

  /**
   * Sends one packet, with `fd` in SCM_RIGHTS when fd >= 0 (ownership of fd passes here).
   * Queues it when the peer's receive buffer is full; closes the socket when the queue
   * bound is exceeded or the send fails. Returns false when the socket is (now) closed.
   * An fd that is never sent goes to `dispose` (the daemon charges its close to its disk).
   */
  send(data: Buffer, fd = -1, dispose: (fd: number) => void = closeUnsent): boolean {
    if (this.closed) {
      if (fd >= 0) dispose(fd);
      return false;
    }
    if (this.queue.length === 0) {
      const outcome = this.trySend(data, fd);
      if (outcome === 'sent') return true;
      if (outcome === 'failed') {
        if (fd >= 0) dispose(fd);
        return false;
      }
    }
    if (this.queue.length === 0) this.armStallTimer();
    this.queue.push({ data, fd, dispose });
    this.queuedBytes += data.length;
    if (fd >= 0) this.queuedFds++;
    if (this.queue.length > this.limits.maxQueuedPackets || this.queuedBytes > this.limits.maxQueuedBytes ||
        this.queuedFds > this.limits.maxQueuedFds) {
      this.close({ kind: 'output-overflow' });
      return false;
    }
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

  /** Closes the socket and every queued fd; idempotent. */
  close(reason: CloseReason = { kind: 'local' }): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.stallTimer);
    this.poller.close();
    for (const packet of this.queue.splice(0)) {
      // The peer never got it; ours may be the last reference to a device, whose last
      // close can flush or detach a loop device: keep it off the event loop.
      if (packet.fd >= 0) packet.dispose(packet.fd);
    }
    this.queuedBytes = 0;
    this.queuedFds = 0;
    native.close(this.fd);
    this.events.onClose(reason);
  }

  /**
   * One sendmsg. 'sent': the peer holds its own copy of fd, ours is closed. 'again': the
   * peer's buffer is full, nothing was sent and fd is still the caller's. 'failed': the
   * socket is closed and fd is still the caller's to close.
   */
  private trySend(data: Buffer, fd: number): 'sent' | 'again' | 'failed' {
    let sent: boolean;
    try {
      sent = native.send(this.fd, data, fd);
    } catch (error) {
      this.close({ kind: 'error', error: error as Error });
      return 'failed';
    }
    if (!sent) return 'again';
    if (fd >= 0) native.close(fd);
    return 'sent';
  }

  private flushQueue(): void {
    let progress = false;
    while (this.queue.length > 0 && !this.closed) {
      const head = this.queue[0]!;
      // On 'failed', close() has already disposed of the whole queue, head included.
      if (this.trySend(head.data, head.fd) !== 'sent') break;
      this.queue.shift();
      this.queuedBytes -= head.data.length;
      if (head.fd >= 0) this.queuedFds--;
      progress = true;
    }
    if (this.closed) return;
    this.updatePolling();
    if (this.queue.length === 0) {
      clearTimeout(this.stallTimer);
      this.events.onDrain?.();
    } else if (progress) {
      this.armStallTimer();
    }
  }

  /** (Re)starts the clock of a peer that is not taking its output. */
  private armStallTimer(): void {
    if (this.limits.stallTimeoutMs <= 0) return;
    clearTimeout(this.stallTimer);
    this.stallTimer = setTimeout(() => this.close({ kind: 'output-stalled' }), this.limits.stallTimeoutMs);
    this.stallTimer.unref();
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
      if (received.bytes === 0 && received.fds.length === 0 && !received.truncated) {
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

  private updatePolling(): void {
    const events = (this.reading ? POLL_READABLE | POLL_DISCONNECT : 0) | (this.queue.length > 0 ? POLL_WRITABLE : 0);
    if (events === 0) this.poller.stop();
    else this.poller.start(events);
  }
}
