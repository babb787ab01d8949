/**
 * The one loader of the native addon (build/Release/diskseqd.node) and its typed interface.
 *
 * The addon does only what Node cannot: device opens and ioctls, SEQPACKET and STREAM
 * sockets with SCM_RIGHTS and peer credentials, the uevent netlink socket, mknod, and readiness through
 * uv_poll on this environment's loop. Numbers and Buffers in and out; no policy, no
 * protobuf, no logging. Every failing call throws (or rejects with) a NativeError shaped
 * like Node's fs errors: `code` ('EBUSY'), `errno` (positive number), `syscall`.
 */
import { createRequire } from 'node:module';

/** An error from a system call, shaped like Node's fs errors. */
export interface NativeError extends Error {
  /** Symbolic errno name, e.g. 'ENXIO'. */
  code: string;
  /** The positive errno value, e.g. 6 for ENXIO. */
  errno: number;
  /** The system call that failed, e.g. 'open' or 'ioctl(BLKGETDISKSEQ)'. */
  syscall: string;
}

/** What the kernel says about an open block device fd (docs/design.md, "Open and verify", step 4). */
export interface FdProbe {
  /** st_mode from fstat. */
  mode: number;
  /** major(st_rdev) and minor(st_rdev). */
  rdevMajor: number;
  rdevMinor: number;
  /**
   * For a loop device or a partition whose ioctls reach a loop device: whether
   * LOOP_GET_STATUS64 succeeded (the fd pins a bound loop). null when the ioctl answered
   * ENOTTY/EINVAL (not a loop device).
   */
  loopBound: boolean | null;
  /** lo_flags from LOOP_GET_STATUS64 when loopBound is true, else 0. */
  loopFlags: number;
  /** BLKGETDISKSEQ, or null if that ioctl failed (errno in diskseqErrno). */
  diskseq: bigint | null;
  diskseqErrno: number;
  /** BLKGETSIZE64, or null if that ioctl failed. */
  size: bigint | null;
  /** BLKROGET (the device, or for a partition the partition, is read-only), or null if it failed. */
  readOnly: boolean | null;
}

/** Result of openDevice: the fd (owned by the caller from here on) and its probe. */
export interface OpenedDevice {
  fd: number;
  probe: FdProbe;
}

/**
 * What the open-and-verify job returned (openVerified). When `mismatch` is set the job found
 * the fd to be the wrong device (steps a–d or g), closed it itself, and `fd` is -1.
 */
export interface VerifiedFd {
  /** The open fd, owned by the caller from here on; -1 when the job closed it. */
  fd: number;
  /** The probe taken right after the open. */
  probe: FdProbe;
  /** What the job found wrong (a–d, or g prefixed "re-check: "), or null. */
  mismatch: string | null;
  /** sysfs `partition` of the opened dev_t, newline trimmed; null when absent (or not read). */
  partition: string | null;
  /** The attributes asked for, in order, newline trimmed; null when absent (or not read). */
  values: (string | null)[];
  /** The step-g probe, taken after the last sysfs read; null when the job stopped before it. */
  last: FdProbe | null;
}

/** The job pool's state (for tests and diagnosis). */
export interface JobPoolStats {
  /** Threads alive: busy (a job, maybe blocked in the kernel), idle, or between jobs. */
  threads: number;
  busy: number;
  idle: number;
  /** Jobs submitted and not yet taken by a thread. */
  queued: number;
  threadsStarted: number;
  maxThreads: number;
  /** The spin window now, in µs (0: the next thread out of work sleeps at once). */
  spinUs: number;
  /** Spins that saw a job queued: jobs that needed no wake-up. */
  spinHits: number;
  /** Whether a thread is spinning now (a spin's hit is counted before this turns false). */
  spinning: boolean;
  /** Sleeping threads woken for a job. */
  wakeups: number;
  /**
   * The JS thread's wait window now, in µs: how long it waits for outstanding results before
   * the loop blocks (0: it blocks at once, and a result wakes it through uv_async).
   */
  awaitUs: number;
  /** Waits that ended with results, settled without a wake-up of the JS thread. */
  awaitHits: number;
  /** Jobs submitted since the addon loaded, by kind: open, probe, close, openVerify. */
  submitted: Record<string, number>;
}

