/**
 * DaemonStatus: the library's view of a StatusReply (proto/diskseqd.proto), and its JSON
 * form. Counts are numbers (they stay far below 2^53); diskseqs are bigint, as everywhere
 * in the library, and decimal strings in JSON.
 */
import { u64FromLong } from '../proto/contract.js';
import type { diskseqd } from '../proto/gen/diskseqd.js';

/** How many requests of kind `op` ended with `code`. */
export interface RequestCount {
  op: string;
  code: string;
  count: number;
}

/** An open request waiting for its device to appear. */
export interface WaitingOpen {
  diskseq: bigint;
  /** 0: the whole disk. */
  partition: number;
  uid: number;
  waitedMs: number;
}

/** How the daemon is doing, as this peer may see it (docs/policy.md, "Who sees the status"). */
export interface DaemonStatus {
  serverVersion: string;
  uptimeMs: number;
  /** Disks and partitions in the daemon's index. */
  disks: number;
  partitions: number;
  /** Connections to the daemon's socket now, this one included. */
  connections: number;
  /** Connections per uid: every uid when `full`, else only this peer's own. */
  connectionsByUid: Map<number, number>;
  /** Requests answered since start, one entry per op ('open', 'list', ...) and audit code ('OK', 'NOT_FOUND', ..., 'CANCELLED'). */
  requests: RequestCount[];
  /** Opens waiting for a device now, of all users. */
  waiting: number;
  /** The waiting opens this peer may see (every one when `full`, else its own), oldest first, at most 64. */
  waitingOpens: WaitingOpen[];
  watchers: number;
  /** Overruns of the kernel's uevent socket since start, and when the last one was noticed. */
  ueventOverruns: number;
  lastOverrunAt: Date | undefined;
  /** The last full scan of sysfs (at start, then after each overrun): when it ended and how long it took. */
  lastScanAt: Date | undefined;
  lastScanUs: number;
  /** Whether this reply holds every user's numbers (root, or a peer the policy's status_viewers name). */
  full: boolean;
}

/** DaemonStatus as valid JSON (maps as objects, dates as ISO strings, diskseqs as decimal strings). */
export interface DaemonStatusJSON {
  serverVersion: string;
  uptimeMs: number;
  disks: number;
  partitions: number;
  connections: number;
  connectionsByUid: Record<string, number>;
  requests: RequestCount[];
  waiting: number;
  waitingOpens: Array<{ diskseq: string; partition: number; uid: number; waitedMs: number }>;
  watchers: number;
  ueventOverruns: number;
  lastOverrunAt: string | null;
  lastScanAt: string | null;
  lastScanUs: number;
  full: boolean;
}

const num = (value: number | { toString(): string } | null | undefined): number => Number((value ?? 0).toString());
const date = (unixMs: number): Date | undefined => (unixMs === 0 ? undefined : new Date(unixMs));

/** Converts a decoded StatusReply. */
export function statusFromWire(reply: diskseqd.v1.IStatusReply): DaemonStatus {
  return {
    serverVersion: reply.serverVersion ?? '',
    uptimeMs: num(reply.uptimeMs),
    disks: reply.disks ?? 0,
    partitions: reply.partitions ?? 0,
    connections: reply.connections ?? 0,
    connectionsByUid: new Map(Object.entries(reply.connectionsByUid ?? {}).map(([uid, n]) => [Number(uid), n])),
    requests: (reply.requests ?? []).map((r) => ({ op: r.op ?? '', code: r.code ?? '', count: num(r.count) })),
    waiting: reply.waiting ?? 0,
    waitingOpens: (reply.waitingOpens ?? []).map((w) => ({
      diskseq: u64FromLong(w.diskseq), partition: w.partition ?? 0, uid: w.uid ?? 0, waitedMs: w.waitedMs ?? 0,
    })),
    watchers: reply.watchers ?? 0,
    ueventOverruns: num(reply.ueventOverruns),
    lastOverrunAt: date(num(reply.lastOverrunUnixMs)),
    lastScanAt: date(num(reply.lastScanUnixMs)),
    lastScanUs: reply.lastScanUs ?? 0,
    full: reply.full ?? false,
  };
}

/** The JSON-safe form of a DaemonStatus (for JSON.stringify and `diskseq-open --status --json`). */
export function statusToJSON(status: DaemonStatus): DaemonStatusJSON {
  return {
    ...status,
    connectionsByUid: Object.fromEntries(status.connectionsByUid),
    waitingOpens: status.waitingOpens.map((w) => ({ ...w, diskseq: w.diskseq.toString() })),
    lastOverrunAt: status.lastOverrunAt?.toISOString() ?? null,
    lastScanAt: status.lastScanAt?.toISOString() ?? null,
  };
}
