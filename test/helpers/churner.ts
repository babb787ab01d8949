/**
 * Runs churner-main.js as a child process and collects its diskseq -> marker records.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { TeardownHost } from '../../testkit/cleanup.js';

const CHURNER_MAIN = fileURLToPath(new URL('./churner-main.js', import.meta.url));

/** One attach the churner made. */
export interface AttachRecord {
  slot: number;
  loop: number;
  diskseq: bigint;
  marker: string;
}

/** Summary the churner prints when it stops. */
export interface ChurnSummary {
  attaches: number;
  replaced: number;
  waits: number;
}

/** A running churner. */
export class Churner {
  /** diskseq (decimal) -> attach, for every attach so far. */
  readonly byDiskseq = new Map<string, AttachRecord>();
  /** The latest attaches per slot, newest last (bounded). */
  readonly recent: AttachRecord[][] = [];
  errors: string[] = [];
  private readonly child: ChildProcess;
  private readonly dir: string;
  private readonly ready: Promise<void>;
  private readonly done: Promise<ChurnSummary>;
  private stderr = '';

  constructor(loops: number) {
    this.dir = mkdtempSync(join(tmpdir(), 'diskseqd-churn-'));
    this.child = spawn(process.execPath, [CHURNER_MAIN, JSON.stringify({ loops, dir: this.dir })], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stderr!.on('data', (c: Buffer) => (this.stderr += c.toString()));
    let onReady: () => void;
    let onDone: (s: ChurnSummary) => void;
    this.ready = new Promise((resolve) => (onReady = resolve));
    this.done = new Promise((resolve) => (onDone = resolve));
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      const r = JSON.parse(line) as Record<string, unknown>;
      if (r.t === 'attach') {
        const record: AttachRecord = { slot: r.slot as number, loop: r.loop as number, diskseq: BigInt(r.diskseq as string), marker: r.marker as string };
        this.byDiskseq.set(record.diskseq.toString(), record);
        const list = (this.recent[record.slot] ??= []);
        list.push(record);
        if (list.length > 8) list.shift();
      } else if (r.t === 'ready') onReady();
      else if (r.t === 'error') this.errors.push(r.message as string);
      else if (r.t === 'done') onDone(r as unknown as ChurnSummary);
    });
    this.child.once('close', (code) => {
      if (code !== 0) this.errors.push(`churner exited with ${code}: ${this.stderr}`);
      onReady();
      onDone({ attaches: -1, replaced: -1, waits: -1 });
    });
  }

  /** Starts a churner over `loops` devices; it is stopped at teardown and at exit. */
  static async start(loops: number, t?: TeardownHost): Promise<Churner> {
    const churner = new Churner(loops);
    t?.teardown(async () => {
      await churner.stop();
    });
    await churner.ready;
    if (churner.errors.length > 0) throw new Error(`churner failed to start: ${churner.errors.join('; ')}`);
    return churner;
  }

  /** Stops the churner (it detaches everything) and resolves with its summary; idempotent. */
  async stop(): Promise<ChurnSummary> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    const summary = await this.done;
    clearTimeout(timer);
    rmSync(this.dir, { recursive: true, force: true });
    return summary;
  }
}
