/**
 * Client: the promise-based API over one pipelining connection to diskseqd.
 */
import { PROTOCOL_VERSION, type WireResponse } from '../proto/contract.js';
import { closeFds, Connection, resolveSocketPath, type RequestBody, type ResponseHandler } from './connection.js';
import { deviceFromWire, type Device, type DeviceInfo } from './device.js';
import { AbortError, DiskseqError, errorFromWire, invalidArgument, protocolError } from './errors.js';
import { installDisposers, Opened } from './opened.js';
import { prepareOpen, type OpenOptions, type PreparedOpen } from './open-request.js';
import { recheckFd } from './recheck-fd.js';
import { statusFromWire, type DaemonStatus } from './status.js';
import { DeviceWatch, type WatchOptions } from './watch.js';

/** Options of connect(). */
export interface ConnectOptions {
  /** Socket path; default $DISKSEQD_SOCKET, else /run/diskseqd.sock. */
  socketPath?: string;
}

/**
 * A delivered device: the fd (the caller owns it and must close it) and its description.
 * Client.open() resolves to an Opened, which is this plus close() and disposal.
 */
export interface OpenResult {
  /** A CLOEXEC fd bound to the requested disk instance (re-checked with BLKGETDISKSEQ). */
  fd: number;
  device: DeviceInfo;
}

/** Options of Client.list(). */
export interface ListOptions {
  /** Also list partitions (default true, as `diskseq-open --list` does; false: whole disks only). */
  includePartitions?: boolean;
}

/** The daemon's answer to Hello. */
export interface HelloInfo {
  protocolVersion: number;
  serverVersion: string;
  features: string[];
}

/**
 * Connects to diskseqd. Rejects with a ConnectionError (code ENOENT, ECONNREFUSED, EACCES
 * ...) whose message names the socket path.
 */
export async function connect(options: ConnectOptions = {}): Promise<Client> {
  return new Client(Connection.open(resolveSocketPath(options.socketPath)));
}

/**
 * One connection to diskseqd. Requests may be issued concurrently: they are pipelined and
 * each response is matched to its request by id. Close the client when done — close(), or
 * `using` / `await using` where the runtime has Symbol.dispose; fds it has delivered stay
 * open (they belong to the caller).
 */
export class Client implements Disposable, AsyncDisposable {
  private readonly watches = new Set<DeviceWatch>();
  /**
   * One 'abort' listener per signal, fanned out to the requests using it: callers often
   * share one AbortController across a batch, and one listener per request would trip
   * Node's MaxListenersExceededWarning at 11 requests.
   */
  private readonly abortHooks = new Map<AbortSignal, { listener: () => void; callbacks: Set<() => void> }>();

  /** Use connect(). */
  constructor(private readonly connection: Connection) {}

  /** The socket path this client is connected to. */
  get socketPath(): string {
    return this.connection.socketPath;
  }

  /** True after close() or once the daemon has closed the connection. */
  get isClosed(): boolean {
    return this.connection.isClosed;
  }

  /** Sends Hello (optional in the protocol); rejects UNSUPPORTED on a version mismatch. */
  hello(clientName = ''): Promise<HelloInfo> {
    return this.request({ hello: { protocolVersion: PROTOCOL_VERSION, clientName } }, (response, fds) => {
      const reply = expectBody(response, fds, 'hello').hello!;
      return {
        protocolVersion: reply.protocolVersion ?? 0,
        serverVersion: reply.serverVersion ?? '',
        features: [...(reply.features ?? [])],
      };
    });
  }

