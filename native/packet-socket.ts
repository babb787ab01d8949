/**
 * One connected SOCK_SEQPACKET socket: non-blocking packet reads driven by uv_poll, and
 * packet writes with at most one fd each, queued (bounded) while the peer is not reading.
 * Shared by the daemon's connections and the client library, like seatd's
 * common/connection.c. The daemon's side adds three things (docs/design.md, "Limits"): it
 * counts the fds the peer has not received yet and sends no more while its account says
 * so; it closes at once when the peer hangs up, even while it is not reading; and it tells
 * a zero-length packet from end-of-file.
 *
 * The output queue, the fd account and the close are QueuedSocket's (native/queued-socket.ts),
 * shared with StreamSocket; this class writes whole packets and reads them.
 *
 * Ownership: the PacketSocket owns its socket fd from construction and closes it exactly
 * once. An fd passed to send() is owned by the PacketSocket from that call on: it is
 * closed after it has been sent, or disposed of (send's `dispose`, off the loop by
 * default) when it never is. On the daemon's side a
 * closed socket whose peer still has fds unreceived is shut down, not closed: those fds
 * are charged to the daemon until the peer takes or drops them, which only SIOCOUTQ on
 * this end can tell. The fd is closed once SIOCOUTQ reads 0 (onReleased), or by destroy().
 */
import { native, POLL_DISCONNECT, POLL_PRIORITIZED, POLL_READABLE, POLL_WRITABLE } from './index.js';
import { closeUnsent, QueuedSocket, receiveBuffer, type CloseReason, type OutputEvents, type OutputLimits, type QueuedOutput } from './queued-socket.js';

export type { CloseReason };
export type { UnreceivedFdAccount } from './fds-in-flight.js';

/** Sizes and bounds of one PacketSocket (the shared output bounds in OutputLimits). */
export interface PacketSocketLimits extends OutputLimits {
  /** Receive buffer size: a longer packet is reported as truncated. */
  receiveSize: number;
  /** Packets that may wait in the output queue before the socket is closed as stuck. */
  maxQueuedPackets: number;
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
  /**
   * Empty only for a zero-length packet (delivered only with passCredentials). A view of the
   * shared receive buffer (receiveBuffer()): valid until onPacket returns.
   */
  data: Buffer;
  /** fds received with the packet; the callee owns them and must close them. */
  fds: number[];
  truncated: boolean;
  controlTruncated: boolean;
}

/** Callbacks of one PacketSocket (the shared ones in OutputEvents). */
export interface PacketSocketEvents extends OutputEvents {
  onPacket(packet: IncomingPacket): void;
}

/** Packets read per readiness callback before yielding to the loop, for fairness. */
const READ_BURST = 32;

export class PacketSocket extends QueuedSocket<QueuedOutput, PacketSocketLimits, PacketSocketEvents> {
  private readonly receiveBuffer: Buffer;

  constructor(fd: number, limits: PacketSocketLimits, events: PacketSocketEvents) {
    super(fd, limits, limits.maxQueuedPackets, events);
    this.receiveBuffer = receiveBuffer(limits.receiveSize);
    if (limits.passCredentials) native.setPassCredentials(fd);
    if (limits.minSendBuffer !== undefined) native.ensureSendBuffer(fd, limits.minSendBuffer);
    this.updatePolling();
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
    if (this.mayWriteNow(fd)) {
      const outcome = this.trySend(data, fd);
      if (outcome === 'sent') return true;
      if (outcome === 'failed') {
        if (fd >= 0) dispose(fd);
        return false;
      }
    }
    return this.enqueue({ data, fd, dispose }, data.length);
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
      return this.sendFailed(error, fd >= 0) ? 'held' : 'failed';
    }
    if (!sent) return 'again';
    if (fd >= 0) native.close(fd);
    return 'sent';
  }

  protected flushQueue(): void {
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
    this.flushed(progress);
  }

  protected onReady(status: number, ready: number): void {
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

  /**
   * Reads what already waits, without waiting for readiness: a client usually sends its
   * first request with the connection, so a socket just accepted has it before the loop's
   * next poll, and whatever runs in between (a slice of the first scan) would delay it.
   */
  readWaiting(): void {
    if (!this.closed && this.reading) this.readBurst();
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
  protected updatePolling(): void {
    if (this.closed) return;
    let events = this.reading ? POLL_READABLE | POLL_DISCONNECT : this.limits.closeOnHangUp ? POLL_PRIORITIZED : 0;
    if (this.queue.length > 0 && !this.heldBack) events |= POLL_WRITABLE;
    if (events === 0) this.poller.stop();
    else this.poller.start(events);
  }
}
