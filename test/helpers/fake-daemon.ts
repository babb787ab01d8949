/**
 * A scriptable stand-in for diskseqd, for the tests of the client library and the CLI: a
 * real SEQPACKET listener in this process that decodes each Request and lets the test
 * answer with any Response (right or wrong), with or without fds, in any order. Also: a
 * real loop device described the way the fake daemon sends it, for the tests that need a
 * real block device behind the fake.
 */
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import Long from 'long';
import { native, POLL_READABLE, type Poller } from '../../native/index.js';
import { PacketSocket } from '../../native/packet-socket.js';
import { MAX_REQUEST_BYTES, wire, type WireRequest } from '../../proto/contract.js';
import type { diskseqd } from '../../proto/gen/diskseqd.js';
import { createLoop } from '../../testkit/loop.js';

/** One accepted client connection of the fake daemon. */
export interface FakeConnection {
  socket: PacketSocket;
  /** Resolves when the client side has gone (or the fake closed it). */
  closed: Promise<void>;
}

/** A request as the fake daemon received it. */
export interface FakeRequest {
  connection: FakeConnection;
  request: WireRequest;
}

const LIMITS = { receiveSize: MAX_REQUEST_BYTES, maxQueuedPackets: 1024, maxQueuedBytes: 1 << 24, maxQueuedFds: 64, stallTimeoutMs: 0 };

/** The fake daemon (see the module comment); close() stops it. */
export class FakeDaemon {
  readonly socketPath: string;
  readonly connections: FakeConnection[] = [];
  private readonly dir: string;
  private readonly listenFd: number;
  private readonly poller: Poller;
  private readonly requests: FakeRequest[] = [];
  private readonly waiters: Array<(request: FakeRequest) => void> = [];

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'diskseqd-client-'));
    this.socketPath = join(this.dir, 'fake.sock');
    this.listenFd = native.listenSeqpacket(this.socketPath, 16);
    this.poller = new native.Poller(this.listenFd, () => this.acceptAll());
    this.poller.start(POLL_READABLE);
  }

  /** The next request from any connection, in arrival order. */
  nextRequest(): Promise<FakeRequest> {
    const request = this.requests.shift();
    if (request !== undefined) return Promise.resolve(request);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** The next `count` requests. */
  async nextRequests(count: number): Promise<FakeRequest[]> {
    const requests: FakeRequest[] = [];
    for (let i = 0; i < count; i++) requests.push(await this.nextRequest());
    return requests;
  }

  /** Sends a Response answering `to` (its id is filled in); `fd`, if given, passes to the socket. */
  respond(to: FakeRequest, response: Omit<diskseqd.v1.IResponse, 'id'>, fd = -1): void {
    this.sendRaw(to.connection, Buffer.from(wire.Response.encode({ ...response, id: to.request.id }).finish()), fd);
  }

  /** Sends arbitrary bytes as one packet. */
  sendRaw(connection: FakeConnection, data: Buffer, fd = -1): void {
    if (!connection.socket.send(data, fd)) throw new Error('fake daemon: send failed');
  }

  close(): void {
    this.poller.close();
    native.close(this.listenFd);
    for (const connection of this.connections) connection.socket.close();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private acceptAll(): void {
    for (;;) {
      const fd = native.accept(this.listenFd);
      if (fd === null) return;
      let markClosed!: () => void;
      const closed = new Promise<void>((resolve) => (markClosed = resolve));
      const connection: FakeConnection = {
        closed,
        socket: new PacketSocket(fd, LIMITS, {
          onPacket: (packet) => {
            for (const stray of packet.fds) native.close(stray);
            const request = { connection, request: wire.Request.decode(packet.data) };
            const waiter = this.waiters.shift();
            if (waiter !== undefined) waiter(request);
            else this.requests.push(request);
          },
          onClose: () => markClosed(),
        }),
      };
      this.connections.push(connection);
    }
  }
}

/** A fake daemon that is closed at the end of the test. */
export function startFakeDaemon(t: ExecutionContext): FakeDaemon {
  const daemon = new FakeDaemon();
  t.teardown(() => daemon.close());
  return daemon;
}

/** Answers the next request with `answer` (while, say, the CLI under test runs). */
export async function serveOne(daemon: FakeDaemon, answer: (request: FakeRequest) => void): Promise<FakeRequest> {
  const request = await daemon.nextRequest();
  answer(request);
  return request;
}

/** Answers the next request with an Opened for `loop` and an fd of it (openLoopFd). */
export function serveLoop(daemon: FakeDaemon, loop: TestLoop): Promise<FakeRequest> {
  return serveOne(daemon, (r) => daemon.respond(r, { opened: { device: loopWireDevice(loop) } }, openLoopFd(loop)));
}

/**
 * A new read-only fd of `loop`, for `daemon.respond(..., openLoopFd(loop))`: the connection
 * owns it from then on and closes it once sent. Never O_EXCL, even when the request asked
 * for --exclusive: the fake daemon only passes fds, it does not hold claims.
 */
export function openLoopFd(loop: TestLoop): number {
  return openSync(loop.path, 'r');
}

/** A wire Device for tests. */
export function wireDevice(diskseq: bigint, partition = 0, extra: Partial<diskseqd.v1.IDevice> = {}): diskseqd.v1.IDevice {
  return {
    diskseq: Long.fromString(diskseq.toString(), true), partition, name: `fake${diskseq}`, major: 7, minor: 0,
    sizeBytes: Long.fromString('1048576', true), driver: 'loop', ...extra,
  };
}

/** An fd of /dev/null (a character device: no diskseq). */
export function devNullFd(): number {
  return openSync('/dev/null', 'r');
}

/** A loop device of the test's own (testkit/loop.ts), as the fake daemon describes it. */
export interface TestLoop {
  index: number;
  path: string;
  diskseq: bigint;
  major: number;
  minor: number;
  /** Its first 16 bytes (the start of the image's disk marker). */
  marker: string;
}

/** Claims a free loop device and attaches a fresh 1 MiB image; cleaned up by t.teardown. */
export function claimTestLoop(t: ExecutionContext): TestLoop {
  const loop = createLoop({ sizeMiB: 1 }, t);
  const [major, minor] = readFileSync(`/sys/block/${loop.name}/dev`, 'utf8').trim().split(':').map(Number);
  return { index: loop.index, path: loop.devPath, diskseq: loop.diskseq, major: major!, minor: minor!, marker: loop.image.diskMarker.slice(0, 16) };
}

/** The wire Device that truthfully describes a TestLoop. */
export function loopWireDevice(loop: TestLoop): diskseqd.v1.IDevice {
  return wireDevice(loop.diskseq, 0, { name: `loop${loop.index}`, major: loop.major, minor: loop.minor });
}
