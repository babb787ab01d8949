/**
 * Open-and-verify (docs/design.md, "Open and verify"), steps 1–4 in order, in one place.
 * The caller delivers the fd (step 5). An fd leaves this module only when it is bound to
 * partition N of disk instance X and the policy allows the peer to have it; on every other
 * path the fd is closed, off the event loop.
 *
 * Each step returns what it established or throws: a Mismatch (this fd is not, or no
 * longer, the device the index pointed at: re-read sysfs and try once more) or a
 * BrokerError (the answer to the client).
 */
import { closeOffLoop, native, type FdProbe, type OpenedDevice } from '../native/index.js';
import {
  busy, errnoOf, expectationFailed, hasErrnoCode, internal, notFound, permissionDenied, resourceExhausted, stale, timeout, type BrokerError,
} from './errors.js';
import type { Logger } from './log.js';
import type { DeviceFacts, OpenIntent, Peer, Policy } from './policy/index.js';
import type { DiskEntry, PartitionEntry, Registry } from './registry.js';
import type { PrivateNodes } from './private-nodes.js';
import type { Sysfs, SysfsDevice } from './sysfs.js';
import type { AccessMode, DeviceInfo } from '../proto/contract.js';

/** A validated open request. */
export interface OpenParams {
  diskseq: bigint;
  partition: number;
  access: AccessMode;
  exclusive: boolean;
  direct: boolean;
  nonblock: boolean;
  sync: boolean;
  dsync: boolean;
  /** Attribute key (from the allow-list) -> value that must hold. */
  expect: ReadonlyMap<string, string>;
  /** How long to wait for a device (or partition) that can still appear; 0: do not wait. */
  waitMs: number;
}


/** A verified fd, owned by the caller from here on, and what it was verified to be. */
export interface VerifiedOpen {
  fd: number;
  device: DeviceInfo;
}

/** Filled in as the request progresses, for the audit line (also on failure). */
export interface OpenTrace {
  device?: { name: string; major: number; minor: number };
  rule?: string;
  retried?: boolean;
}

/** The client went away while its request waited; there is nobody to answer. */
export class RequestCancelled extends Error {
  constructor() {
    super('the client closed its connection while the request waited');
    this.name = 'RequestCancelled';
  }
}

/**
 * Verification found that the device is not (or no longer) what the index said: the one
 * outcome that is retried, once, after re-reading the device from sysfs.
 */
class Mismatch extends Error {
  /**
   * @param device the sysfs name to re-read before the retry
   * @param gone the open itself failed with ENOENT/ENXIO/ENODEV/ENOMEDIUM: the device went away
   */
  constructor(readonly device: string, why: string, readonly osErrno = 0, readonly gone = false) {
    super(why);
    this.name = 'Mismatch';
  }
}

/** Where step 1 resolved X (and N) to: the disk, the partition if N > 0, and the node to open. */
interface Target {
  disk: DiskEntry;
  part: PartitionEntry | undefined;
  node: DiskEntry | PartitionEntry;
}

/** Bounds on waiting for devices to appear. */
export interface WaitLimits {
  /** Longer wait_ms values are cut to this. */
  maxWaitMs: number;
  /** Requests that may wait at once, daemon-wide; beyond it RESOURCE_EXHAUSTED. */
  maxWaiting: number;
}

/** Open errors that mean the device went away under us. */
const GONE = ['ENOENT', 'ENXIO', 'ENODEV', 'ENOMEDIUM'];

export class Opener {
  constructor(
    private readonly registry: Registry,
    private readonly sysfs: Sysfs,
    private readonly policy: () => Policy,
    private readonly privateNodes: PrivateNodes,
    private readonly log: Logger,
    private readonly waitLimits: WaitLimits = { maxWaitMs: 600_000, maxWaiting: 4096 },
  ) {}