/** One received packet. */
export interface Received {
  /** Bytes stored in the buffer (at most buffer.length). */
  bytes: number;
  /** MSG_TRUNC: the packet was longer than the buffer (its rest is lost). */
  truncated: boolean;
  /** MSG_CTRUNC: control data (fds) did not fit and were discarded by the kernel. */
  controlTruncated: boolean;
  /** fds that arrived in SCM_RIGHTS (received with MSG_CMSG_CLOEXEC); the caller owns them. */
  fds: number[];
  /**
   * An SCM_CREDENTIALS control message came with it. With SO_PASSCRED set
   * (setPassCredentials) the kernel attaches one to every packet and never to end-of-file:
   * bytes = 0 with credentials is a zero-length packet, without them the peer's close.
   */
  credentials: boolean;
}

/** SO_PEERCRED of a connected socket. */
export interface PeerCredentials {
  uid: number;
  gid: number;
  pid: number;
}

/** One uevent datagram from the kernel. */
export interface ReceivedUevent {
  bytes: number;
  /** Sender's netlink port id; 0 is the kernel. */
  senderPid: number;
  truncated: boolean;
}

/** uv_poll readiness bits (the libuv values). */
export const POLL_READABLE = 1;
export const POLL_WRITABLE = 2;
export const POLL_DISCONNECT = 4;
/**
 * EPOLLPRI, which a unix socket never raises: polling for it alone still reports POLLHUP
 * and POLLERR (epoll always does), so a socket not being read can hear its peer hang up.
 */
export const POLL_PRIORITIZED = 8;

/**
 * Readiness of one fd through uv_poll on this environment's loop. The callback gets the
 * ready event bits, or a negative libuv status on error. The Poller never owns the fd:
 * close() stops polling and releases the uv handle (idempotent); close the fd afterwards.
 */
export interface Poller {
  /** Starts or changes the watched events (POLL_* bits). */
  start(events: number): void;
  /** Stops watching until the next start(). */
  stop(): void;
  /** Stops watching and frees the handle; idempotent. */
  close(): void;
}

export interface PollerConstructor {
  new (fd: number, callback: (status: number, events: number) => void): Poller;
}

/** The functions the addon exports. */
export interface NativeBinding {
  // --- block devices ------------------------------------------------------------------
  /**
   * Off the event loop: open(path, flags | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW), then probe
   * the fd (fstat; LOOP_GET_STATUS64; BLKGETDISKSEQ; BLKGETSIZE64; BLKROGET). If the open fails the
   * promise rejects with the open errno. If fstat fails the fd is closed (still off the
   * loop) and the promise rejects.
   */
  openDevice(path: string, flags: number): Promise<OpenedDevice>;
  /**
   * Off the event loop, in one job (docs/design.md, "Open and verify"): open `path` with
   * `flags | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW` — when `nodeGid` >= 0 through a private node
   * made there first (only if sysfs lists major:minor; mknod, chown root:nodeGid, chmod
   * nodeMode, open, unlink) — then probe the fd and check a–c (block device, st_rdev =
   * major:minor, for `checks` & 1 a bound loop, for `checks` & 2 LO_FLAGS_PARTSCAN, size > 0,
   * BLKGETDISKSEQ = diskseq), read `partition` of the opened dev_t and check d (= partition,
   * or absent for 0), read each of `keys` (from the parent disk where bit i of `fromParent`
   * is set) under `<sysfsRoot>/dev/block/MAJ:MIN/`, and probe again last (g: a–c again). A
   * failed check closes the fd in the job and resolves with `mismatch`; a failed system
   * call rejects with its errno (an open's, or the private node's mknod/chown/chmod/unlink).
   */
  openVerified(path: string, flags: number, nodeGid: number, nodeMode: number, major: number, minor: number,
    diskseq: bigint, partition: number, checks: number, sysfsRoot: string, keys: readonly string[], fromParent: number): Promise<VerifiedFd>;
  /**
   * The job pool's cap on threads (two of them kept for closes, so a close never waits
   * behind opens; threads blocked on a hung device count), how long an idle thread
   * beyond the last waits before it leaves, and the largest window (0 to 100,000 µs; 0:
   * never) for which the thread that ran out of work keeps looking for the next job before
   * it sleeps (native/jobs.cc: the window adapts between 0 and this).
   */
  configureJobPool(maxThreads: number, idleMs: number, spinMaxUs: number): void;
  /** The job pool's state now. */
  jobPoolStats(): JobPoolStats;
  /** Off the event loop: probe an fd again (no open, no close). */
  probeFd(fd: number): Promise<FdProbe>;
  /** The same probe, synchronously (for clients that re-check an fd they received). */
  probeFdSync(fd: number): FdProbe;
  /** Off the event loop: close(fd) (a last close of a block device can flush or detach). */
  closeAsync(fd: number): Promise<void>;
  /** close(fd), synchronously. EINTR is not retried (Linux has closed the fd). */
  close(fd: number): void;
  /** mknod(path, S_IFBLK | (mode & 07777), makedev(major, minor)). */
  mknodBlock(path: string, mode: number, major: number, minor: number): void;
  /**
   * The open(2) flag values of this platform, and the errno values TypeScript names, so
   * that it never hard-codes them (errno values differ between Linux architectures).
   */
  constants: {
    O_RDONLY: number; O_WRONLY: number; O_RDWR: number; O_EXCL: number; O_DIRECT: number;
    O_NONBLOCK: number; O_SYNC: number; O_DSYNC: number; O_CLOEXEC: number;
    S_IFMT: number; S_IFBLK: number; LO_FLAGS_PARTSCAN: number; LO_FLAGS_AUTOCLEAR: number;
    LO_FLAGS_READ_ONLY: number; ETIMEDOUT: number;
  };

