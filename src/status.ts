/**
 * The status view (docs/design.md, "Status"): what the daemon answers a StatusRequest with.
 * A snapshot of counts the daemon keeps anyway — the index, the connections, the requests
 * answered by audit code, the waiters and watchers, the uevent overruns and full scans —
 * taken when asked, so it costs nothing between requests. How much of it a peer sees is
 * the policy's decision (Policy.mayViewFullStatus; docs/policy.md, "Who sees the status").
 */
import type { OverrunStats } from './live-registry.js';
import type { Peer, Policy } from './policy/index.js';
import type { Registry, WaitingOpenInfo } from './registry.js';

/** Waiting opens listed in one reply. */
export const MAX_LISTED_WAITS = 64;
/** uids listed in connections_by_uid (those with the most connections), to bound the reply. */
export const MAX_LISTED_UIDS = 1024;

/** How many requests of kind `op` ended with `code`. */
export interface RequestCount {
  op: string;
  code: string;
  count: number;
}

/** The StatusReply's content, before encoding. */
export interface StatusReport {
  serverVersion: string;
  uptimeMs: number;
  disks: number;
  partitions: number;
  connections: number;
  connectionsByUid: ReadonlyMap<number, number>;
  requests: RequestCount[];
  waiting: number;
  waitingOpens: WaitingOpenInfo[];
  watchers: number;
  ueventOverruns: number;
  lastOverrunUnixMs: number;
  lastScanUnixMs: number;
  lastScanUs: number;
  full: boolean;
}

/** What the view reads, each at the moment of the request. */
export interface StatusSources {
  serverVersion: string;
  registry: Registry;
  overruns: Readonly<OverrunStats>;
  policy: () => Policy;
  /** The connections of the socket now, by uid (every connection counted once). */
  connectionsByUid: () => ReadonlyMap<number, number>;
  /** Requests answered since start, by op and by the code of their audit line. */
  requests: () => ReadonlyMap<string, ReadonlyMap<string, number>>;
  watchers: () => number;
}

/** Answers status requests from the daemon's own counters. */
export class StatusView {
  constructor(private readonly sources: StatusSources) {}

  /** The status as `peer` may see it. */
  report(peer: Peer): StatusReport {
    const s = this.sources;
    const full = s.policy().mayViewFullStatus(peer);
    const byUid = s.connectionsByUid();
    let connections = 0;
    for (const n of byUid.values()) connections += n;
    const shownUids = full
      ? new Map([...byUid].sort((a, b) => b[1] - a[1] || a[0] - b[0]).slice(0, MAX_LISTED_UIDS))
      : new Map(byUid.has(peer.uid) ? [[peer.uid, byUid.get(peer.uid)!]] : []);
    const scan = s.registry.lastScan;
    return {
      serverVersion: s.serverVersion,
      uptimeMs: Math.floor(process.uptime() * 1000),
      disks: s.registry.size,
      partitions: s.registry.partitionCount,
      connections,
      connectionsByUid: shownUids,
      requests: [...s.requests()].flatMap(([op, codes]) => [...codes].map(([code, count]) => ({ op, code, count }))),
      waiting: s.registry.waiting,
      waitingOpens: s.registry.waitingOpens(MAX_LISTED_WAITS, full ? undefined : peer.uid),
      watchers: s.watchers(),
      ueventOverruns: s.overruns.count,
      lastOverrunUnixMs: s.overruns.lastAt ?? 0,
      lastScanUnixMs: scan?.at ?? 0,
      lastScanUs: scan?.us ?? 0,
      full,
    };
  }
}
