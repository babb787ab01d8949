/**
 * `diskseq-open --status [--json]`: how the daemon is doing, for a human (the default) or
 * for a machine (--json: the client library's DaemonStatus as JSON, see client/status.ts).
 */
import type { Client } from './client.js';
import { statusToJSON, type DaemonStatus } from './status.js';

/** Asks the daemon for its status and prints it; resolves to the exit status (0). Throws what the request throws. */
export async function printStatus(client: Client, json: boolean): Promise<number> {
  const status = await client.status();
  process.stdout.write(json ? `${JSON.stringify(statusToJSON(status), null, 2)}\n` : formatStatus(status, client.socketPath));
  return 0;
}

/** The human-readable status: one labelled line per subject. */
export function formatStatus(s: DaemonStatus, socketPath: string): string {
  const lines: Array<[string, string]> = [];
  lines.push(['daemon', `diskseqd ${s.serverVersion} on ${socketPath}, up ${formatDuration(s.uptimeMs)}`]);
  lines.push(['devices', `${s.disks} ${plural(s.disks, 'disk')}, ${s.partitions} ${plural(s.partitions, 'partition')} indexed`]);
  const uids = [...s.connectionsByUid].sort((a, b) => a[0] - b[0]).map(([uid, n]) => `uid ${uid}: ${n}`);
  const others = s.full ? '' : `; ${uids.length > 0 ? 'only yours shown' : 'none of them yours'}: other users' need root or the policy's status_viewers`;
  lines.push(['connections', `${s.connections} open${uids.length > 0 ? ` (${uids.join(', ')})` : ''}${others}`]);
  const total = s.requests.reduce((sum, r) => sum + r.count, 0);
  lines.push(['requests', `${total} answered`]);
  // One line per op, the most frequent first: "open  OK 1500, NOT_FOUND 12".
  const ops = [...new Set(s.requests.map((r) => r.op))];
  const opTotal = (op: string): number => s.requests.filter((r) => r.op === op).reduce((sum, r) => sum + r.count, 0);
  ops.sort((a, b) => opTotal(b) - opTotal(a) || a.localeCompare(b));
  for (const op of ops) {
    const codes = s.requests.filter((r) => r.op === op).sort((a, b) => b.count - a.count || a.code.localeCompare(b.code));
    lines.push([`  ${op}`, codes.map((r) => `${r.code} ${r.count}`).join(', ')]);
  }
  const waits = s.waitingOpens.map((w) => `${w.diskseq}${w.partition > 0 ? `p${w.partition}` : ''} (uid ${w.uid}, ${formatDuration(w.waitedMs)})`);
  const hidden = s.waiting - s.waitingOpens.length;
  lines.push(['waiting', `${s.waiting} ${plural(s.waiting, 'open')} waiting for a device${waits.length > 0 ? `: ${waits.join(', ')}` : ''}` +
    `${hidden > 0 && waits.length > 0 ? `, ${hidden} more` : ''}${hidden > 0 && !s.full ? ' (other users\' not shown)' : ''}`]);
  lines.push(['watchers', String(s.watchers)]);
  const overruns = s.ueventOverruns === 0 ? 'no overrun since start' :
    `${s.ueventOverruns} ${plural(s.ueventOverruns, 'overrun')}, the last at ${s.lastOverrunAt?.toISOString() ?? '?'}, each answered by a full rescan`;
  const scan = s.lastScanAt === undefined ? 'no full scan yet' :
    `last full scan of sysfs at ${s.lastScanAt.toISOString()} (${s.ueventOverruns === 0 ? 'at start' : 'after the last overrun'}), ${(s.lastScanUs / 1000).toFixed(1)} ms`;
  lines.push(['uevents', `${overruns}; ${scan}`]);
  const width = Math.max(...lines.map(([label]) => label.length)) + 2;
  return lines.map(([label, text]) => `${`${label}:`.padEnd(width)}${text}\n`).join('');
}

function plural(n: number, word: string): string {
  return n === 1 ? word : `${word}s`;
}

/** 3h 2m 5s, 2m 5s, 4.2s, 350ms. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const total = Math.floor(ms / 1000);
  const [d, h, m, sec] = [Math.floor(total / 86400), Math.floor(total / 3600) % 24, Math.floor(total / 60) % 60, total % 60];
  return [d > 0 ? `${d}d` : '', d > 0 || h > 0 ? `${h}h` : '', `${m}m`, `${sec}s`].filter((part) => part !== '').join(' ');
}
