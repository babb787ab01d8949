/**
 * Per-uid shares of the daemon's bounded resources (docs/design.md, "Limits"): connections,
 * waiting opens, watchers, List and Watch snapshots in progress, and fds sent but not yet
 * received. One user cannot starve the others: a non-root uid gets at most its per-uid
 * bound of each, non-root uids together at most what is left after root's share, and root
 * at most the total. Every front-end (the SEQPACKET server, and any other) consults the
 * same Quotas, so a uid's use counts once whichever way it came in.
 */
import type { UnreceivedFdAccount } from '../native/packet-socket.js';
import { monotonicMs } from './clock.js';
import { InsertionList, type Linked } from './insertion-list.js';

/** The bounds of one resource. */
export interface PoolLimits {
  /** In use at once, all users together. */
  total: number;
  /** In use at once by any one non-root uid. */
  perUid: number;
}

/** Every bound of the daemon that is shared between users. */
export interface QuotaLimits {
  /** Percent of each total that non-root users together can never take. */
  rootSharePercent: number;
  connections: PoolLimits;
  waits: PoolLimits;
  watchers: PoolLimits;
  snapshots: PoolLimits;
  /** fds sent and not yet received: per connection, per uid, in all. */
  unreceivedFds: PoolLimits & { perConnection: number };
}

/** How much of one resource each uid has in use, and whether it may take more. */
export class UidShares {
  private readonly byUid = new Map<number, number>();
  private nonRoot = 0;
  private all = 0;
  /** What non-root users together may have: the total less root's share. */
  readonly nonRootCap: number;

  /** `what` names the resource in refusals ("waiting opens"). */
  constructor(readonly what: string, readonly limits: PoolLimits, rootSharePercent: number) {
    this.nonRootCap = limits.total - Math.floor((limits.total * rootSharePercent) / 100);
  }

  /** In use by `uid`, or by everyone. */
  used(uid?: number): number {
    return uid === undefined ? this.all : this.byUid.get(uid) ?? 0;
  }

  /** In use now, by uid (uids with none left out). */
  byUidNow(): ReadonlyMap<number, number> {
    return this.byUid;
  }

  /** Whether `uid` may take one more now (refusal() without the sentence). */
  admits(uid: number): boolean {
    const { total, perUid } = this.limits;
    if (this.all + 1 > total) return false;
    return uid === 0 || (this.nonRoot + 1 <= this.nonRootCap && this.used(uid) + 1 <= perUid);
  }

  /** Why `uid` may not take `n` more now (a sentence for RESOURCE_EXHAUSTED), or undefined when it may. */
  refusal(uid: number, n = 1): string | undefined {
    const { total, perUid } = this.limits;
    if (this.all + n > total) return `too many ${this.what} (limit ${total})`;
    if (uid === 0) return undefined;
    if (this.nonRoot + n > this.nonRootCap) {
      return `too many ${this.what} of non-root users (limit ${this.nonRootCap}; the rest of ${total} is kept for root)`;
    }
    if (this.used(uid) + n > perUid) return `too many ${this.what} of uid ${uid} (limit ${perUid})`;
    return undefined;
  }

  /** Takes one if `uid` may; returns whether it did. */
  tryTake(uid: number): boolean {
    if (!this.admits(uid)) return false;
    this.take(uid, 1);
    return true;
  }

  /** Counts `n` as in use by `uid`, whatever the bounds (for use the kernel already made). */
  take(uid: number, n: number): void {
    this.byUid.set(uid, this.used(uid) + n);
    this.all += n;
    if (uid !== 0) this.nonRoot += n;
  }

  /** Gives back `n` that `uid` had in use. */
  give(uid: number, n = 1): void {
    const left = this.used(uid) - n;
    if (left < 0) throw new Error(`${this.what}: uid ${uid} gave back more than it had`);
    if (left === 0) this.byUid.delete(uid);
    else this.byUid.set(uid, left);
    this.all -= n;
    if (uid !== 0) this.nonRoot -= n;
  }
}

interface SlotWaiter {
  grant(release: () => void): void;
  /** Its request ended first; skipped (and dropped) when its turn comes. */
  cancelled: boolean;
}

/** One uid's waiters, in order of arrival, and how many of them still wait. */
interface UidLine {
  waiters: SlotWaiter[];
  live: number;
}

/**
 * A UidShares whose users wait for a slot instead of being refused: List and Watch
 * snapshots. Each uid's waiters are served in order of arrival, the uids in turn: a slot
 * given back goes to the uid that has waited longest since it was last served, among those
 * that may take one.
 */
export class SlotQueue {
  /** Lines per uid; a Map iterates in insertion order, and a served uid moves to the end. */
  private readonly lines = new Map<number, UidLine>();
  private count = 0;

  constructor(readonly shares: UidShares) {}

  /** Requests waiting for a slot. */
  get queued(): number {
    return this.count;
  }

