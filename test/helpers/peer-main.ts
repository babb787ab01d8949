/**
 * The program a test runs as another user (see peer.ts): connects to the daemon, performs
 * the requests given as one JSON argument, and prints one JSON line with what happened —
 * its own credentials, then per request the error code or what it checked on the fd it
 * got (the fd is closed before exit).
 *
 * Usage: node peer-main.js '<PeerScript JSON>'
 */
import { native } from '../../native/index.js';
import { readMarker } from './image.js';
import { WireClient, type OpenParams } from './wire-client.js';

/** One request the peer performs. */
export interface PeerStep {
  op: 'open';
  /** diskseq as a decimal string (JSON has no bigint). */
  diskseq: string;
  partition?: number;
  access?: OpenParams['access'];
  exclusive?: boolean;
  expect?: Record<string, string>;
  /** Read a marker at this offset through the delivered fd. */
  readMarkerAt?: number;
}

/** What the peer is asked to do. */
export interface PeerScript {
  socket: string;
  steps: PeerStep[];
}

/** The result of one step. */
export type PeerStepResult =
  | { ok: true; name: string; fdDiskseq: string | null; marker?: string }
  | { ok: false; code: string; message: string };

/** The one line the peer prints. */
export interface PeerReport {
  uid: number;
  gid: number;
  groups: number[];
  results: PeerStepResult[];
  /** Set when the peer itself failed (could not connect, a request threw...). */
  failure?: string;
}

async function main(): Promise<PeerReport> {
  const script = JSON.parse(process.argv[2] ?? '') as PeerScript;
  const report: PeerReport = { uid: process.getuid!(), gid: process.getgid!(), groups: process.getgroups!(), results: [] };
  let client: WireClient | undefined;
  try {
    client = WireClient.connect(script.socket);
    for (const step of script.steps) {
      const outcome = await client.open({ ...step, diskseq: BigInt(step.diskseq) });
      if (!outcome.ok) {
        report.results.push({ ok: false, code: outcome.code, message: outcome.message });
        continue;
      }
      try {
        const probe = native.probeFdSync(outcome.fd);
        const result: PeerStepResult = { ok: true, name: outcome.device.name, fdDiskseq: probe.diskseq?.toString() ?? null };
        if (step.readMarkerAt !== undefined) result.marker = readMarker(outcome.fd, step.readMarkerAt);
        report.results.push(result);
      } finally {
        native.close(outcome.fd);
      }
    }
  } catch (error) {
    report.failure = (error as Error).stack ?? String(error);
  } finally {
    client?.close();
  }
  return report;
}

main().then(
  (report) => {
    process.stdout.write(`${JSON.stringify(report)}\n`);
    process.exitCode = 0;
  },
  (error: unknown) => {
    process.stdout.write(`${JSON.stringify({ failure: String(error) })}\n`);
    process.exitCode = 1;
  },
);
