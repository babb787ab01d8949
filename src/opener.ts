/**
 * Open-and-verify (docs/design.md, "Open and verify"), steps 1–4 in order, in one place.
 * The caller delivers the fd (step 5). An fd leaves this module only when it is bound to
 * partition N of disk instance X and the policy allows the peer to have it; on every other
 * path the fd is closed, off the event loop.
 *
 * One open costs one hop off the event loop: a single native job opens, probes, checks
 * a–d, reads the sysfs attributes the request's policy snapshot and `expect` name, and
 * probes again last (g). This module then checks a–d and g again on what the job returned
 * and decides e and f, reading nothing more and awaiting nothing before it returns.
 *
 * Each step returns what it established or throws: a Mismatch (this fd is not, or no
 * longer, the device the index pointed at: re-read sysfs and try once more) or a
 * BrokerError (the answer to the client).
 */
import { native, type FdProbe, type VerifiedFd } from '../native/index.js';
import { DEFAULT_DEVICE_WORK_LIMITS, DeviceWork } from './device-work.js';
import {
  BrokerError, busy, errnoOf, expectationFailed, hasErrnoCode, internal, notFound, permissionDenied, resourceExhausted, stale, timeout,
} from './errors.js';
import type { Logger } from './log.js';
import type { DeviceFacts, OpenIntent, Peer, Policy } from './policy/index.js';
import type { DiskEntry, PartitionEntry, Registry } from './registry.js';
import type { PrivateNodes } from './private-nodes.js';
import { UidShares } from './quotas.js';
import type { Sysfs } from './sysfs.js';
import { readFromParent } from '../proto/attribute-keys.js';
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
  /** How to close the fd if it is never delivered (off the loop, charged to its disk). */
  dispose: (fd: number) => void;
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
export interface Target {
  disk: DiskEntry;
  part: PartitionEntry | undefined;
  node: DiskEntry | PartitionEntry;
}

/** The attributes the open job reads: keys, and bit i set when keys[i] is the parent disk's. */
interface ReadPlan {
  keys: string[];
  fromParent: number;
}

/** Bounds on waiting for devices to appear. */
export interface WaitLimits {
  /** Longer wait_ms values are cut to this. */
  maxWaitMs: number;
  /** Requests that may wait at once, per uid and in all (src/quotas.ts); beyond them RESOURCE_EXHAUSTED. */
  waits: UidShares;
}

/** Open errors that mean the device went away under us. */
const GONE = ['ENOENT', 'ENXIO', 'ENODEV', 'ENOMEDIUM'];

export class Opener {
  /** Read plans of requests without `expect`, per key set of a policy snapshot: [whole disk, partition]. */
  private readonly plans = new WeakMap<ReadonlySet<string>, [ReadPlan, ReadPlan]>();

  constructor(
    private readonly registry: Registry,
    private readonly sysfs: Sysfs,
    private readonly policy: () => Policy,
    private readonly privateNodes: PrivateNodes,
    private readonly log: Logger,
    private readonly waitLimits: WaitLimits = { maxWaitMs: 600_000, waits: new UidShares('waiting opens', { total: 4096, perUid: 1024 }, 25) },
    /** Every job that can block on a device goes through here (docs/design.md, "Hung devices"). */
    readonly work: DeviceWork = new DeviceWork(DEFAULT_DEVICE_WORK_LIMITS, log),
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
    // One policy snapshot decides the whole request: the keys the job reads are chosen from
    // it, and both decisions use it, whatever a SIGHUP reload does meanwhile.
    const policy = this.policy();
    // No wait asked: no async call either (its promise and frame: 343 of the ~14,500 bytes an
    // open allocated, traced with --trace-gc-nvp).
    if (params.waitMs > 0) await this.waitUntilPresent(params, peer, policy, signal);
    try {
      return await this.attempt(params, peer, policy, trace);
    } catch (error) {
      if (!(error instanceof Mismatch)) throw error;
      this.log.debug({ why: error.message, name: error.device }, 'verification failed; re-reading sysfs');
      this.registry.refresh(error.device);
      trace.retried = true;
    }
    try {
      return await this.attempt(params, peer, policy, trace);
    } catch (error) {
      if (!(error instanceof Mismatch)) throw error;
      this.registry.refresh(error.device);
      const what = `diskseq ${params.diskseq}${partSuffix(params)}`;
      if (error.gone || this.findTarget(params) === undefined) throw notFound(`${what} is gone`, error.osErrno);
      throw stale(`${what} does not verify: ${error.message}`, error.osErrno);
    }
  }

