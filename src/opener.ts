/**
 * Open-and-verify (DESIGN.md, "The promise, and how the opener keeps it"), steps 1–4 in
 * order, in one place. The caller delivers the fd (step 5). An fd leaves this module only
 * when it is bound to partition N of disk instance X and the policy allows the peer to have
 * it; on every other path the fd is closed, off the event loop.
 */
import { closeOffLoop, native, type FdProbe } from '../native/index.js';
import {
  busy, errnoOf, expectationFailed, hasErrnoCode, internal, notFound, permissionDenied, resourceExhausted, stale, timeout, type BrokerError,
} from './errors.js';
import type { Logger } from './log.js';
import type { DeviceFacts, OpenIntent, Peer, Policy } from './policy/index.js';
import type { DiskEntry, PartitionEntry, Registry } from './registry.js';
import type { PrivateNodes } from './private-nodes.js';
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

/** Where the candidate stands after one attempt that did not end in a decision. */
interface Mismatch {
  kind: 'mismatch';
  /** The sysfs name to re-read before the retry. */
  name: string;
  why: string;
  osErrno: number;
  /** The open itself failed with ENOENT/ENXIO/ENODEV/ENOMEDIUM: the device went away. */
  gone?: boolean;
}

type Target = { disk: DiskEntry; part: PartitionEntry | undefined };

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
   * INTERNAL. A verification failure (steps a–d, g) is retried once after re-reading sysfs.
   */
  async open(params: OpenParams, peer: Peer, trace: OpenTrace, signal?: AbortSignal): Promise<VerifiedOpen> {
    await this.waitUntilPresent(params, signal);
    const first = await this.attempt(params, peer, trace);
    if (first.kind !== 'mismatch') return first;
    this.log.debug({ why: first.why, name: first.name }, 'verification failed; re-reading sysfs');
    this.registry.refresh(first.name);
    trace.retried = true;
    const second = await this.attempt(params, peer, trace);
    if (second.kind !== 'mismatch') return second;
    this.registry.refresh(second.name);
    if (second.gone === true || this.findTarget(params) === undefined) {
      throw notFound(`diskseq ${params.diskseq}${partSuffix(params)} is gone`, second.osErrno);
    }
    throw stale(`diskseq ${params.diskseq}${partSuffix(params)} does not verify: ${second.why}`, second.osErrno);
  }

  private async attempt(params: OpenParams, peer: Peer, trace: OpenTrace): Promise<(VerifiedOpen & { kind: 'done' }) | Mismatch> {
    // 1. Resolve X (and N) to a dev_t through the registry.
    const target = this.resolve(params);
    const node = target.part ?? target.disk;
    trace.device = { name: node.name, major: node.major, minor: node.minor };
    const intent: OpenIntent = { access: params.access, exclusive: params.exclusive };

    // 2. Pre-authorise on the candidate's sysfs facts: never open (let alone O_EXCL) a
    //    device for a peer that no rule could allow to have it.
    const candidate = this.facts(target, (key, fromParent) => this.sysfs.attributeByName(fromParent ? target.disk.name : node.name, key, false));
    const pre = this.policy().decide(peer, candidate, intent);
    trace.rule = pre.rule;
    if (!pre.allowed) throw permissionDenied(pre.reason);

    // 3. Open. Only dev_ts sysfs listed get here.
    let fd: number;
    let probe: FdProbe;
    try {
      ({ fd, probe } = await this.openNode(node, peer, params));
    } catch (error) {
      if (hasErrnoCode(error, ...GONE)) {
        return { kind: 'mismatch', name: node.name, why: `open: ${(error as Error).message}`, osErrno: errnoOf(error), gone: true };
      }
      throw openError(error);
    }

    // 4. Verify on the fd. From here every path either returns the fd or closes it.
    try {
      const wrong = this.verifyIdentity(probe, target, params);
      if (wrong !== undefined) return await this.reject(fd, { kind: 'mismatch', name: node.name, why: wrong, osErrno: 0 });

      // e. every `expect` attribute holds when read now;
      // f. authorise on the verified device — this decision is the one that counts.
      const read: Record<string, string> = {};
      const verified = this.facts(target, (key, fromParent) => {
        const value = this.sysfs.attributeByDevt(probe.rdevMajor, probe.rdevMinor, key, fromParent);
        if (value !== undefined) read[key] = value;
        return value;
      }, probe.readOnly);
      for (const [key, want] of params.expect) {
        const have = verified.attribute(key);
        if (have !== want) {
          throw expectationFailed(
            `${key} is ${have === undefined ? 'absent' : JSON.stringify(have)}, expected ${JSON.stringify(want)}`);
        }
      }
      const decision = this.policy().decide(peer, verified, intent);
      trace.rule = decision.rule;
      if (!decision.allowed) throw permissionDenied(decision.reason);
      const removable = this.registry.isRemovable(target.disk);

      // g. Re-check liveness and diskseq after the last sysfs read, right before delivery:
      //    the holder of a read-only loop can LOOP_CHANGE_FD it between c and here.
      const last = await native.probeFd(fd);
      const changed = this.verifyLive(last, target, params);
      if (changed !== undefined) return await this.reject(fd, { kind: 'mismatch', name: node.name, why: `re-check: ${changed}`, osErrno: 0 });

      return {
        kind: 'done',
        fd,
        device: {
          diskseq: params.diskseq, partition: params.partition, name: node.name,
          major: probe.rdevMajor, minor: probe.rdevMinor, sizeBytes: last.size ?? 0n,
          readOnly: verified.readOnly, removable, driver: verified.driver, attributes: read,
        },
      };
    } catch (error) {
      await closeOffLoop(fd);
      throw error;
    }
  }

  /**
   * With wait_ms: waits until X (and N) is in the index, or answers at once when it can no
   * longer appear: an absent X at or below the highest diskseq seen, or the awaited
   * partition's disk gone. The full open-and-verify follows either way.
   */
  private async waitUntilPresent(params: OpenParams, signal: AbortSignal | undefined): Promise<void> {
    if (params.waitMs === 0) return;
    const disk = this.registry.lookup(params.diskseq);
    if (disk !== undefined && (params.partition === 0 || disk.partitions.has(params.partition))) return;
    if (this.registry.waiting >= this.waitLimits.maxWaiting) {
      throw resourceExhausted(`too many waiting requests (limit ${this.waitLimits.maxWaiting})`);
    }
    const waitMs = Math.min(params.waitMs, this.waitLimits.maxWaitMs);
    const failure = await this.registry.waitFor(params.diskseq, params.partition, waitMs, signal);
    if (failure === 'timeout') {
      throw timeout(`diskseq ${params.diskseq}${partSuffix(params)} did not appear within ${waitMs} ms`);
    }
    if (failure === 'cancelled') throw new RequestCancelled();
    // 'gone' and null: step 1 gives the answer (NOT_FOUND, or the device).
  }

  /**
   * Step 3. Root gets the kernel's devtmpfs name (root can reopen any node anyway: its
   * grant is advisory). Any other peer gets a private node whose group and mode carry
   * the grant, so a reopen through /dev/fd/N yields no more than was granted.
   */
  private async openNode(node: DiskEntry | PartitionEntry, peer: Peer, params: OpenParams) {
    const flags = this.openFlags(params);
    if (peer.uid === 0) return native.openDevice(`/dev/${node.devname}`, flags);
    // A node for a removed loop minor would re-create that device when opened
    // (CONFIG_BLOCK_LEGACY_AUTOLOAD): make sure sysfs still lists this dev_t.
    const now = this.sysfs.readUevent(node.name);
    if (now === null || now.major !== node.major || now.minor !== node.minor) {
      throw Object.assign(new Error(`${node.name} is gone`), { code: 'ENODEV', errno: 19 });
    }
    return this.privateNodes.open(node.major, node.minor, peer.gid, params.access, flags);
  }

  /** Step 1: X (and N) to an index entry, or NOT_FOUND. */
  private resolve(params: OpenParams): Target {
    const disk = this.registry.lookup(params.diskseq);
    if (disk === undefined) throw notFound(`no disk with diskseq ${params.diskseq}`);
    if (params.partition === 0) return { disk, part: undefined };
    const part = disk.partitions.get(params.partition);
    if (part === undefined) {
      const why = disk.isLoop && this.sysfs.attributeByName(disk.name, 'loop/partscan', false) !== '1'
        ? ' (loop device without LO_FLAGS_PARTSCAN: its partitions could outlive it)' : '';
      throw notFound(`diskseq ${params.diskseq} (${disk.name}) has no partition ${params.partition}${why}`);
    }
    return { disk, part };
  }

  private findTarget(params: OpenParams): Target | undefined {
    const disk = this.registry.find(params.diskseq);
    if (disk === undefined) return undefined;
    if (params.partition === 0) return { disk, part: undefined };
    const part = disk.partitions.get(params.partition);
    return part === undefined ? undefined : { disk, part };
  }

  /**
   * Steps a–d on the probe taken right after the open: a block device with the resolved
   * dev_t; live (a bound loop, non-empty); diskseq X; partition N (0: not a partition).
   * Returns what is wrong, or undefined.
   */
  private verifyIdentity(probe: FdProbe, target: Target, params: OpenParams): string | undefined {
    const node = target.part ?? target.disk;
    const { S_IFMT, S_IFBLK } = native.constants;
    if ((probe.mode & S_IFMT) !== S_IFBLK) return 'not a block device';
    if (probe.rdevMajor !== node.major || probe.rdevMinor !== node.minor) {
      return `dev_t ${probe.rdevMajor}:${probe.rdevMinor}, expected ${node.major}:${node.minor}`;
    }
    const live = this.verifyLive(probe, target, params);
    if (live !== undefined) return live;
    // Read after the open: an open partition cannot be deleted (BLKPG gives EBUSY).
    const partition = this.sysfs.attributeByDevt(probe.rdevMajor, probe.rdevMinor, 'partition', false);
    if (params.partition === 0 && partition !== undefined) return `is partition ${partition}, expected a whole disk`;
    if (params.partition > 0 && partition !== String(params.partition)) {
      return `is partition ${partition ?? 'none'}, expected ${params.partition}`;
    }
    return undefined;
  }

  /** Steps b and c: liveness before the diskseq (an unbound loop fd is not pinned). */
  private verifyLive(probe: FdProbe, target: Target, params: OpenParams): string | undefined {
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
   * Policy facts of a target, reading attributes lazily and at most once each. `readOnly`:
   * the fd's BLKROGET answer when there is an fd, else the `ro` attribute decides.
   */
  private facts(target: Target, read: (key: string, fromParent: boolean) => string | undefined, readOnly: boolean | null = null): DeviceFacts {
    const cache = new Map<string, string | undefined>();
    const attribute = (key: string): string | undefined => {
      if (!cache.has(key)) cache.set(key, read(key, target.part !== undefined && readFromParent(key)));
      return cache.get(key);
    };
    const node = target.part ?? target.disk;
    return {
      name: node.name,
      partition: target.part?.partition ?? 0,
      driver: target.disk.driver,
      isLoop: target.disk.isLoop,
      get readOnly() {
        return readOnly ?? attribute('ro') === '1';
      },
      attribute,
    };
  }

  private openFlags(params: OpenParams): number {
    const c = native.constants;
    let flags = params.access === 'read-write' ? c.O_RDWR : params.access === 'write-only' ? c.O_WRONLY : c.O_RDONLY;
    if (params.exclusive) flags |= c.O_EXCL;
    if (params.direct) flags |= c.O_DIRECT;
    if (params.nonblock) flags |= c.O_NONBLOCK;
    if (params.sync) flags |= c.O_SYNC;
    if (params.dsync) flags |= c.O_DSYNC;
    return flags;
  }

  /** Closes a rejected fd off the event loop (a last close can flush or detach a loop). */
  private async reject(fd: number, mismatch: Mismatch): Promise<Mismatch> {
    await native.closeAsync(fd).catch((error: unknown) => this.log.warn({ err: error }, 'close of a rejected fd failed'));
    return mismatch;
  }
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
