/**
 * The listening socket: accept, read the peer's credentials once, enforce the connection
 * limits (the shared per-uid shares of src/quotas.ts), hand each connection to a
 * Connection. A connection counts until its socket fd is closed, which for a peer still
 * holding fds it has not received is after the connection ended (docs/design.md,
 * "Limits"). Also the orderly shutdown: stop accepting, let in-flight requests finish,
 * close every connection, unlink the socket if we made it.
 */
import { unlinkSync } from 'node:fs';
import { native, POLL_READABLE, type Poller } from '../native/index.js';
import { receiveBuffer } from '../native/queued-socket.js';
import { resourceExhausted } from './errors.js';
import { Connection, type ConnectionContext } from './connection.js';
import { InsertionList } from './insertion-list.js';
import { acceptPending, bindReplacingStale, readPeer, type SocketKind } from './listen-socket.js';
import type { Peer } from './policy/index.js';
import type { RequestTally } from './request-tally.js';
import { encodeError } from './protocol.js';
import { MAX_REQUEST_BYTES } from '../proto/contract.js';
import Long from 'long';

/** How the server listens and how many it serves. */
export interface ServerOptions {
  /** Path to bind, or the path of an inherited socket (for logs only). */
  socketPath: string;
  /** An already listening socket (socket activation); the server then never unlinks the path. */
  inheritedFd?: number;
  /** Mode of a socket file the server creates; access is decided per peer by the policy. */
  socketMode: number;
  backlog: number;
}

/** The SEQPACKET socket, as bindReplacingStale binds and probes it. */
const SEQPACKET: SocketKind = { listen: (path, backlog) => native.listenSeqpacket(path, backlog), connect: (path) => native.connectSeqpacket(path, false) };

/** How long accept pauses after EMFILE/ENFILE before trying again. */
const ACCEPT_RETRY_MS = 100;