  // --- SEQPACKET sockets ----------------------------------------------------------------
  /** socket(AF_UNIX, SOCK_SEQPACKET|SOCK_NONBLOCK|SOCK_CLOEXEC) + bind(path) + listen. */
  listenSeqpacket(path: string, backlog: number): number;
  /**
   * accept4(SOCK_NONBLOCK|SOCK_CLOEXEC) on a listening fd. null on EAGAIN. Errors such as
   * EMFILE throw (the listener stays usable).
   */
  accept(listenFd: number): number | null;
  /**
   * Blocking connect of a new SOCK_SEQPACKET socket to path; the returned fd is
   * SOCK_CLOEXEC and set non-blocking after the connect when `nonblocking` is true.
   */
  connectSeqpacket(path: string, nonblocking: boolean): number;
  /**
   * recvmsg(MSG_CMSG_CLOEXEC | MSG_DONTWAIT) into buffer with room for up to 8 fds. null on
   * EAGAIN. bytes = 0 with no fds means the peer closed, or sent an empty packet: only
   * `credentials` tells them apart, on a socket with SO_PASSCRED.
   */
  recv(fd: number, buffer: Buffer): Received | null;
  /**
   * sendmsg(MSG_DONTWAIT | MSG_NOSIGNAL) of one packet, with one fd in SCM_RIGHTS when
   * sendFd >= 0. Returns false on EAGAIN (nothing was sent); throws on other errors
   * (EPIPE, ECONNRESET ...). Never closes sendFd.
   */
  send(fd: number, data: Buffer, sendFd: number): boolean;
  /**
   * send(), bracketed by two SIOCOUTQ reads: `outq` (at least 8 bytes) receives, as two
   * int32 in host order, the bytes the peer had not received before and after the sendmsg
   * (after = before when nothing was sent). Their difference is the packet's cost in the
   * send buffer, or less if the peer received something in between. Throws like send(),
   * including ETOOMANYREFS when the fds in flight exceed RLIMIT_NOFILE.
   */
  sendTracked(fd: number, data: Buffer, sendFd: number, outq: Uint8Array): boolean;
  /** SIOCOUTQ: bytes sent on this socket that the peer has not received (0 once it closed). */
  unreceivedBytes(fd: number): number;
  /** SIOCINQ: bytes waiting to be read on this socket (for tests: what a peer that does not read was sent). */
  unreadBytes(fd: number): number;
  /** shutdown(SHUT_RDWR): the peer reads what is queued, then end-of-file; it can send no more. */
  shutdown(fd: number): void;
  /** poll(2) without waiting reports POLLHUP: the peer closed (or shut down both ways). */
  peerHungUp(fd: number): boolean;
  /** Raises the send buffer to at least `bytes` as the kernel counts it; returns its size then. */
  ensureSendBuffer(fd: number, bytes: number): number;
  /** SO_PASSCRED, so that a zero-length packet can be told from end-of-file (Received.credentials). */
  setPassCredentials(fd: number): void;
  /** The soft RLIMIT_NOFILE (Infinity when unlimited): also the kernel's bound on this user's fds in flight. */
  openFileLimit(): number;
  /** SO_PEERCRED. */
  peerCredentials(fd: number): PeerCredentials;
  /** SO_PEERGROUPS: the peer's supplementary group ids. */
  peerGroups(fd: number): number[];
  /**
   * For socket activation: true when fd is an AF_UNIX SOCK_SEQPACKET socket in listening
   * state (getsockopt SO_DOMAIN, SO_TYPE, SO_ACCEPTCONN). Throws EBADF etc.
   */
  isListeningSeqpacket(fd: number): boolean;
  /** fcntl(F_SETFL, O_NONBLOCK) and FD_CLOEXEC on an inherited fd. */
  setNonblockCloexec(fd: number): void;