  /**
   * Resolves with the function that gives the slot back (call it exactly once) as soon as
   * `uid` may take one; with undefined if `signal` aborts first.
   */
  acquire(uid: number, signal?: AbortSignal): Promise<(() => void) | undefined> {
    if (signal?.aborted) return Promise.resolve(undefined);
    if (!this.lines.has(uid) && this.shares.tryTake(uid)) return Promise.resolve(this.releaser(uid));
    return new Promise((resolve) => {
      let line = this.lines.get(uid);
      if (line === undefined) this.lines.set(uid, (line = { waiters: [], live: 0 }));
      const onAbort = (): void => {
        waiter.cancelled = true;
        this.count--;
        if (--line!.live === 0 && this.lines.get(uid) === line) this.lines.delete(uid);
        resolve(undefined);
      };
      const waiter: SlotWaiter = {
        cancelled: false,
        grant: (release) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(release);
        },
      };
      line.waiters.push(waiter);
      line.live++;
      this.count++;
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private releaser(uid: number): () => void {
    let given = false;
    return () => {
      if (given) return;
      given = true;
      this.shares.give(uid);
      this.grantWaiting();
    };
  }

  /** Gives the slot just given back to the first uid in line that may take it. */
  private grantWaiting(): void {
    for (const [uid, line] of this.lines) {
      if (this.shares.used() >= this.shares.limits.total) return;
      if (!this.shares.admits(uid)) continue;
      let waiter = line.waiters.shift();
      while (waiter !== undefined && waiter.cancelled) waiter = line.waiters.shift();
      if (waiter === undefined) { // only cancelled ones were left (their count is settled)
        this.lines.delete(uid);
        continue;
      }
      this.shares.take(uid, 1);
      this.count--;
      this.lines.delete(uid); // served: to the end of the line, if it still waits
      if (--line.live > 0) this.lines.set(uid, line);
      waiter.grant(this.releaser(uid));
      return;
    }
  }
}

/** One connection's account of unreceived fds; close() once its socket is released. */
export interface ConnectionFdAccount extends UnreceivedFdAccount {
  close(): void;
}

/** How often, at most, the counts of other connections are re-read when a share is full. */
const REFRESH_OTHERS_MS = 20;

/** One connection's refresh function in its uid's list. */
interface Refresher extends Linked<Refresher> {
  readonly refresh: () => void;
}

/**
 * The fds the daemon has sent and its peers not yet received (docs/design.md, "Limits:
 * fds in flight"): the kernel charges them to the daemon's user, and past its
 * RLIMIT_NOFILE refuses to send any more fds to anyone. Each connection's socket counts
 * its own (a PacketSocket, or a Varlink connection's StreamSocket); this ledger adds them
 * up per uid, whichever front-end they went through, and decides whether one more may go.
 */
export class UnreceivedFds {
  /** Per uid, its connections' refresh functions; lists, not Sets (src/insertion-list.ts). */
  private readonly refreshers = new Map<number, InsertionList<Refresher>>();
  private readonly lastRefresh = new Map<number | 'all', number>();

  constructor(readonly shares: UidShares, readonly perConnection: number) {}

  /**
   * The account of one connection of `uid`. `refresh` re-reads that connection's count
   * (refreshUnreceived of its PacketSocket or StreamSocket): when a share is full, the
   * other connections are asked before an fd is held back, since a count is only re-read
   * when its socket sends.
   */
  account(uid: number, refresh: () => void): ConnectionFdAccount {
    let list = this.refreshers.get(uid);
    if (list === undefined) this.refreshers.set(uid, (list = new InsertionList()));
    const member: Refresher = { refresh, prev: undefined, next: undefined };
    list.add(member);
    return {
      mayAdd: (unreceived) => unreceived < this.perConnection && this.shareAdmits(uid),
      changed: (delta) => {
        if (delta > 0) this.shares.take(uid, delta);
        else if (delta < 0) this.shares.give(uid, -delta);
      },
      close: () => {
        list.delete(member);
        if (list.size === 0 && this.refreshers.get(uid) === list) this.refreshers.delete(uid);
      },
    };
  }

  private shareAdmits(uid: number): boolean {
    if (this.shares.admits(uid)) return true;
    // Full by the counts we have: re-read the connections that make it up (at most every
    // few ms), then decide. The uid's own when its own share is what is full, else everyone's.
    const ownShareFull = uid !== 0 && this.shares.used(uid) + 1 > this.shares.limits.perUid;
    const key = ownShareFull ? uid : 'all';
    const now = monotonicMs();
    if (now - (this.lastRefresh.get(key) ?? -Infinity) >= REFRESH_OTHERS_MS) {
      this.lastRefresh.set(key, now);
      const own = this.refreshers.get(uid);
      const lists = ownShareFull ? (own === undefined ? [] : [own]) : [...this.refreshers.values()];
      for (const list of lists) for (const { refresh } of [...list]) refresh();
    }
    return this.shares.admits(uid);
  }
}

/** The daemon's shared bounds, one pool per resource (see the module comment). */
export class Quotas {
  readonly connections: UidShares;
  readonly waits: UidShares;
  readonly watchers: UidShares;
  readonly snapshots: SlotQueue;
  readonly unreceivedFds: UnreceivedFds;

  constructor(readonly limits: QuotaLimits) {
    const share = limits.rootSharePercent;
    this.connections = new UidShares('connections', limits.connections, share);
    this.waits = new UidShares('waiting opens', limits.waits, share);
    this.watchers = new UidShares('watchers', limits.watchers, share);
    this.snapshots = new SlotQueue(new UidShares('List and Watch snapshots', limits.snapshots, share));
    this.unreceivedFds = new UnreceivedFds(new UidShares('fds sent and not yet received', limits.unreceivedFds, share),
      limits.unreceivedFds.perConnection);
  }
}

/** The built-in defaults (src/config.ts documents each), for tests that build a daemon in-process. */
export const DEFAULT_QUOTA_LIMITS: QuotaLimits = {
  rootSharePercent: 25,
  connections: { total: 1024, perUid: 256 },
  waits: { total: 4096, perUid: 1024 },
  watchers: { total: 256, perUid: 64 },
  snapshots: { total: 32, perUid: 4 },
  unreceivedFds: { total: 4096, perUid: 256, perConnection: 16 },
};
