/**
 * The Varlink socket (docs/storage-provider.md, "The socket"): accept, read the peer's
 * credentials once, apply the connection shares both front-ends count in
 * (src/quotas.ts), hand each connection to a VarlinkConnection, counted until its socket
 * is closed — for a peer still holding fds it has not received, after the connection
 * ended (docs/design.md, "Limits") — and the orderly shutdown. Started by hand it binds its path itself — creating the parent
 * directory, replacing a stale socket file — but never takes a path a live process
 * serves: then Varlink stays off and the daemon serves SEQPACKET only.
 */
import { mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { native, POLL_READABLE, type Poller } from '../../native/index.js';
import type { Peer } from '../policy/index.js';
import type { UidShares } from '../quotas.js';
import type { RequestTally } from '../request-tally.js';
import { InsertionList } from '../insertion-list.js';
import { acceptPending, bindReplacingStale, readPeer, type SocketKind } from '../listen-socket.js';
import { VarlinkConnection, type VarlinkContext } from './connection.js';
import { encodeError, VarlinkError } from './message.js';

/** How the listener listens. */
export interface VarlinkListenerOptions {
  /** Path to bind, or the path of the inherited socket (for logs only). */
  socketPath: string;
  /** A listening socket systemd passed (socket activation); the path is then never unlinked. */
  inheritedFd?: number;
  /** Mode of a socket file the listener creates; access is decided per peer by the policy. */
  socketMode: number;
  backlog: number;
  /** The connection counts of both front-ends, per uid (src/quotas.ts). */
  connections: UidShares;
  /** Where answered calls are counted, with the SEQPACKET socket's requests. */
  tally: RequestTally;
}

/** The Varlink socket, as bindReplacingStale binds and probes it. */
const STREAM: SocketKind = { listen: (path, backlog) => native.listenStream(path, backlog), connect: (path) => native.connectStream(path, false) };

/** How long accept pauses after EMFILE/ENFILE before trying again. */
const ACCEPT_RETRY_MS = 100;

export class VarlinkListener {
  /** A list, not a Set: src/insertion-list.ts. */
  private readonly connections = new InsertionList<VarlinkConnection>();
  private listenFd = -1;
  private poller: Poller | undefined;
  private ownsSocketPath = false;
  private acceptRetry: NodeJS.Timeout | undefined;
  private closing = false;

  constructor(
    private readonly options: VarlinkListenerOptions,
    private readonly ctx: Omit<VarlinkContext, 'onActivity' | 'onRequestDone'>,
    private readonly onActivity: () => void = () => undefined,
  ) {}

  /** Where it listens (for logs). */
  get socketPath(): string {
    return this.options.socketPath;
  }

  /** Calls answered since the start. */

  /** Connections open now. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Whether any connection has a call in flight. */
  get busy(): boolean {
    for (const connection of this.connections) if (connection.busy) return true;
    return false;
  }

  /**
   * Starts listening (or adopts the inherited socket). Returns false — after logging why —
   * when a live process already serves the path or the path cannot be bound: the daemon
   * then goes on without Varlink.
   */
  start(): boolean {
    if (this.options.inheritedFd !== undefined) {
      this.listenFd = this.options.inheritedFd;
    } else {
      try {
        this.listenFd = this.bindFresh();
      } catch (error) {
        this.ctx.log.error({ socket: this.options.socketPath, reason: (error as Error).message }, 'not serving Varlink');
        return false;
      }
      this.ownsSocketPath = true;
    }
    this.poller = new native.Poller(this.listenFd, (status) => {
      if (status < 0) this.ctx.log.error({ status }, 'poll on the Varlink socket failed');
      else this.acceptAll();
    });
    this.poller.start(POLL_READABLE);
    return true;
  }

  /** Stops accepting and closes the listening socket (unlinking a path it bound); idempotent. */
  stopAccepting(): void {
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
        this.ctx.log.warn({ err: error }, 'could not unlink the Varlink socket');
      }
    }
  }

  /**
   * Waits up to graceMs for calls in flight, then closes every connection, and every socket
   * kept for a peer that has not received its fds (after stopAccepting).
   */
  async drain(graceMs: number): Promise<void> {
    const deadline = Date.now() + graceMs;
    while (this.busy && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    for (const connection of [...this.connections]) connection.destroy();
  }

  /**
   * Binds the path: its directory is made if missing; a socket file in the way is replaced
   * only when nobody accepts on it. Throws with the reason otherwise.
   */
  private bindFresh(): number {
    const path = this.options.socketPath;
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    return bindReplacingStale(path, STREAM, this.options.backlog, this.options.socketMode);
  }

  private acceptAll(): void {
    const error = acceptPending(this.listenFd, () => !this.closing, (fd) => this.admit(fd));
    if (error === undefined) return;
    // Out of fds: leave the connection in the backlog and try again shortly.
    this.ctx.log.error({ err: error }, 'accept on the Varlink socket failed; pausing');
    this.poller?.stop();
    this.acceptRetry = setTimeout(() => this.poller?.start(POLL_READABLE), ACCEPT_RETRY_MS);
  }

  private admit(fd: number): void {
    const peer = readPeer(fd, this.ctx.log);
    if (peer === undefined) return;
    const shares = this.options.connections;
    const refusal = shares.refusal(peer.uid);
    if (refusal !== undefined) {
      this.refuse(fd, peer, refusal);
      return;
    }
    let connection: VarlinkConnection;
    try {
      connection = new VarlinkConnection(fd, peer, {
        ...this.ctx, onActivity: () => this.onActivity(), onRequestDone: (op, code) => this.options.tally.count(op, code),
      }, (released) => {
        this.connections.delete(released);
        shares.give(released.peer.uid);
        this.onActivity();
      });
    } catch (error) {
      this.ctx.log.warn({ err: error, peer }, 'could not set up the connection; closing');
      native.close(fd);
      return;
    }
    this.connections.add(connection);
    shares.take(peer.uid, 1);
    this.onActivity();
  }

  /**
   * A connection over a limit: one error message (diskseqd's ResourceExhausted, as an
   * answer to whatever the client's first call is), then closed.
   */
  private refuse(fd: number, peer: Peer, why: string): void {
    const error = new VarlinkError('org.diskseqd.ResourceExhausted', { code: 'RESOURCE_EXHAUSTED', message: why, osErrno: 0 });
    try {
      native.sendStream(fd, encodeError(error), 0, -1);
      // Discard what the client already sent: closing with unread bytes would reset the
      // connection, and its next read would fail before it reads the refusal.
      const scratch = Buffer.allocUnsafe(4096);
      for (let i = 0; i < 8; i++) {
        const got = native.recv(fd, scratch);
        if (got === null || got.bytes === 0) break;
        for (const passed of got.fds) this.ctx.provider.closeSent(peer.uid, passed);
      }
    } catch {
      // The peer is gone already.
    }
    native.close(fd);
    this.ctx.log.warn({ peer, reason: why, via: 'varlink' }, 'connection refused: limit reached');
  }
}
