/**
 * The scripted peer (run as another user by peer.ts's runPeer, through peer-launcher.js):
 * connects to the daemon (through the client library unless told otherwise), performs the
 * requests given as one JSON argument, and prints one JSON line with what happened — its
 * own credentials, then per request the error code or what it checked on the fd it got
 * (closed before exit).
 *
 *   node peer-launcher.js IDENTITY peer-main.js '<PeerScript JSON>'
 */
import { connect, DiskseqError } from '../../client/index.js';
import { native } from '../../native/index.js';
import { readMarker } from '../../testkit/image.js';
import { WireClient, type OpenParams } from '../../testkit/wire-client.js';

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
  /**
   * 'client' (default): through the client library, as a real caller would; 'wire': the
   * raw protocol client, to see exactly what the daemon sends.
   */
  via?: 'client' | 'wire';
}

/** An open through either client, as a uniform outcome. */
type Opener = (step: PeerStep) => Promise<{ ok: true; fd: number; name: string } | { ok: false; code: string; message: string }>;

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

const LIBRARY_ACCESS = { ro: 'read-only', rw: 'read-write', wo: 'write-only' } as const;

/** Connects the chosen client; returns its opener and its close. */
async function connectVia(script: PeerScript): Promise<{ open: Opener; close(): void }> {
  if (script.via === 'wire') {
    const wire = WireClient.connect(script.socket);
    return {
      open: async (step) => {
        const outcome = await wire.open({ ...step, diskseq: BigInt(step.diskseq) });
        return outcome.ok ? { ok: true, fd: outcome.fd, name: outcome.device.name } : outcome;
      },
      close: () => wire.close(),
    };
  }
  const client = await connect({ socketPath: script.socket });
  return {
    open: async (step) => {
      try {
        const { fd, device } = await client.open({
          diskseq: BigInt(step.diskseq), partition: step.partition, access: LIBRARY_ACCESS[step.access ?? 'ro'],
          exclusive: step.exclusive, expect: step.expect,
        });
        return { ok: true, fd, name: device.name };
      } catch (error) {
        if (error instanceof DiskseqError) return { ok: false, code: error.code, message: error.message };
        throw error;
      }
    },
    close: () => client.close(),
  };
}

async function perform(script: PeerScript): Promise<PeerReport> {
  const report: PeerReport = { uid: process.getuid!(), gid: process.getgid!(), groups: process.getgroups!(), results: [] };
  let client: { open: Opener; close(): void } | undefined;
  try {
    client = await connectVia(script);
    for (const step of script.steps) {
      const outcome = await client.open(step);
      if (!outcome.ok) {
        report.results.push({ ok: false, code: outcome.code, message: outcome.message });
        continue;
      }
      try {
        const probe = native.probeFdSync(outcome.fd);
        const result: PeerStepResult = { ok: true, name: outcome.name, fdDiskseq: probe.diskseq?.toString() ?? null };
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

/** The program: performs the script in args[0] and prints the report (failures included). */
export async function main(args: string[]): Promise<number> {
  try {
    process.stdout.write(`${JSON.stringify(await perform(JSON.parse(args[0] ?? '') as PeerScript))}\n`);
    return 0;
  } catch (error) {
    process.stdout.write(`${JSON.stringify({ failure: String(error) })}\n`);
    return 1;
  }
}