export class Server {
  /** A list, not a Set: src/insertion-list.ts. */
  private readonly connections = new InsertionList<Connection>();
  private listenFd = -1;
  private poller: Poller | undefined;
  private ownsSocketPath = false;
  private acceptRetry: NodeJS.Timeout | undefined;
  private closing = false;
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly options: ServerOptions,
    private readonly ctx: Omit<ConnectionContext, 'onActivity' | 'onRequestDone'> & { tally: RequestTally },
    private readonly onActivity: () => void = () => undefined,
  ) {}


  /** Connections open now, by peer uid, over every front-end (they share src/quotas.ts). */
  get connectionsByUid(): ReadonlyMap<number, number> {
    return this.ctx.quotas.connections.byUidNow();
  }

  /** Connections open now. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Whether any connection has a request in flight. */
  get busy(): boolean {
    for (const connection of this.connections) if (connection.busy) return true;
    return false;
  }

  /** Starts listening (or adopts the inherited socket) and accepting. */
  start(): void {
    if (this.options.inheritedFd !== undefined) {
      this.listenFd = this.options.inheritedFd;
    } else {
      this.listenFd = this.bindFresh();
      this.ownsSocketPath = true;
    }
    this.poller = this.pollListener();
    this.poller.start(POLL_READABLE);
  }

  private pollListener(): Poller {
    return new native.Poller(this.listenFd, (status) => {
      if (status < 0) this.ctx.log.error({ status }, 'poll on the listening socket failed');
      else this.acceptAll(true);
    });
  }

  /**
   * Stops accepting, waits up to graceMs for in-flight requests, then closes every
   * connection and the listening socket, and unlinks the socket file if we created it.
   */
  async shutdown(graceMs: number): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearTimeout(this.acceptRetry);
    this.poller?.close();
    if (this.listenFd >= 0) native.close(this.listenFd);
    this.listenFd = -1;
    if (this.ownsSocketPath) {
      try {
        unlinkSync(this.options.socketPath);
      } catch (error) {
        this.ctx.log.warn({ err: error }, 'could not unlink the socket');
      }
    }
    if (this.busy) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.idleWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    for (const connection of [...this.connections]) connection.destroy();
  }

  /**
   * For idle exit, called at the deadline (no connections, nothing in flight): stops
   * accepting and returns true, unless clients are already waiting in the listen backlog;
   * those are admitted, the server goes on listening, and it returns false. No client is
   * ever dropped:
   * - a socket we bound is unlinked first, so no connect() can reach it any more, then the
   *   backlog is drained; if that found clients, a fresh socket is bound at the path;
   * - an inherited (systemd) socket keeps its path: a client that connects after the last
   *   accept waits in systemd's own copy, and systemd starts the next instance for it.
   * Returns true as well when the listener is already closed.
   */
  stopAccepting(): boolean {
    if (this.closing || this.listenFd < 0) return true;
    this.poller?.stop();
    const unlinked = this.ownsSocketPath && this.unlinkSocketPath();
    const before = this.connections.size;
    // Not read at accept: a client answered before the path is bound again could connect
    // anew and find no socket. They are read at the next poll.
    this.acceptAll(false);
    const admitted = this.connections.size > before;
    if (admitted && (!unlinked || this.rebind())) {
      this.poller?.start(POLL_READABLE);
      return false;
    }
    clearTimeout(this.acceptRetry); // out of fds: what is left in the backlog is lost with the listener
    this.poller?.close();
    this.poller = undefined;
    native.close(this.listenFd);
    this.listenFd = -1;
    return !admitted;
  }

  /** Unlinks the socket file we bound; false (logged) if that failed. */
  private unlinkSocketPath(): boolean {
    try {
      unlinkSync(this.options.socketPath);
      this.ownsSocketPath = false; // from here on, the path may be a successor's
      return true;
    } catch (error) {
      this.ctx.log.warn({ err: error }, 'could not unlink the socket');
      return false;
    }
  }

  /** Replaces the (unlinked) listener with a fresh one at the path; false (logged) on failure. */
  private rebind(): boolean {
    let fd: number;
    try {
      fd = this.bindFresh();
    } catch (error) {
      this.ctx.log.error({ err: error }, 'could not bind the socket again; serving the clients we have, then exiting');
      return false;
    }
    this.poller?.close();
    native.close(this.listenFd);
    this.listenFd = fd;
    this.ownsSocketPath = true;
    this.poller = this.pollListener();
    return true;
  }

  private bindFresh(): number {
    return bindReplacingStale(this.options.socketPath, SEQPACKET, this.options.backlog, this.options.socketMode);
  }

  /** Accepts every connection in the backlog; `readFirst`: and handles what each has already sent. */
  private acceptAll(readFirst: boolean): void {
    const error = acceptPending(this.listenFd, () => !this.closing, (fd) => this.admit(fd, readFirst));
    if (error === undefined) return;
    // Out of fds: leave the connection in the backlog and try again shortly.
    this.ctx.log.error({ err: error }, 'accept failed; pausing');
    this.poller?.stop();
    this.acceptRetry = setTimeout(() => this.poller?.start(POLL_READABLE), ACCEPT_RETRY_MS);
  }

  private admit(fd: number, readFirst: boolean): void {
    const peer = readPeer(fd, this.ctx.log);
    if (peer === undefined) return;
    const shares = this.ctx.quotas.connections;
    const refusal = shares.refusal(peer.uid);
    if (refusal !== undefined) {
      this.refuse(fd, peer, refusal);
      return;
    }
    let connection: Connection;
    try {
      connection = new Connection(fd, peer, {
        ...this.ctx, onActivity: () => this.activity(), onRequestDone: (op, code) => this.ctx.tally.count(op, code),
      }, (released) => {
        this.connections.delete(released);
        shares.give(released.peer.uid);
        this.activity();
      });
    } catch (error) {
      this.ctx.log.warn({ err: error, peer }, 'could not set up the connection; closing');
      native.close(fd);
      return;
    }
    this.connections.add(connection);
    shares.take(peer.uid, 1);
    this.activity();
    if (readFirst) connection.readWaiting();
  }

  private refuse(fd: number, peer: Peer, why: string): void {
    const error = resourceExhausted(why);
    try {
      native.send(fd, encodeError(Long.UZERO, error), -1);
      // Discard what the client already sent: closing with unread packets would make its
      // next read fail with ECONNRESET before it reads the refusal.
      const scratch = receiveBuffer(MAX_REQUEST_BYTES);
      for (let i = 0; i < 8; i++) {
        const got = native.recv(fd, scratch);
        if (got === null) break;
        for (const passed of got.fds) this.ctx.opener.work.closeSent(peer.uid, passed);
      }
    } catch {
      // The peer is gone already; nothing to tell it.
    }
    native.close(fd);
    this.ctx.log.warn({ peer, reason: why }, 'connection refused: limit reached');
  }


  private activity(): void {
    if (!this.busy) for (const wake of this.idleWaiters.splice(0)) wake();
    this.onActivity();
  }
}