  // --- STREAM sockets (the Varlink front-end) -------------------------------------------
  /** socket(AF_UNIX, SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC) + bind(path) + listen. */
  listenStream(path: string, backlog: number): number;
  /**
   * Blocking connect of a new SOCK_STREAM socket to path (SOCK_CLOEXEC); set non-blocking
   * after the connect when `nonblocking` is true.
   */
  connectStream(path: string, nonblocking: boolean): number;
  /**
   * One sendmsg(MSG_DONTWAIT | MSG_NOSIGNAL) of data[offset..], with sendFd in SCM_RIGHTS
   * when sendFd >= 0. Returns the bytes written — when at least one was, the fd went with
   * the first of them — or 0 on EAGAIN (nothing sent, sendFd still the caller's). Throws
   * on other errors (EPIPE, ECONNRESET ...). Never closes sendFd. Read with recv().
   */
  sendStream(fd: number, data: Buffer, offset: number, sendFd: number): number;
  /**
   * sendStream(), bracketed by two SIOCOUTQ reads as in sendTracked(): `outq` receives the
   * bytes the peer had not read before and after (after = before when nothing was sent).
   * Each sendmsg on a unix stream makes skbs of its own, the fd riding on the first, so the
   * difference is this write's cost in the send buffer, or less if the peer read meanwhile.
   */
  sendStreamTracked(fd: number, data: Buffer, offset: number, sendFd: number, outq: Uint8Array): number;
  /** SO_DOMAIN, SO_TYPE and SO_ACCEPTCONN of a socket fd (throws ENOTSOCK, EBADF ...). */
  socketKind(fd: number): { domain: number; type: number; listening: boolean };
  /** The values socketKind() reports. */
  socketConstants: { AF_UNIX: number; SOCK_STREAM: number; SOCK_SEQPACKET: number };

  // --- kernel uevents -------------------------------------------------------------------
  /**
   * socket(AF_NETLINK, SOCK_DGRAM|SOCK_NONBLOCK|SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT) bound
   * to group 1. rcvbuf > 0 sets SO_RCVBUF (SO_RCVBUFFORCE when permitted); 0 keeps the
   * default.
   */
  openUeventSocket(rcvbuf: number): number;
  /** recvmsg on the uevent socket. null on EAGAIN; throws ENOBUFS on overrun. */
  recvUevent(fd: number, buffer: Buffer): ReceivedUevent | null;

  // --- readiness ------------------------------------------------------------------------
  Poller: PollerConstructor;

  // --- the process's memory ------------------------------------------------------------
  /**
   * malloc_trim(0): glibc returns the free pages of every arena to the kernel (free() alone
   * gives back only the top of the heap). True when anything was released.
   */
  trimMalloc(): boolean;

  /** FNV-1a (64 bits) of the bytes: tells a damaged file from the one written (src/code-cache.ts). */
  checksum(bytes: Uint8Array): bigint;