  /** One pass of steps 1–4: a verified fd, or a Mismatch or BrokerError thrown. */
  private async attempt(params: OpenParams, peer: Peer, policy: Policy, trace: OpenTrace): Promise<VerifiedOpen> {
    const target = this.resolve(params);
    trace.device = { name: target.node.name, major: target.node.major, minor: target.node.minor };
    const intent: OpenIntent = { access: params.access, exclusive: params.exclusive };
    this.preAuthorise(target, peer, policy, intent, trace);
    const plan = this.readPlan(policy.attributeKeysFor(peer), params, target);
    const job = await this.openAndCheck(target, peer, params, plan);
    // From here to the return nothing is awaited: the caller sends the fd in this turn.
    try {
      return this.verify(job, plan, target, params, peer, policy, intent, trace);
    } catch (error) {
      // Before the answer: an O_EXCL open must not outlive its refusal.
      if (job.fd >= 0) await this.work.close(diskKey(target.disk), target.disk.name, peer.uid, job.fd);
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
      throw notFound(`diskseq ${params.diskseq} (${disk.name}) has no partition ${params.partition}${partscanHint(disk)}`);
    }
    return { disk, part, node: part };
  }

  /**
   * Step 2: never open (let alone O_EXCL) a device for a peer that no rule could allow to
   * have it. Judged on the candidate's attributes as sysfs shows them under its name, read
   * here only if a rule that could match this peer looks at them (never for root).
   */
  private preAuthorise(target: Target, peer: Peer, policy: Policy, intent: OpenIntent, trace: OpenTrace): void {
    const candidate = this.sysfs.deviceByName(target.node.name, target.part !== undefined);
    const facts = deviceFacts(target, (key) => candidate.attribute(key), () => candidate.attribute('ro') === '1');
    const decision = policy.decide(peer, facts, intent);
    trace.rule = decision.rule;
    if (!decision.allowed) throw permissionDenied(decision.reason);
  }

  /**
   * The attributes e and f will look at: the keys the policy snapshot may read for this
   * peer, and the expected ones (`partition` is always read).
   */
  private readPlan(policyKeys: ReadonlySet<string>, params: OpenParams, target: Target): ReadPlan {
    const isPartition = target.part !== undefined;
    let plan: ReadPlan;
    if (params.expect.size === 0) {
      let cached = this.plans.get(policyKeys);
      if (cached === undefined) this.plans.set(policyKeys, (cached = [makePlan(policyKeys, false), makePlan(policyKeys, true)]));
      plan = cached[isPartition ? 1 : 0];
    } else {
      plan = makePlan(new Set([...policyKeys, ...params.expect.keys()]), isPartition);
    }
    // `removable` of the disk is read once per disk instance, at its first open.
    if (target.disk.removable !== undefined) return plan;
    return { keys: [...plan.keys, 'removable'], fromParent: plan.fromParent | (isPartition ? 1 << plan.keys.length : 0) };
  }

  /**
   * Step 3 and the native half of step 4, in one job off the event loop. Root gets the
   * kernel's devtmpfs name (root can reopen any node anyway: its grant is advisory). Any
   * other peer gets a private node that nobody but the daemon can open (step f lets the
   * peer reopen it only with an exclusive grant), so a reopen through /dev/fd/N yields no
   * more than was granted; the job makes it, opens it and unlinks it. Open errors become
   * a Mismatch (gone) or the protocol's code.
   */
  private async openAndCheck(target: Target, peer: Peer, params: OpenParams, plan: ReadPlan): Promise<VerifiedFd> {
    const { disk, node } = target;
    const checks = disk.isLoop ? (params.partition > 0 ? 3 : 1) : 0; // bound loop; and LO_FLAGS_PARTSCAN
    const { path, gid, mode } = peer.uid === 0 ? { path: `/dev/${node.devname}`, gid: -1, mode: 0 } : this.privateNodes.node();
    const key = diskKey(disk);
    try {
      return await this.work.run(key, disk.name, peer.uid,
        () => native.openVerified(path, openFlags(params), gid, mode, node.major, node.minor, params.diskseq, params.partition, checks,
          this.sysfs.root, plan.keys, plan.fromParent),
        (late) => {
          // Answered TIMEOUT meanwhile: what the job opened belongs to nobody.
          if (late.fd >= 0) void this.work.close(key, disk.name, peer.uid, late.fd);
        });
    } catch (error) {
      if (error instanceof BrokerError) throw error;
      if (hasErrnoCode(error, ...GONE)) throw new Mismatch(node.name, `open: ${(error as Error).message}`, errnoOf(error), true);
      throw openError(error);
    }
  }

