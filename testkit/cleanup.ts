/**
 * Cleaning up whatever happens, for tests and benchmarks: the teardown host both pass
 * around, a last-resort hook at process exit, temporary directories, and a bound on how
 * long a test waits for a promise (a hung child or daemon fails the test, never hangs it).
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Anything with ava's teardown: an ExecutionContext, or a bench's own collector. */
export interface TeardownHost {
  teardown(fn: () => void | Promise<void>): void;
}

const atExit = new Set<() => void>();
let exitHookInstalled = false;

/** A cleanup registered with onExit: call it to clean up now (once only). */
export interface ExitHook {
  (): void;
  /** Forgets the cleanup without running it (what it cleans up is gone already). */
  cancel(): void;
}

/**
 * Runs `fn` at process exit unless it ran before; returns the once-only function (call it
 * to clean up now). A test process killed by ava's timeout still releases what it holds.
 */
export function onExit(fn: () => void): ExitHook {
  let done = false;
  const once = ((): void => {
    if (done) return;
    done = true;
    atExit.delete(once);
    fn();
  }) as ExitHook;
  once.cancel = (): void => {
    done = true;
    atExit.delete(once);
  };
  atExit.add(once);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const cleanup of [...atExit]) {
        try {
          cleanup();
        } catch {
          // Best effort at exit: keep cleaning the rest.
        }
      }
    });
  }
  return once;
}

/** Registers `fn` (once only) on `t`, when given, and at process exit; returns it. */
export function owned(t: TeardownHost | undefined, fn: () => void): () => void {
  const once = onExit(fn);
  t?.teardown(once);
  return once;
}

/** How tempDir makes its directory. */
export interface TempDirOptions {
  /**
   * Mode 0755 instead of mkdtemp's 0700, so that unprivileged peers can reach what is in
   * it (a socket, a probe program, a copy of the shim).
   */
  shared?: boolean;
}

/** A fresh directory under the system temp directory, removed at teardown (and at exit). */
export function tempDir(t: TeardownHost | undefined, prefix = 'diskseqd-test-', options: TempDirOptions = {}): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (options.shared) chmodSync(dir, 0o755);
  owned(t, () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Resolves with what `promise` resolves to, or rejects after `ms` naming `what`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Sleeps synchronously (for fixtures that are synchronous; waits there are short). */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
