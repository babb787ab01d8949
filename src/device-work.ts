/**
 * Native work per disk and per user, so that a hung device costs only the requests for
 * that disk (docs/design.md, "Hung devices"). Every job that can block on a device — the
 * open-and-verify job, the close of a device fd — goes through here:
 *
 * - A job outstanding longer than `stallMs` stalls its disk: a thread stuck in the
 *   driver's open holds the disk's open_mutex, which the disk and all its partitions share,
 *   so further opens and closes of that disk would only pin more threads. Until the stuck
 *   job returns, new work for the disk waits here, in JS, without a thread. While nothing
 *   is stalled, jobs for one disk run concurrently.
 * - Each uid has at most `maxPerUid` jobs outstanding (running, stuck, or abandoned and
 *   not yet returned); more wait here. Closes are counted but never wait for the bound, and
 *   never behind opens.
 * - A request whose job has not returned `timeoutMs` after it asked (waiting included) is
 *   answered TIMEOUT ("did not answer", os_errno ETIMEDOUT); its job runs on, abandoned, and
 *   what it returns is disposed of (its fd closed) whenever it does.
 *
 * Time is judged by one sweep timer that runs while anything is outstanding or waiting:
 * no timer per request.
 */
import { closeOffLoop } from '../native/index.js';
import { monotonicMs } from './clock.js';
import { deviceTimeout } from './errors.js';
import { InsertionList, type Linked } from './insertion-list.js';
import type { Logger } from './log.js';

/** The bounds (see the module comment). */
export interface DeviceWorkLimits {
  stallMs: number;
  timeoutMs: number;
  maxPerUid: number;
}

export const DEFAULT_DEVICE_WORK_LIMITS: Readonly<DeviceWorkLimits> = Object.freeze({ stallMs: 50, timeoutMs: 10_000, maxPerUid: 16 });

interface Disk {
  readonly key: string;
  readonly name: string;
  outstanding: number;
  /** Outstanding jobs older than stallMs: while > 0, new work waits. */
  stalled: number;
  readonly waiting: Waiter[];
  readonly closes: { owner: Owner; fd: number; done: () => void }[];
}

interface Owner {
  readonly uid: number;
  outstanding: number;
  readonly waiting: Waiter[];
}

/** One job that has been started and has not returned. */
interface Running extends Linked<Running> {
  readonly disk: Disk;
  readonly owner: Owner;
  readonly started: number;
  readonly deadline: number;
  stalled: boolean;
  /** The request has its answer (the result, or the deadline's TIMEOUT). */
  answered: boolean;
  /** Answers the request at its deadline (undefined for closes: they have none). */
  fail?: (error: Error) => void;
}

/** A request that has not started its job yet. */
interface Waiter extends Linked<Waiter> {
  disk: Disk;
  readonly owner: Owner;
  readonly deadline: number;
  readonly start: () => Promise<unknown>;
  readonly dispose: (late: unknown) => void;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: Error) => void;
}

export class DeviceWork {
  private readonly disks = new Map<string, Disk>();
  private readonly owners = new Map<number, Owner>();
  /** In start order, so the oldest are looked at first. Lists, not Sets: src/insertion-list.ts. */
  private readonly running = new InsertionList<Running>();
  /** In arrival order, which is deadline order. */
  private readonly waiters = new InsertionList<Waiter>();
  private readonly sweepMs: number;
  private sweeper: NodeJS.Timeout | undefined;
  private lastSweep = 0;
  private stopped = false;

  constructor(readonly limits: DeviceWorkLimits, private readonly log: Logger) {
    if (!(limits.stallMs < limits.timeoutMs)) throw new Error('the stall threshold must be shorter than the timeout');
    this.sweepMs = Math.max(5, Math.min(limits.stallMs / 2, 100));
  }