  /**
   * Step 4 on what the job returned, a–g in order, synchronously. Returns the verified
   * device; throws Mismatch (a–d, g) or BrokerError (e, f). The caller closes the fd when
   * this throws (unless the job already did: a failed a–d or g).
   */
  private verify(job: VerifiedFd, plan: ReadPlan, target: Target, params: OpenParams, peer: Peer, policy: Policy,
    intent: OpenIntent, trace: OpenTrace): VerifiedOpen {
    const name = target.node.name;
    if (job.mismatch !== null) throw new Mismatch(name, job.mismatch); // the job closed the fd
    // a–d and g again on the job's probes: never trust one side alone.
    checkIdentity(job.probe, target, params, job.partition, name);
    const changed = job.last === null ? 'no re-probe' : liveProblem(job.last, target, params);
    if (changed !== undefined) throw new Mismatch(name, `re-check: ${changed}`);
    const readOnly = job.probe.readOnly;
    if (readOnly === null) throw internal(`${name}: BLKROGET failed`);

    // e. every `expect` attribute holds as the job read it, after the open;
    const reported: Record<string, string> = {};
    const attribute = (key: string): string | undefined => {
      const at = key === 'partition' ? -1 : plan.keys.indexOf(key);
      // Never "absent" for a key the job did not read: absent never matches a deny rule.
      if (at < 0 && key !== 'partition') throw internal(`attribute ${key} was not read`);
      const value = at < 0 ? job.partition : job.values[at]!;
      if (value === null) return undefined;
      reported[key] = value;
      return value;
    };
    const verified = deviceFacts(target, attribute, () => readOnly);
    for (const [key, want] of params.expect) {
      const have = verified.attribute(key);
      if (have !== want) {
        throw expectationFailed(`${key} is ${have === undefined ? 'absent' : JSON.stringify(have)}, expected ${JSON.stringify(want)}`);
      }
    }
    // f. authorise on the verified device, with the request's policy snapshot — this
    //    decision is the one that counts.
    const decision = policy.decide(peer, verified, intent);
    trace.rule = decision.rule;
    if (!decision.allowed) throw permissionDenied(decision.reason);
    //    A reopen through /dev/fd/N could claim the device with O_EXCL: only a peer that
    //    may open it exclusively may reopen it (docs/design.md, "Reopening and private nodes").
    if (peer.uid !== 0 && policy.grantsReopen(peer, verified, params.access)) {
      this.privateNodes.allowReopen(job.fd, peer.gid, params.access);
    }
    // g was the job's last step (checked above): nothing was read after it.
    if (target.disk.removable === undefined) target.disk.removable = job.values[plan.keys.length - 1] === '1';
    const key = diskKey(target.disk);
    return {
      fd: job.fd,
      dispose: (fd) => void this.work.close(key, target.disk.name, peer.uid, fd),
      device: {
        diskseq: params.diskseq, partition: params.partition, name,
        major: job.probe.rdevMajor, minor: job.probe.rdevMinor, sizeBytes: job.last!.size ?? 0n,
        readOnly, removable: target.disk.removable, driver: target.disk.driver, attributes: reported,
      },
    };
  }

