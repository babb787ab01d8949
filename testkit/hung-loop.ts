/**
 * A loop device that hangs for real, for tests and benchmarks of hung devices
 * (docs/design.md, "Hung devices"). The recipe (KERNEL-FACTS, measured): a read-only loop
 * LOOP_CHANGE_FD'd onto a file on a FUSE mount this process controls (testkit/fuse-stall.c,
 * built here with cc); the FUSE server stops answering; one direct read of the loop hangs
 * in the kernel; a second LOOP_CHANGE_FD then waits for that read while holding the loop's
 * lo_mutex, and from then on every open of the loop sleeps in lo_open, holding the disk's
 * open_mutex, which every other open and close of the disk then waits for.
 *
 * Killing the FUSE server aborts its connection: the read fails, the second LOOP_CHANGE_FD
 * completes (onto a regular file) and everything that waited goes on. The reader and the
 * LOOP_CHANGE_FD run in child processes (they block uninterruptibly); this process never
 * holds an fd on the FUSE mount while it is silent (even an exec's close of one would hang).
 *
 * Cleanup, also on failure: kill the server, wait for the children, unmount, detach the
 * loop, and LOOP_CTL_REMOVE it when this process made it exist.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { native } from '../native/index.js';
import { onExit, sleep, type TeardownHost } from './cleanup.js';
import { createImage } from './image.js';
import { claimLoopDevice, removeCreatedLoop } from './loop.js';
import { REPO_ROOT } from './repo.js';

const SIZE_BYTES = 1 << 20;
const ADDON = join(REPO_ROOT, 'build', 'Release', 'diskseqd.node');

/** A loop device of this process's that `hang()` makes hang and `release()` frees. */
export interface HungLoop {
  /** loopN */
  readonly name: string;
  readonly index: number;
  /**
   * Switches the loop onto the (answering) FUSE file: a new disk instance. Returns its
   * diskseq, the one to ask the daemon for before and during the hang.
   */
  attach(): Promise<bigint>;
  /** Makes the loop hang (see the module comment); resolves once its openers would sleep. */
  hang(): Promise<void>;
  /** Kills the FUSE server: everything waiting on the loop goes on. Idempotent. */
  release(): Promise<void>;
  /** Releases, unmounts, detaches and removes; idempotent. */
  cleanup(): Promise<void>;
}

let built: string | undefined;

/** Compiles testkit/fuse-stall.c once per process (into a private temp dir). */
function fuseStallProgram(): string {
  if (built !== undefined && existsSync(built)) return built;
  const dir = mkdtempSync(join(tmpdir(), 'diskseqd-fuse-stall-'));
  onExit(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'fuse-stall');
  execFileSync('cc', ['-O2', '-Wall', '-Wextra', '-o', out, join(REPO_ROOT, 'testkit', 'fuse-stall.c')], { stdio: ['ignore', 'pipe', 'pipe'] });
  return (built = out);
}

/** The state letter of a process (/proc/PID/stat), or '' once it is gone. */
function processState(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]![0]!;
  } catch {
    return '';
  }
}

/**
 * Resolves once `child` has slept uninterruptibly (D) for 200 ms on end — a page fault
 * is D too, but brief; rejects if it exits, or after `ms`.
 */
async function untilBlocked(child: ChildProcess, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  let since: number | undefined;
  for (;;) {
    const state = processState(child.pid!);
    if (state === '' || child.exitCode !== null) throw new Error(`${what} did not block (it exited ${child.exitCode})`);
    since = state === 'D' ? since ?? Date.now() : undefined;
    if (since !== undefined && Date.now() - since >= 200) return;
    if (Date.now() > deadline) throw new Error(`${what} did not block within ${ms} ms (state ${state})`);
    await sleep(10);
  }
}

