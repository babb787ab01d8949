/**
 * Long work — List and Watch snapshots — done in small steps, one job's step after
 * another's in turn, and at most a slice of time per turn of the event loop
 * (docs/design.md, "Limits: fair turns"). Between turns Node polls the sockets, so an open
 * that arrives meanwhile is read, started and answered while the snapshots go on: one
 * connection's batch never runs back to back with the next, ahead of another's request.
 */
import { monotonicMs } from './clock.js';

/**
 * One step of a job: do some work, no later than `deadline` (monotonicMs(), src/clock.ts) if more
 * than a little is left, and return whether more remains.
 */
export type Step = (deadline: number) => boolean;

interface Job {
  step: Step;
  signal: AbortSignal | undefined;
  settle(done: boolean | Error): void;
  next: Job | undefined;
}

/** A round-robin of jobs, each step taken in turn, a bounded slice per event-loop turn. */
export class FairTurns {
  private head: Job | undefined;
  private tail: Job | undefined;
  private scheduled = false;
  private count = 0;

  /** `sliceMs`: how long one turn of the event loop may spend on these jobs. */
  constructor(private readonly sliceMs = 1) {}

  /** Jobs not finished yet. */
  get active(): number {
    return this.count;
  }

  /**
   * Runs `step` in turn with every other job until it returns false. Resolves true then,
   * false when `signal` aborts first (looked at before every step); rejects when a step
   * throws.
   */
  run(step: Step, signal?: AbortSignal): Promise<boolean> {
    return new Promise((resolve, reject) => {
      const job: Job = {
        step, signal, next: undefined,
        settle: (done) => (done instanceof Error ? reject(done) : resolve(done)),
      };
      this.count++;
      this.enqueue(job);
      this.schedule();
    });
  }

  private enqueue(job: Job): void {
    job.next = undefined;
    if (this.tail === undefined) this.head = job;
    else this.tail.next = job;
    this.tail = job;
  }

  private dequeue(): Job | undefined {
    const job = this.head;
    if (job !== undefined) {
      this.head = job.next;
      if (this.head === undefined) this.tail = undefined;
    }
    return job;
  }

  private schedule(): void {
    if (this.scheduled || this.head === undefined) return;
    this.scheduled = true;
    setImmediate(() => this.turn());
  }

  private turn(): void {
    this.scheduled = false;
    const deadline = monotonicMs() + this.sliceMs;
    do {
      const job = this.dequeue();
      if (job === undefined) break;
      if (job.signal?.aborted) {
        this.finish(job, false);
        continue;
      }
      let more: boolean;
      try {
        more = job.step(deadline);
      } catch (error) {
        this.finish(job, error instanceof Error ? error : new Error(String(error)));
        continue;
      }
      if (more) this.enqueue(job);
      else this.finish(job, !job.signal?.aborted);
    } while (monotonicMs() < deadline);
    this.schedule();
  }

  private finish(job: Job, done: boolean | Error): void {
    this.count--;
    job.settle(done);
  }
}