  /**
   * Opens partition `partition` (0: whole disk) of disk instance `diskseq` for `peer`.
   * Throws BrokerError: NOT_FOUND, STALE, PERMISSION_DENIED, BUSY, EXPECTATION_FAILED,
   * TIMEOUT, RESOURCE_EXHAUSTED, INTERNAL; RequestCancelled when `signal` ends a wait. A
   * mismatch (steps a–d, g, or the device gone at the open) is retried once after
   * re-reading sysfs; the second one is NOT_FOUND when X (or N) is gone, else STALE.
   */
  async open(params: OpenParams, peer: Peer, trace: OpenTrace, signal?: AbortSignal): Promise<VerifiedOpen> {
    // Never absent for a device the first scan has not reached yet (docs/design.md, "Registry").
    if (this.registry.scanPending(params.diskseq, params.partition)) await this.registry.indexed();
    await this.waitUntilPresent(params, signal);
    try {
      return await this.attempt(params, peer, trace);
    } catch (error) {
      if (!(error instanceof Mismatch)) throw error;
      this.log.debug({ why: error.message, name: error.device }, 'verification failed; re-reading sysfs');
      this.registry.refresh(error.device);
      trace.retried = true;
    }
    try {
      return await this.attempt(params, peer, trace);
    } catch (error) {
      if (!(error instanceof Mismatch)) throw error;
      this.registry.refresh(error.device);
      const what = `diskseq ${params.diskseq}${partSuffix(params)}`;
      if (error.gone || this.findTarget(params) === undefined) throw notFound(`${what} is gone`, error.osErrno);
      throw stale(`${what} does not verify: ${error.message}`, error.osErrno);
    }
  }

  /** One pass of steps 1–4: a verified fd, or a Mismatch or BrokerError thrown. */
  private async attempt(params: OpenParams, peer: Peer, trace: OpenTrace): Promise<VerifiedOpen> {
    const target = this.resolve(params);
    trace.device = { name: target.node.name, major: target.node.major, minor: target.node.minor };
    const intent: OpenIntent = { access: params.access, exclusive: params.exclusive };
    this.preAuthorise(target, peer, intent, trace);
    const { fd, probe } = await this.openTarget(target, peer, params);
    try {
      return await this.verify(fd, probe, target, params, peer, intent, trace);
    } catch (error) {
      await closeOffLoop(fd); // before the answer: an O_EXCL open must not outlive its refusal
      throw error;
    }
  }

  /** Step 1: X (and N) to an index entry, or NOT_FOUND. */
  private resolve(params: OpenParams): Target {
    const disk = this.indexedDisk(params.diskseq);
    if (disk === undefined) throw notFound(`no disk with diskseq ${params.diskseq}`);
    if (params.partition === 0) return { disk, part: undefined, node: disk };
    const part = disk.partitions.get(params.partition);
    if (part === undefined) {
      const why = disk.isLoop && !disk.partscan ? ' (loop device without LO_FLAGS_PARTSCAN: its partitions could outlive it)' : '';
      throw notFound(`diskseq ${params.diskseq} (${disk.name}) has no partition ${params.partition}${why}`);
    }
    return { disk, part, node: part };
  }

  /**
   * Step 2: never open (let alone O_EXCL) a device for a peer that no rule could allow to
   * have it. Judged on the candidate's attributes as sysfs shows them under its name.
   */
  private preAuthorise(target: Target, peer: Peer, intent: OpenIntent, trace: OpenTrace): void {
    const candidate = deviceFacts(target, this.sysfs.deviceByName(target.node.name, target.part !== undefined), null);
    const decision = this.policy().decide(peer, candidate, intent);
    trace.rule = decision.rule;
    if (!decision.allowed) throw permissionDenied(decision.reason);
  }

  /**
   * Step 3, off the event loop. Root gets the kernel's devtmpfs name (root can reopen any
   * node anyway: its grant is advisory). Any other peer gets a private node whose group
   * and mode carry the grant, so a reopen through /dev/fd/N yields no more than was granted.
   * Returns the fd (the caller's from here on) with the probe taken right after the open.
   */
  private async openTarget(target: Target, peer: Peer, params: OpenParams): Promise<OpenedDevice> {
    const { node } = target;
    const flags = openFlags(params);
    try {
      if (peer.uid === 0) return await native.openDevice(`/dev/${node.devname}`, flags);
      // A private node for a removed loop minor would re-create that device when opened
      // (CONFIG_BLOCK_LEGACY_AUTOLOAD): make sure sysfs still lists this dev_t.
      const now = this.sysfs.readUevent(node.name);
      if (now === null || now.major !== node.major || now.minor !== node.minor) {
        throw new Mismatch(node.name, `${node.name} is no longer ${node.major}:${node.minor} in sysfs`, 0, true);
      }
      return await this.privateNodes.open(node.major, node.minor, peer.gid, params.access, flags);
    } catch (error) {
      if (error instanceof Mismatch) throw error;
      if (hasErrnoCode(error, ...GONE)) throw new Mismatch(node.name, `open: ${(error as Error).message}`, errnoOf(error), true);
      throw openError(error);
    }
  }

