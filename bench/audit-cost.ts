/**
 * What the audit line costs (docs/design.md, "Logging"):
 *
 * 1. in the daemon, per request: the open round trip p50 of a daemon at --log-level info
 *    (one audit line per request, as in production) against one at warn (no audit line),
 *    in alternating batches on the same loop device; the difference is the line's cost on
 *    the request's path (its stdout is a pipe this process reads, as journald's would be);
 * 2. in process, per line: the logger formatting the same audit record as the daemon does
 *    (log.audit) and writing it to /dev/null, as JSON, JSON behind journald's `<N>` prefix,
 *    and text, next to formatting alone (into a sink that drops it), and next to formatting
 *    its fields through the generic path (log.info), which audit lines took before
 *    src/audit-line.ts.
 *
 * Run: node dist/bench/audit-cost.js   (root: a loop device and the daemon)
 */
import { closeSync, openSync } from 'node:fs';
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { native } from '../native/index.js';
import { auditFields, type AuditRecord } from '../src/audit-line.js';
import { createLogger, type Logger } from '../src/log.js';
import { FdSink } from '../src/log-sink.js';
import { DaemonProcess } from '../testkit/daemon.js';
import { createLoop } from '../testkit/loop.js';
import { WireClient } from '../testkit/wire-client.js';

const BATCHES = 6;
const PER_BATCH = Number(process.env.BENCH_AUDIT_N ?? 3000);

/** A representative audit record: an allowed open by root, as connection.ts writes it. */
const AUDIT: AuditRecord = {
  op: 'open', id: '12345', open: {
    diskseq: 4242n, partition: 0, access: 'read-only', exclusive: false, direct: false, nonblock: false, sync: false, dsync: false, waitMs: 0,
    expect: new Map(),
  },
  request: undefined, device: { name: 'loop7', major: 7, minor: 7 }, rule: 'root', retried: undefined, decision: 'allow', code: 'OK', us: 87,
};

function p50(samples: number[]): number {
  const sorted = Float64Array.from(samples).sort();
  return sorted[sorted.length >> 1]!;
}

async function batch(client: WireClient, diskseq: bigint, n: number, into: number[]): Promise<void> {
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const outcome = await client.open({ diskseq });
    into.push((performance.now() - t0) * 1000);
    if (!outcome.ok) throw new Error(`open failed: ${outcome.code}`);
    native.close(outcome.fd);
  }
}

/** Round trip p50 (us) with and without the audit line, and their difference. */
export async function auditInDaemon(): Promise<{ info: number; warn: number }> {
  const loop = createLoop({});
  const daemons: DaemonProcess[] = [];
  const clients: WireClient[] = [];
  try {
    for (const logLevel of ['info', 'warn']) daemons.push(await DaemonProcess.start({ logLevel, capture: 'counts' }));
    for (const d of daemons) clients.push(WireClient.connect(d.socketPath));
    const samples: number[][] = [[], []];
    for (const c of clients) await batch(c, loop.diskseq, 500, []); // warm-up
    for (let b = 0; b < BATCHES; b++) for (const [i, c] of clients.entries()) await batch(c, loop.diskseq, PER_BATCH, samples[i]!);
    if (daemons[0]!.count('audit') < BATCHES * PER_BATCH) throw new Error('the info daemon did not write its audit lines');
    return { info: p50(samples[0]!), warn: p50(samples[1]!) };
  } finally {
    for (const c of clients) c.close();
    for (const d of daemons) await d.stop();
    loop.cleanup();
  }
}

/** Microseconds per audit line for each way of writing it. */
export function auditInProcess(n = 200_000): Record<string, number> {
  const devNull = openSync('/dev/null', 'w');
  try {
    const peer = { peer: { uid: 0, gid: 0, pid: 4321 } };
    const dropping = { write: () => undefined, flush: () => 0, dropped: 0, backlogBytes: 0 };
    const loggers: Record<string, Logger> = {
      'format only (JSON, into a sink that drops it)': createLogger('info', { format: 'json', journal: false, sink: dropping }).child(peer),
      'JSON to /dev/null': createLogger('info', { format: 'json', journal: false, sink: new FdSink(devNull) }).child(peer),
      'JSON with the journal prefix <6> to /dev/null': createLogger('info', { format: 'json', journal: true, sink: new FdSink(devNull) }).child(peer),
      'text to /dev/null': createLogger('info', { format: 'text', journal: false, sink: new FdSink(devNull) }).child(peer),
    };
    // For comparison: the generic path (JSON.stringify of the fields), which audit lines took before src/audit-line.ts.
    const generic = createLogger('info', { format: 'json', journal: false, sink: dropping }).child(peer);
    const fields = auditFields(AUDIT);
    const result: Record<string, number> = {};
    for (let round = 0; round < 2; round++) {
      const g0 = performance.now();
      for (let i = 0; i < n; i++) generic.info(fields, 'audit');
      if (round === 1) result['format only, the generic path (log.info of the same fields)'] = ((performance.now() - g0) * 1000) / n;
      for (const [name, log] of Object.entries(loggers)) {
        const t0 = performance.now();
        for (let i = 0; i < n; i++) log.audit(AUDIT);
        const us = ((performance.now() - t0) * 1000) / n;
        if (round === 1) result[name] = us; // the first round warms up
      }
    }
    return result;
  } finally {
    closeSync(devNull);
  }
}

async function main(): Promise<void> {
  const line = JSON.stringify(auditFields(AUDIT)).length;
  console.log(`\naudit line cost (load average ${loadavg().map((l) => l.toFixed(2)).join(' ')})`);
  for (const [name, us] of Object.entries(auditInProcess())) console.log(`  in process, ${name.padEnd(50)} ${us.toFixed(2).padStart(6)} us/line`);
  const { info, warn } = await auditInDaemon();
  console.log(`  daemon round trip p50 at --log-level info (audit line on)   ${info.toFixed(1).padStart(7)} us`);
  console.log(`  daemon round trip p50 at --log-level warn (no audit line)   ${warn.toFixed(1).padStart(7)} us`);
  console.log(`  => the audit line costs ${(info - warn).toFixed(1)} us per request on its path (${BATCHES} alternating batches of ${PER_BATCH}; the line is ~${line + 120} bytes)`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