  // --- loop devices (for tests and benchmarks; the daemon never attaches anything) -------
  /**
   * Race-free claim of a free loop device: LOOP_CTL_GET_FREE, open /dev/loopN with
   * O_RDWR|O_EXCL|O_CLOEXEC, confirm it is unbound (LOOP_GET_STATUS64 gives ENXIO); retries
   * while another claimer wins (with LOOP_CTL_ADD, which makes a new device; so does a
   * LOOP_CTL_GET_FREE that finds none free). Returns the exclusive fd and N.
   */
  loopClaim(): { fd: number; index: number };
  /** LOOP_CONFIGURE on loopFd with backingFd, lo_flags, offset and sizelimit (bytes). */
  loopConfigure(loopFd: number, backingFd: number, flags: number, offset: number, sizelimit: number): void;
  /** LOOP_CLR_FD. */
  loopClear(loopFd: number): void;
  /** LOOP_CHANGE_FD. */
  loopChangeFd(loopFd: number, backingFd: number): void;
  /** LOOP_CTL_REMOVE of /dev/loop<index>. */
  loopRemove(index: number): void;
}

/**
 * The addon's functions that return probes give them as flat arrays (native/probe.h,
 * kProbeSlots: N-API property sets cost more than the rest of a result's trip); these are
 * their raw forms, shaped below.
 */
type Slots = readonly unknown[];
interface RawProbeFunctions {
  openDevice(path: string, flags: number): Promise<Slots>;
  openVerified(...args: Parameters<NativeBinding['openVerified']>): Promise<Slots>;
  probeFd(fd: number): Promise<Slots>;
  probeFdSync(fd: number): Slots;
}

/** Slots of a probe, and of an openVerified result before its values (native/probe.h, open-verify.cc). */
const PROBE_SLOTS = 9;
const VERIFIED_SLOTS = 3 + 2 * PROBE_SLOTS;

/** The probe in slots[at .. at + PROBE_SLOTS), in FdProbe's order. */
function probeAt(slots: Slots, at: number): FdProbe {
  return {
    mode: slots[at] as number,
    rdevMajor: slots[at + 1] as number,
    rdevMinor: slots[at + 2] as number,
    loopBound: slots[at + 3] as boolean | null,
    loopFlags: slots[at + 4] as number,
    diskseq: slots[at + 5] as bigint | null,
    diskseqErrno: slots[at + 6] as number,
    size: slots[at + 7] as bigint | null,
    readOnly: slots[at + 8] as boolean | null,
  };
}

function verifiedFd(slots: Slots): VerifiedFd {
  const lastAt = 3 + PROBE_SLOTS;
  return {
    fd: slots[0] as number,
    mismatch: slots[1] as string | null,
    partition: slots[2] as string | null,
    probe: probeAt(slots, 3),
    last: slots[lastAt] === null ? null : probeAt(slots, lastAt),
    values: slots.slice(VERIFIED_SLOTS) as (string | null)[],
  };
}

const require = createRequire(import.meta.filename);
const addon = require('../../build/Release/diskseqd.node') as Omit<NativeBinding, keyof RawProbeFunctions> & RawProbeFunctions;

/** The loaded addon. Import this, never the .node file. */
export const native: NativeBinding = {
  ...addon,
  openDevice: (path, flags) => addon.openDevice(path, flags).then((slots) => ({ fd: slots[0] as number, probe: probeAt(slots, 1) })),
  openVerified: (...args) => addon.openVerified(...args).then(verifiedFd),
  probeFd: (fd) => addon.probeFd(fd).then((slots) => probeAt(slots, 0)),
  probeFdSync: (fd) => probeAt(addon.probeFdSync(fd), 0),
};

/**
 * Closes fd off the event loop and ignores the outcome, for an fd nobody will use again
 * (a rejected open, an fd a client sent, a queued fd of a dropped connection): a last
 * close of a block device can flush or even detach a loop device, and close(2) releases
 * the descriptor even when it reports an error. The promise never rejects; await it where
 * the caller must not answer before the device is released.
 */
export function closeOffLoop(fd: number): Promise<void> {
  return native.closeAsync(fd).catch(() => undefined);
}