  /**
   * Step 4 on the open fd, a–g in order. Returns the verified device; throws Mismatch
   * (a–d, g) or BrokerError (e, f). The caller closes fd when this throws.
   */
  private async verify(fd: number, probe: FdProbe, target: Target, params: OpenParams, peer: Peer,
    intent: OpenIntent, trace: OpenTrace): Promise<VerifiedOpen> {
    // a–d on the probe taken right after the open; sysfs read by the fd's own dev_t.
    const name = target.node.name;
    const device = this.sysfs.deviceByDevt(probe.rdevMajor, probe.rdevMinor, target.part !== undefined);
    checkIdentity(probe, target, params, device, name);

    // e. every `expect` attribute holds when read now;
    const reported: Record<string, string> = {};
    const verified = deviceFacts(target, device, probe.readOnly, reported);
    const removable = (target.disk.removable ??= this.sysfs.deviceByName(target.disk.name, false).attribute('removable') === '1');
    for (const [key, want] of params.expect) {
      const have = verified.attribute(key);
      if (have !== want) {
        throw expectationFailed(`${key} is ${have === undefined ? 'absent' : JSON.stringify(have)}, expected ${JSON.stringify(want)}`);
      }
    }
    // f. authorise on the verified device — this decision is the one that counts.
    const decision = this.policy().decide(peer, verified, intent);
    trace.rule = decision.rule;
    if (!decision.allowed) throw permissionDenied(decision.reason);

    // g. liveness and diskseq again, after the last sysfs read, right before delivery: the
    //    holder of a read-only loop can LOOP_CHANGE_FD it between c and here.
    const last = await native.probeFd(fd);
    const changed = liveProblem(last, target, params);
    if (changed !== undefined) throw new Mismatch(name, `re-check: ${changed}`);

    return {
      fd,
      device: {
        diskseq: params.diskseq, partition: params.partition, name,
        major: probe.rdevMajor, minor: probe.rdevMinor, sizeBytes: last.size ?? 0n,
        readOnly: verified.readOnly, removable, driver: verified.driver, attributes: reported,
      },
    };
  }

  /**
   * With wait_ms: waits until X (and N) is in the index, or answers at once when it can no
   * longer appear: an absent X at or below the highest diskseq seen, or the awaited
   * partition's disk gone. The full open-and-verify follows either way.
   */
  private async waitUntilPresent(params: OpenParams, signal: AbortSignal | undefined): Promise<void> {
    if (params.waitMs === 0) return;
    const disk = this.indexedDisk(params.diskseq);
    if (disk !== undefined && (params.partition === 0 || disk.partitions.has(params.partition))) return;
    if (this.registry.waiting >= this.waitLimits.maxWaiting) {
      throw resourceExhausted(`too many waiting requests (limit ${this.waitLimits.maxWaiting})`);
    }
    const waitMs = Math.min(params.waitMs, this.waitLimits.maxWaitMs);
    const failure = await this.registry.waitFor(params.diskseq, params.partition, waitMs, signal);
    if (failure === 'timeout') throw timeout(`diskseq ${params.diskseq}${partSuffix(params)} did not appear within ${waitMs} ms`);
    if (failure === 'cancelled') throw new RequestCancelled();
    // 'gone' and null: step 1 gives the answer (NOT_FOUND, or the device).
  }

  /**
   * The indexed disk with this diskseq. A miss is answered only after the uevents the
   * kernel has already sent are handled (docs/design.md, "Registry"): handling them may
   * index devices, wake waiters and notify watchers, here on the request's path.
   */
  private indexedDisk(diskseq: bigint): DiskEntry | undefined {
    const hit = this.registry.find(diskseq);
    if (hit !== undefined) return hit;
    this.registry.handlePendingUevents();
    return this.registry.find(diskseq);
  }

  /** X (and N) in the index now, without touching sysfs or the uevent socket. */
  private findTarget(params: OpenParams): Target | undefined {
    const disk = this.registry.find(params.diskseq);
    if (disk === undefined) return undefined;
    if (params.partition === 0) return { disk, part: undefined, node: disk };
    const part = disk.partitions.get(params.partition);
    return part === undefined ? undefined : { disk, part, node: part };
  }
}

