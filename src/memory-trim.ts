/**
 * Gives the memory a burst of work freed back to the kernel. glibc keeps what free() returns
 * inside its heaps for reuse and hands back only a free top of each heap; after the churn of
 * many connections or hostile packets most of the free pages sit in the middle, so the
 * daemon stays resident at its high-water mark (about 4 MiB of free malloc pages after
 * 100,000 fuzz packets, bench/memory.ts). After activity, and at most once per `delayMs`
 * while it goes on, the trimmer calls malloc_trim(0). An idle daemon never wakes for it. A
 * trim holds the JS thread for about 1 ms when it releases a few MiB (0.16 ms when there is
 * nothing to release): at most that, once a second, under load.
 */
import { native } from '../native/index.js';

/** How long after activity the heap is trimmed: once a second at most under load. */
export const TRIM_DELAY_MS = 1000;

export class MemoryTrimmer {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly delayMs = TRIM_DELAY_MS,
    private readonly trim: () => unknown = () => native.trimMalloc(),
  ) {}

  /** Memory was allocated and freed (a connection came or went, a request ended): trim soon. */
  touch(): void {
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.trim();
    }, this.delayMs);
    this.timer.unref(); // never what keeps the daemon (or a test) alive
  }
}