  /**
   * Opens partition `partition` (0: the whole disk) of disk instance `diskseq` through the
   * daemon. Resolves once this process has itself checked the received fd: it is a block
   * device whose BLKGETDISKSEQ equals `diskseq` (on a partition fd the parent's diskseq),
   * whose st_rdev is the device the daemon described and whose sysfs `partition` is
   * `partition` (none for 0), and, for a loop device, still bound; otherwise the fd is
   * closed and the promise rejects with DiskseqError 'STALE' (client/recheck-fd.ts). An Opened without exactly one fd, or an fd with any other
   * response, is a protocol error: every fd is closed, DiskseqError 'INTERNAL'. Daemon
   * refusals reject with DiskseqError carrying the daemon's code and os_errno.
   * Aborting `signal` rejects at once with an AbortError; an fd the daemon sends later for
   * this request is closed on arrival. Options the daemon would refuse on their face
   * (diskseq 0, negative or fractional numbers ...) reject with DiskseqError
   * 'INVALID_ARGUMENT' before anything is sent.
   */
  open(options: OpenOptions): Promise<Opened> {
    let prepared: PreparedOpen;
    try {
      prepared = prepareOpen(options);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.request({ open: prepared.message }, (response, fds) => acceptOpened(prepared, response, fds), options.signal);
  }

  /**
   * Lists the daemon's devices — disks and their partitions, or disks only with
   * `includePartitions: false` — joining a DeviceList that the daemon split over several
   * packets.
   */
  list(options: ListOptions = {}): Promise<Device[]> {
    const devices: Device[] = [];
    const includePartitions = options.includePartitions ?? true;
    if (typeof includePartitions !== 'boolean') return Promise.reject(invalidArgument('includePartitions must be a boolean'));
    return new Promise((resolve, reject) => {
      this.send({ list: { includePartitions } }, {
        onResponse: (response, fds) => {
          try {
            const list = expectBody(response, fds, 'devices').devices!;
            for (const device of list.devices ?? []) devices.push(deviceFromWire(device));
            if (list.more) return false;
            resolve(devices);
          } catch (error) {
            reject(error);
          }
          return true;
        },
        onFailure: reject,
      }, reject);
    });
  }

  /**
   * Asks the daemon how it is (a StatusReply: counts, connections, requests by outcome,
   * waiters, watchers, uevent overruns). How much a peer is shown is the daemon's policy
   * (`full` says whether it holds every user's numbers). A daemon that does not list
   * "status" in its HelloReply.features (one Hello is pipelined with the request) makes it
   * reject with DiskseqError 'UNSUPPORTED'.
   */
  async status(): Promise<DaemonStatus> {
    const hello = this.hello('status');
    const reply = this.request({ status: {} }, (response, fds) => statusFromWire(expectBody(response, fds, 'status').status!));
    const [helloResult, statusResult] = await Promise.allSettled([hello, reply]);
    if (helloResult.status === 'fulfilled' && !helloResult.value.features.includes('status')) {
      throw new DiskseqError('UNSUPPORTED', `diskseqd ${helloResult.value.serverVersion} does not serve status requests`);
    }
    if (statusResult.status === 'rejected') throw statusResult.reason;
    return statusResult.value;
  }

  /**
   * Watches devices come and go: first an 'added' event for every current device, then one
   * 'synced', then live events, until the iteration ends. Each watch runs on a connection
   * of its own (the protocol cancels a watch only by closing its connection); breaking out
   * of the `for await` loop, or close() of this client, closes it. A daemon without watch
   * support makes the iteration throw DiskseqError 'UNSUPPORTED'.
   */
  watch(options: WatchOptions = {}): DeviceWatch {
    const watch = new DeviceWatch(this.connection.socketPath, (ended) => this.watches.delete(ended), options.signal);
    if (this.connection.isClosed) watch.close();
    else this.watches.add(watch);
    return watch;
  }

  /**
   * Closes the connection and every watch; idempotent. Requests still pending reject with a
   * ConnectionError 'CONNECTION_CLOSED' ('connection closed'); no fd can arrive afterwards.
   */
  close(): void {
    for (const watch of [...this.watches]) watch.close();
    this.connection.close();
  }

  /** Same as close(); defined where the runtime has Symbol.dispose. */
  declare [Symbol.dispose]: () => void;
  /** Same as close(); defined where the runtime has Symbol.asyncDispose. */
  declare [Symbol.asyncDispose]: () => Promise<void>;

  /** Sends a request whose first response completes it (`accept` returns or throws). */
  private request<T>(body: RequestBody, accept: (response: WireResponse, fds: number[]) => T, signal?: AbortSignal): Promise<T> {
    if (signal?.aborted) return Promise.reject(new AbortError(signal.reason));
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      let id: bigint | null = null;
      const onAbort = (): void => {
        if (settled) return;
        settled = true;
        // The answer may still come: forgetting the id makes the connection close its fd.
        if (id !== null) this.connection.forget(id);
        reject(new AbortError(signal!.reason));
      };
      let unhook = (): void => undefined;
      const settle = (): boolean => {
        if (settled) return false;
        settled = true;
        unhook();
        return true;
      };
      id = this.send(body, {
        onResponse: (response, fds) => {
          if (!settle()) {
            closeFds(fds);
            return true;
          }
          try {
            resolve(accept(response, fds));
          } catch (error) {
            reject(error);
          }
          return true;
        },
        onFailure: (error) => {
          if (settle()) reject(error);
        },
      }, (error) => {
        if (settle()) reject(error);
      });
      if (!settled && signal !== undefined) unhook = this.hookAbort(signal, onAbort);
    });
  }

  /** Runs `callback` when `signal` aborts; returns the function that unregisters it. */
  private hookAbort(signal: AbortSignal, callback: () => void): () => void {
    let hook = this.abortHooks.get(signal);
    if (hook === undefined) {
      const callbacks = new Set<() => void>();
      const listener = (): void => {
        this.abortHooks.delete(signal);
        for (const run of [...callbacks]) run();
      };
      hook = { listener, callbacks };
      this.abortHooks.set(signal, hook);
      signal.addEventListener('abort', listener, { once: true });
    }
    const { callbacks, listener } = hook;
    callbacks.add(callback);
    return () => {
      callbacks.delete(callback);
      if (callbacks.size === 0 && this.abortHooks.get(signal)?.listener === listener) {
        this.abortHooks.delete(signal);
        signal.removeEventListener('abort', listener);
      }
    };
  }

  /** connection.send(), reporting a synchronous failure to `onSendError`; null then. */
  private send(body: RequestBody, handler: ResponseHandler, onSendError: (error: unknown) => void): bigint | null {
    try {
      return this.connection.send(body, handler);
    } catch (error) {
      onSendError(error);
      return null;
    }
  }
}