  /**
   * With wait_ms (the caller calls this only then): waits until X (and N) is in the index,
   * or answers at once when it can no longer appear: an absent X at or below the highest
   * diskseq seen, or the awaited partition's disk gone. The full open-and-verify follows
   * either way.
   */
  private async waitUntilPresent(params: OpenParams, peer: Peer, policy: Policy, signal: AbortSignal | undefined): Promise<void> {
    const disk = this.indexedDisk(params.diskseq);
    if (disk !== undefined && (params.partition === 0 || disk.partitions.has(params.partition))) return;
    if (disk !== undefined && disk.isLoop && !disk.partscan) return; // a partition of it: never served
    if (disk === undefined && !this.registry.couldAppear(params.diskseq)) return; // step 1: NOT_FOUND
    // Only a peer some rule could ever allow a device may wait, within its uid's share
    // (docs/design.md, "Limits"): the device may not exist yet, so the peer alone decides.
    if (!policy.mayEverAllow(peer)) {
      throw permissionDenied(`no policy rule could allow uid ${peer.uid} a device, so it may not wait for one`);
    }
    const { waits } = this.waitLimits;
    const refusal = waits.refusal(peer.uid);
    if (refusal !== undefined) throw resourceExhausted(refusal);
    const waitMs = Math.min(params.waitMs, this.waitLimits.maxWaitMs);
    waits.take(peer.uid, 1);
    let failure: Awaited<ReturnType<Registry['waitFor']>>;
    try {
      failure = await this.registry.waitFor(params.diskseq, params.partition, waitMs, signal, peer.uid);
    } finally {
      waits.give(peer.uid);
    }
    if (failure === 'timeout') {
      const now = this.registry.find(params.diskseq);
      const hint = now !== undefined && params.partition > 0 ? partscanHint(now) : '';
      throw timeout(`diskseq ${params.diskseq}${partSuffix(params)} did not appear within ${waitMs} ms${hint}`);
    }
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

/** The disk whose open_mutex a job on `disk` or any of its partitions takes (docs/design.md, "Hung devices"). */
function diskKey(disk: DiskEntry): string {
  return `${disk.major}:${disk.minor}`;
}

/** The job's read plan for `keys` (`partition` left out: the job always reads it, for d). */
function makePlan(keys: Iterable<string>, isPartition: boolean): ReadPlan {
  const plan: ReadPlan = { keys: [], fromParent: 0 };
  for (const key of keys) {
    if (key === 'partition') continue;
    if (isPartition && readFromParent(key)) plan.fromParent |= 1 << plan.keys.length;
    plan.keys.push(key);
  }
  return plan;
}

/**
 * Steps a–d on the probe taken right after the open and the `partition` attribute the job
 * read after it: a block device with the resolved dev_t; live (a bound loop, non-empty);
 * diskseq X; partition N (0: not a partition). Throws a Mismatch naming what is wrong.
 */
function checkIdentity(probe: FdProbe, target: Target, params: OpenParams, partition: string | null, name: string): void {
  const { node } = target;
  const { S_IFMT, S_IFBLK } = native.constants;
  if ((probe.mode & S_IFMT) !== S_IFBLK) throw new Mismatch(name, 'not a block device');
  if (probe.rdevMajor !== node.major || probe.rdevMinor !== node.minor) {
    throw new Mismatch(name, `dev_t ${probe.rdevMajor}:${probe.rdevMinor}, expected ${node.major}:${node.minor}`);
  }
  const live = liveProblem(probe, target, params);
  if (live !== undefined) throw new Mismatch(name, live);
  if (params.partition === 0 && partition !== null) throw new Mismatch(name, `is partition ${partition}, expected a whole disk`);
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

/** The policy's view of a target, its attributes and read-only state as `attribute` and `readOnly` give them. */
export function deviceFacts(target: Target, attribute: (key: string) => string | undefined, readOnly: () => boolean): DeviceFacts {
  return new TargetFacts(target, attribute, readOnly);
}

/**
 * A class rather than an object literal: a literal with a getter is built through V8's
 * slow accessor path on every request (2% of the JS thread under load, perf), where this
 * getter lives once on the prototype.
 */
class TargetFacts implements DeviceFacts {
  readonly name: string;
  readonly partition: number;
  readonly driver: string;
  readonly isLoop: boolean;

  constructor(target: Target, readonly attribute: (key: string) => string | undefined, private readonly readOnlyOf: () => boolean) {
    this.name = target.node.name;
    this.partition = target.part?.partition ?? 0;
    this.driver = target.disk.driver;
    this.isLoop = target.disk.isLoop;
  }

  /** Asked only by a rule that looks at it: before the open, reading it costs a sysfs read. */
  get readOnly(): boolean {
    return this.readOnlyOf();
  }
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

/** Why a partition of `disk` is never served, or nothing. */
function partscanHint(disk: DiskEntry): string {
  return disk.isLoop && !disk.partscan ? ' (loop device without LO_FLAGS_PARTSCAN: its partitions could outlive it, so they are never served)' : '';
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