function exited(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Claims a free loop device and attaches a read-only regular file; see HungLoop. */
export function createHungLoop(t?: TeardownHost): HungLoop {
  const program = fuseStallProgram();
  const dir = mkdtempSync(join(tmpdir(), 'diskseqd-hung-loop-'));
  const mnt = join(dir, 'mnt');
  mkdirSync(mnt);
  const plain = [0, 1].map((i) => createImage(join(dir, `plain-${i}.img`), { sizeMiB: SIZE_BYTES / (1 << 20) }).path);
  // The claim may have made the device exist: then cleanup removes it.
  const { fd: claimed, index, created } = claimLoopDevice();
  let holder = -1;
  let server: ChildProcess | undefined;
  /** Resolves when the current server says it stopped answering. */
  let stalled: Promise<void> | undefined;
  let reader: ChildProcess | undefined;
  let changer: ChildProcess | undefined;
  let mounted = false;
  let cleaned = false;

  const release = async (): Promise<void> => {
    server?.kill('SIGKILL');
    await Promise.all([exited(server), exited(reader), exited(changer)]);
    server = reader = changer = stalled = undefined;
    if (mounted) {
      mounted = false;
      execFileSync('umount', ['-l', mnt], { stdio: 'ignore' });
    }
  };
  const cleanup = async (): Promise<void> => {
    if (cleaned) return;
    cleaned = true;
    try {
      await release();
    } finally {
      if (holder >= 0) {
        try {
          native.loopClear(holder);
        } catch {
          // Already unbound (autoclear after an earlier failure).
        }
        closeSync(holder);
        holder = -1;
      }
      rmSync(dir, { recursive: true, force: true });
      if (created) removeCreatedLoop(index);
    }
  };
  const atExit = onExit(() => {
    // Last resort (the test process dies): unhang, so nothing stays blocked.
    server?.kill('SIGKILL');
  });
  t?.teardown(async () => {
    await cleanup();
    atExit();
  });

  try {
    const backing = openSync(plain[0]!, 'r');
    try {
      const { LO_FLAGS_READ_ONLY, LO_FLAGS_AUTOCLEAR } = native.constants;
      native.loopConfigure(claimed, backing, LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR, 0, 0);
    } finally {
      closeSync(backing);
    }
    holder = openSync(`/dev/loop${index}`, 'r');
  } finally {
    native.close(claimed);
  }

  return {
    name: `loop${index}`,
    index,
    async attach() {
      await release();
      server = spawn(program, [mnt, String(SIZE_BYTES)], { stdio: ['ignore', 'pipe', 'inherit'] });
      const lines = createInterface({ input: server.stdout! });
      const said = (word: string): Promise<void> => new Promise((resolve, reject) => {
        lines.on('line', (line) => line === word && resolve());
        server!.once('exit', (code) => reject(new Error(`fuse-stall exited (${code}) before "${word}"`)));
      });
      stalled = said('stalled');
      stalled.catch(() => undefined);
      await said('ready');
      mounted = true;
      const file = openSync(join(mnt, 'disk.img'), 'r');
      try {
        native.loopChangeFd(holder, file);
      } finally {
        closeSync(file); // answered now; never held once the server is silent
      }
      return native.probeFdSync(holder).diskseq!;
    },
    async hang() {
      if (server === undefined || stalled === undefined) throw new Error('hang() needs attach() first');
      server.kill('SIGUSR1');
      await stalled;
      reader = spawn('dd', [`if=/dev/loop${index}`, 'iflag=direct', 'bs=4096', 'count=1', 'of=/dev/null', 'status=none'], { stdio: 'ignore' });
      await untilBlocked(reader, 'the read of the loop');
      const script = `const n = require(${JSON.stringify(ADDON)}); const fs = require('fs');
const loop = fs.openSync('/dev/loop${index}', 'r'), file = fs.openSync(${JSON.stringify(plain[1])}, 'r');
fs.writeSync(1, 'ioctl\\n'); n.loopChangeFd(loop, file);`;
      changer = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve, reject) => {
        createInterface({ input: changer!.stdout! }).once('line', () => resolve());
        changer!.once('exit', (code) => reject(new Error(`the second LOOP_CHANGE_FD exited (${code}) before its ioctl`)));
      });
      await untilBlocked(changer, 'the second LOOP_CHANGE_FD');
    },
    release,
    cleanup,
  };
}

