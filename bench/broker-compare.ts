/**
 * diskseqd against the floor broker (c-broker.c), driven by the same C client
 * (c-client.c), in rotating runs in one session so that drift on a noisy VM hits all
 * alike: open p50/p99 with one connection and sequential opens, and opens/s with four
 * connections of one request in flight each. A second floor, c-broker --hop, does the open
 * on a worker thread as diskseqd does (so that a hung device blocks only its thread): the
 * difference between the two floors is what that hand-off costs on this machine in C. The
 * daemon runs as in production (the shebang's flags, audit logging at info); its log goes
 * to a file, so no reader of the log shares the two CPUs with the brokers (in production
 * journald reads it).
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

/** The brokers compared: the C floor, the C floor with its open on a worker thread, diskseqd. */
export type Broker = 'floor' | 'hop' | 'daemon';

/** Every run of each broker and figure, in the order they ran. */
export interface BrokerComparison {
  sequential: Record<Broker, ClientRun[]>;
  parallel: Record<Broker, ClientRun[]>;
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

/** Starts c-broker (with `flags`) on `socket` for the loop; resolves once it listens. */
function startFloor(programs: CPrograms, socket: string, loop: LoopFixture, flags: string[] = []): Promise<() => void> {
  return new Promise((resolve, reject) => {
    const child = spawn(programs.broker, [...flags, socket, loop.diskseq.toString(), loop.devPath], { stdio: ['ignore', 'pipe', 'inherit'] });
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
  const stops: (() => void)[] = [];
  let daemon: DaemonProcess | undefined;
  const result: BrokerComparison = { sequential: { floor: [], hop: [], daemon: [] }, parallel: { floor: [], hop: [], daemon: [] } };
  try {
    stops.push(await startFloor(programs, join(dir, 'floor.sock'), loop));
    stops.push(await startFloor(programs, join(dir, 'hop.sock'), loop, ['--hop']));
    daemon = await DaemonProcess.start({ logLevel: options.logLevel, capture: 'file', nodeArgs: options.nodeArgs });
    const sockets: Record<Broker, string> = { floor: join(dir, 'floor.sock'), hop: join(dir, 'hop.sock'), daemon: daemon.socketPath };
    const brokers: Broker[] = ['floor', 'hop', 'daemon'];
    for (let round = 0; round < options.rounds; round++) {
      // Rotate who goes first, so that none always runs on a machine another warmed.
      const order = brokers.map((_, i) => brokers[(i + round) % brokers.length]!);
      for (const who of order) result.sequential[who].push(await runClient(programs, sockets[who], loop.diskseq, 1, options.sequentialOpens));
      for (const who of order) result.parallel[who].push(await runClient(programs, sockets[who], loop.diskseq, 4, options.parallelOpens));
    }
  } finally {
    for (const stop of stops) stop();
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