  /**
   * Runs `start` (a job that may block on disk `key`, for `uid`) when the disk is not
   * stalled and the uid is under its bound, and resolves or rejects as its promise does —
   * or rejects TIMEOUT at the deadline, after which `dispose` gets what the job returns.
   */
  run<T>(key: string, name: string, uid: number, start: () => Promise<T>, dispose: (late: T) => void): Promise<T> {
    const disk = this.disk(key, name);
    const owner = this.owner(uid);
    const deadline = monotonicMs() + this.limits.timeoutMs;
    if (!this.stopped && disk.stalled === 0 && disk.waiting.length === 0 && owner.outstanding < this.limits.maxPerUid && owner.waiting.length === 0) {
      return this.start(disk, owner, deadline, start, dispose);
    }
    return new Promise<T>((resolve, reject) => {
      if (this.stopped) return reject(deviceTimeout('the daemon is shutting down'));
      const waiter: Waiter = {
        disk, owner, deadline, start, dispose: dispose as (late: unknown) => void, resolve: resolve as (value: unknown) => void, reject,
        prev: undefined, next: undefined,
      };
      this.waiters.add(waiter);
      (disk.stalled > 0 || disk.waiting.length > 0 ? disk.waiting : owner.waiting).push(waiter);
      this.armSweep();
    });
  }

  /**
   * Closes `fd`, an fd of disk `key` held for `uid`, off the event loop: at once, unless
   * the disk is stalled (the close would block there too), then as soon as it answers.
   * Never rejects.
   */
  close(key: string, name: string, uid: number, fd: number): Promise<void> {
    const disk = this.disk(key, name);
    const owner = this.owner(uid);
    if (disk.stalled === 0) return this.startClose(disk, owner, fd);
    return new Promise((done) => disk.closes.push({ owner, fd, done }));
  }

  /** Closes an fd a client sent (whatever it is): stalls of such closes are charged to the sender. */
  closeSent(uid: number, fd: number): void {
    void this.close(`sent-by-uid-${uid}`, `an fd sent by uid ${uid}`, uid, fd);
  }

  /** Answers every request still waiting, and every one whose job is stalled, with TIMEOUT. */
  shutdown(): void {
    this.stopped = true;
    for (const waiter of [...this.waiters]) this.dropWaiter(waiter, deviceTimeout('the daemon is shutting down'));
    for (const job of this.running) {
      if (job.stalled && !job.answered && job.fail !== undefined) {
        job.answered = true;
        job.fail(deviceTimeout(`${job.disk.name} does not answer and the daemon is shutting down`));
      }
    }
  }

  /** Names of the disks whose work is stalled now. */
  get stalledDisks(): string[] {
    return [...this.disks.values()].filter((d) => d.stalled > 0).map((d) => d.name);
  }

  private start<T>(disk: Disk, owner: Owner, deadline: number, start: () => Promise<T>, dispose: (late: T) => void): Promise<T> {
    const job = this.track(disk, owner, deadline);
    return new Promise<T>((resolve, reject) => {
      job.fail = reject;
      start().then((value) => {
        if (this.finish(job)) resolve(value);
        else dispose(value);
      }, (error: unknown) => {
        if (this.finish(job)) reject(error);
      });
    });
  }

  private startClose(disk: Disk, owner: Owner, fd: number): Promise<void> {
    const job = this.track(disk, owner, Infinity);
    return closeOffLoop(fd).then(() => {
      this.finish(job);
    });
  }

  private track(disk: Disk, owner: Owner, deadline: number): Running {
    const job: Running = { disk, owner, started: monotonicMs(), deadline, stalled: false, answered: false, prev: undefined, next: undefined };
    this.running.add(job);
    disk.outstanding++;
    owner.outstanding++;
    this.armSweep();
    return job;
  }

  /** The job returned. True when its request had no answer yet (the result is the answer). */
  private finish(job: Running): boolean {
    this.running.delete(job);
    const { disk, owner } = job;
    disk.outstanding--;
    owner.outstanding--;
    if (job.stalled && --disk.stalled === 0) {
      this.log.info({ device: disk.name, stalledMs: Math.round(monotonicMs() - job.started) }, 'device answers again');
      this.releaseDisk(disk);
    }
    if (owner.waiting.length > 0) this.releaseOwner(owner);
    const first = !job.answered;
    job.answered = true;
    return first;
  }

