/**
 * The daemon's monotonic clock, in milliseconds: deadlines, stalls and durations.
 *
 * process.hrtime, not performance.now(): loading node:perf_hooks cost the daemon's start
 * about 4 ms before it could accept (require() timed in a fresh node), and the global
 * `performance`, which loads most of the same modules on first use, 1.6 ms.
 */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}