installDisposers(Client.prototype);

/**
 * Returns the response when it has the expected body and no fds; closes any fds and throws
 * otherwise (the daemon's Error as a DiskseqError, anything else as a protocol error).
 */
function expectBody(response: WireResponse, fds: number[], body: NonNullable<WireResponse['body']>): WireResponse {
  if (fds.length > 0) {
    closeFds(fds);
    throw protocolError(`${fds.length} fd(s) arrived with a ${response.body ?? 'bodiless'} response`);
  }
  if (response.body === body) return response;
  if (response.body === 'error') throw errorFromWire(response.error!);
  throw protocolError(`expected ${body}, got ${response.body ?? 'an empty response'}`);
}

/** Takes the fd of an Opened response after checking it; closes every fd on failure. */
function acceptOpened(prepared: PreparedOpen, response: WireResponse, fds: number[]): Opened {
  if (response.body !== 'opened') {
    expectBody(response, fds, 'opened');
    throw protocolError('unreachable');
  }
  if (fds.length !== 1) {
    closeFds(fds);
    throw protocolError(`Opened carried ${fds.length} fds instead of exactly one`);
  }
  const fd = fds[0]!;
  try {
    const wireDevice = response.opened!.device;
    if (!wireDevice) throw protocolError('Opened without a device');
    const device = deviceFromWire(wireDevice);
    if (device.diskseq !== prepared.diskseq || device.partition !== prepared.partition) {
      throw protocolError(`asked for diskseq ${prepared.diskseq} partition ${prepared.partition}, ` +
        `Opened describes diskseq ${device.diskseq} partition ${device.partition}`);
    }
    recheckFd(fd, prepared.diskseq, prepared.partition, device);
    return new Opened(fd, device);
  } catch (error) {
    closeFds([fd]);
    throw error;
  }
}