  /** The disk answers again: its closes first, then its waiting requests in order. */
  private releaseDisk(disk: Disk): void {
    for (const pending of disk.closes.splice(0)) void this.startClose(disk, pending.owner, pending.fd).then(pending.done);
    while (disk.waiting.length > 0 && disk.stalled === 0) {
      const waiter = disk.waiting.shift()!;
      if (waiter.owner.outstanding < this.limits.maxPerUid && waiter.owner.waiting.length === 0) this.startWaiter(waiter);
      else waiter.owner.waiting.push(waiter);
    }
  }

  /** The uid is under its bound again: start its waiting requests, oldest first. */
  private releaseOwner(owner: Owner): void {
    while (owner.waiting.length > 0 && owner.outstanding < this.limits.maxPerUid) {
      const waiter = owner.waiting.shift()!;
      if (waiter.disk.stalled > 0) waiter.disk.waiting.push(waiter);
      else this.startWaiter(waiter);
    }
  }

  private startWaiter(waiter: Waiter): void {
    this.waiters.delete(waiter);
    this.start(waiter.disk, waiter.owner, waiter.deadline, waiter.start, waiter.dispose).then(waiter.resolve, waiter.reject);
  }

  private dropWaiter(waiter: Waiter, error: Error): void {
    this.waiters.delete(waiter);
    for (const queue of [waiter.disk.waiting, waiter.owner.waiting]) {
      const at = queue.indexOf(waiter);
      if (at >= 0) queue.splice(at, 1);
    }
    waiter.reject(error);
  }

  private armSweep(): void {
    if (this.sweeper !== undefined) return;
    this.lastSweep = monotonicMs();
    // Referenced: a request waiting for a stalled disk is answered even if nothing else
    // keeps the loop alive. It stops itself once nothing is outstanding or waiting.
    this.sweeper = setInterval(() => this.sweep(), this.sweepMs);
  }

  /** Marks stalls, answers what passed its deadline, forgets idle disks and uids. */
  private sweep(): void {
    const now = monotonicMs();
    // A sweep this late means the JS thread itself was busy: finished jobs may be waiting
    // to be delivered, so judge nothing stalled or late this time.
    const late = now - this.lastSweep > 3 * this.sweepMs;
    this.lastSweep = now;
    if (!late) {
      for (const job of this.running) {
        if (now - job.started <= this.limits.stallMs) break; // the rest are younger
        if (!job.stalled) {
          job.stalled = true;
          if (job.disk.stalled++ === 0) {
            this.log.warn({ device: job.disk.name, stallMs: this.limits.stallMs }, 'device does not answer: its further work waits until it does');
          }
        }
        if (!job.answered && job.deadline <= now && job.fail !== undefined) {
          job.answered = true;
          job.fail(deviceTimeout(`${job.disk.name} did not answer within ${this.limits.timeoutMs} ms (the device hangs); the request is abandoned`));
        }
      }
      for (const waiter of this.waiters) {
        if (waiter.deadline > now) break; // the rest arrived later
        const why = waiter.disk.stalled > 0 ? `${waiter.disk.name} does not answer (its earlier work is stuck in the kernel)`
          : `uid ${waiter.owner.uid} has ${waiter.owner.outstanding} device requests outstanding (limit ${this.limits.maxPerUid}) that do not finish`;
        this.dropWaiter(waiter, deviceTimeout(`${why}; gave up after ${this.limits.timeoutMs} ms`));
      }
    }
    for (const [key, disk] of this.disks) {
      if (disk.outstanding === 0 && disk.waiting.length === 0 && disk.closes.length === 0) this.disks.delete(key);
    }
    for (const [uid, owner] of this.owners) if (owner.outstanding === 0 && owner.waiting.length === 0) this.owners.delete(uid);
    if (this.running.size === 0 && this.waiters.size === 0 && this.disks.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  private disk(key: string, name: string): Disk {
    let disk = this.disks.get(key);
    if (disk === undefined) {
      disk = { key, name, outstanding: 0, stalled: 0, waiting: [], closes: [] };
      this.disks.set(key, disk);
    }
    return disk;
  }

  private owner(uid: number): Owner {
    let owner = this.owners.get(uid);
    if (owner === undefined) {
      owner = { uid, outstanding: 0, waiting: [] };
      this.owners.set(uid, owner);
    }
    return owner;
  }
}
