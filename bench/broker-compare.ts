/**
 * diskseqd against the floor broker (c-broker.c), driven by the same C client
 * (c-client.c), alternating runs in one session so that drift on a noisy VM hits both
 * alike: open p50/p99 with one connection and sequential opens, and opens/s with four
 * connections of one request in flight each. The daemon runs as in production (the
 * shebang's flags, audit logging at info); its log goes to a file, so no reader of the
 * log shares the two CPUs with the brokers (in production journald reads it).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DaemonProcess } from '../testkit/daemon.js';
import type { LoopFixture } from '../testkit/loop.js';
import { buildCPrograms, type CPrograms } from './c-programs.js';

/** One c-client run. */
export interface ClientRun {
  opens: number;
  seconds: number;
  opensPerSecond: number;
  p50Us: number;
  p99Us: number;
}

/** Every run of each broker and figure, in the order they ran. */
export interface BrokerComparison {
  sequential: { floor: ClientRun[]; daemon: ClientRun[] };
  parallel: { floor: ClientRun[]; daemon: ClientRun[] };
}

/** How much to run. */
export interface CompareOptions {
  rounds: number;
  /** Opens per sequential (one connection) run. */
  sequentialOpens: number;
  /** Opens per four-connection run, in all. */
  parallelOpens: number;
  logLevel: string;
  /** Node options for the daemon (e.g. --cpu-prof). */
  nodeArgs?: string[];
}

/** Runs c-client once; rejects with its stderr when it fails. */
function runClient(programs: CPrograms, socket: string, diskseq: bigint, connections: number, opens: number): Promise<ClientRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(programs.client, [socket, diskseq.toString(), String(connections), String(opens)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('close', (code) => {
      if (code === 0) resolve(JSON.parse(out) as ClientRun);
      else reject(new Error(`c-client against ${socket} failed (exit ${code}): ${err.trim()}`));
    });
  });
}

/** Starts c-broker on `socket` for the loop; resolves once it listens. */
function startFloor(programs: CPrograms, socket: string, loop: LoopFixture): Promise<() => void> {
  return new Promise((resolve, reject) => {
    const child = spawn(programs.broker, [socket, loop.diskseq.toString(), loop.devPath], { stdio: ['ignore', 'pipe', 'inherit'] });
    const stop = (): void => {
      child.kill('SIGTERM');
    };
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`c-broker exited (${code}) before it was ready`)));
    createInterface({ input: child.stdout }).once('line', (line) => {
      if (line === 'ready') resolve(stop);
      else reject(new Error(`c-broker said ${line}`));
    });
  });
}

/** Builds the C programs, starts both brokers and runs the rounds (see the module comment). */
export async function compareWithFloor(loop: LoopFixture, options: CompareOptions): Promise<BrokerComparison> {
  const programs = buildCPrograms();
  const dir = mkdtempSync(join(tmpdir(), 'diskseqd-bench-floor-'));
  const floorSocket = join(dir, 'floor.sock');
  let stopFloor: (() => void) | undefined;
  let daemon: DaemonProcess | undefined;
  const result: BrokerComparison = { sequential: { floor: [], daemon: [] }, parallel: { floor: [], daemon: [] } };
  try {
    stopFloor = await startFloor(programs, floorSocket, loop);
    daemon = await DaemonProcess.start({ logLevel: options.logLevel, capture: 'file', nodeArgs: options.nodeArgs });
    const sockets = { floor: floorSocket, daemon: daemon.socketPath };
    for (let round = 0; round < options.rounds; round++) {
      // Alternate who goes first, so neither always runs on a machine the other warmed.
      const order = round % 2 === 0 ? (['floor', 'daemon'] as const) : (['daemon', 'floor'] as const);
      for (const who of order) result.sequential[who].push(await runClient(programs, sockets[who], loop.diskseq, 1, options.sequentialOpens));
      for (const who of order) result.parallel[who].push(await runClient(programs, sockets[who], loop.diskseq, 4, options.parallelOpens));
    }
  } finally {
    stopFloor?.();
    await daemon?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return result;
}

/** The median of some numbers. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