/**
 * Steps a–d on the probe taken right after the open: a block device with the resolved
 * dev_t; live (a bound loop, non-empty); diskseq X; partition N (0: not a partition).
 * Throws a Mismatch naming what is wrong.
 */
function checkIdentity(probe: FdProbe, target: Target, params: OpenParams, device: SysfsDevice, name: string): void {
  const { node } = target;
  const { S_IFMT, S_IFBLK } = native.constants;
  if ((probe.mode & S_IFMT) !== S_IFBLK) throw new Mismatch(name, 'not a block device');
  if (probe.rdevMajor !== node.major || probe.rdevMinor !== node.minor) {
    throw new Mismatch(name, `dev_t ${probe.rdevMajor}:${probe.rdevMinor}, expected ${node.major}:${node.minor}`);
  }
  const live = liveProblem(probe, target, params);
  if (live !== undefined) throw new Mismatch(name, live);
  // Read after the open: an open partition cannot be deleted (BLKPG gives EBUSY).
  const partition = device.attribute('partition');
  if (params.partition === 0 && partition !== undefined) throw new Mismatch(name, `is partition ${partition}, expected a whole disk`);
  if (params.partition > 0 && partition !== String(params.partition)) {
    throw new Mismatch(name, `is partition ${partition ?? 'none'}, expected ${params.partition}`);
  }
}

/** Steps b and c: what is wrong with liveness or the diskseq, or undefined. Liveness first: an unbound loop fd is not pinned. */
function liveProblem(probe: FdProbe, target: Target, params: OpenParams): string | undefined {
  if (target.disk.isLoop) {
    if (probe.loopBound !== true) return 'loop device is not bound';
    if (params.partition > 0 && (probe.loopFlags & native.constants.LO_FLAGS_PARTSCAN) === 0) {
      return 'loop device lost LO_FLAGS_PARTSCAN';
    }
  }
  if (probe.size === null || probe.size <= 0n) return 'device is empty';
  if (probe.diskseq !== params.diskseq) return `diskseq is ${probe.diskseq ?? `unreadable (errno ${probe.diskseqErrno})`}`;
  return undefined;
}

/**
 * The policy's view of a target, its attributes read through `device` on demand.
 * `readOnly`: the fd's BLKROGET answer when there is an fd, else the `ro` attribute.
 * `reported`, when given, collects every attribute read, for the Opened response.
 */
function deviceFacts(target: Target, device: SysfsDevice, readOnly: boolean | null, reported?: Record<string, string>): DeviceFacts {
  const attribute = (key: string): string | undefined => {
    const value = device.attribute(key);
    if (value !== undefined && reported !== undefined) reported[key] = value;
    return value;
  };
  return {
    name: target.node.name,
    partition: target.part?.partition ?? 0,
    driver: target.disk.driver,
    isLoop: target.disk.isLoop,
    get readOnly() {
      return readOnly ?? attribute('ro') === '1';
    },
    attribute,
  };
}

/** open(2) flags for the request; the addon adds O_CLOEXEC, O_NOCTTY and O_NOFOLLOW. */
function openFlags(params: OpenParams): number {
  const c = native.constants;
  let flags = params.access === 'read-write' ? c.O_RDWR : params.access === 'write-only' ? c.O_WRONLY : c.O_RDONLY;
  if (params.exclusive) flags |= c.O_EXCL;
  if (params.direct) flags |= c.O_DIRECT;
  if (params.nonblock) flags |= c.O_NONBLOCK;
  if (params.sync) flags |= c.O_SYNC;
  if (params.dsync) flags |= c.O_DSYNC;
  return flags;
}

function partSuffix(params: OpenParams): string {
  return params.partition > 0 ? ` partition ${params.partition}` : '';
}

/** Maps an open(2) failure other than "gone" to the protocol's code; errno travels along. */
function openError(error: unknown): BrokerError {
  const message = `open: ${(error as Error).message}`;
  if (hasErrnoCode(error, 'EBUSY')) return busy(message, errnoOf(error));
  if (hasErrnoCode(error, 'EACCES', 'EPERM', 'EROFS')) return permissionDenied(message, errnoOf(error));
  return internal(message, errnoOf(error));
}
