/**
 * One loop device for the hostile tests: claimed race-free (native.loopClaim), attached to
 * a small backing file this process created with known content, and always cleaned up —
 * on t.teardown and, as a safety net, at process exit. Never touches a device it did not
 * claim.
 *
 * Ownership: while attached the loop holds one non-exclusive fd on /dev/loopN, which pins
 * the binding without O_EXCL (so the daemon's exclusive opens stay possible). Cleanup is
 * LOOP_CLR_FD on it, then its close.
 */
import { closeSync, constants, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../../native/index.js';
import type { TeardownHost } from './hostile-daemon.js';

/** A loop device this process attached. */
export interface HostileLoop {
  index: number;
  /** loopN */
  name: string;
  /** The attached instance's diskseq (BLKGETDISKSEQ on the holder fd). */
  diskseq: bigint;
  /** The first bytes of the backing file, to check an fd reads this device. */
  marker: Buffer;
  /** Detaches and removes the backing file; idempotent. */
  cleanup(): void;
}

const live = new Set<HostileLoop>();
let exitHook = false;

/** Claims a free loop device and attaches a fresh 1 MiB file to it. */
export function createHostileLoop(t?: TeardownHost): HostileLoop {
  const dir = mkdtempSync(join(tmpdir(), 'diskseqd-hostile-loop-'));
  const marker = Buffer.from(`diskseqd-hostile ${process.pid} ${Date.now()} ${Math.random()}\n`);
  const image = join(dir, 'image');
  const content = Buffer.alloc(1 << 20);
  marker.copy(content);
  writeFileSync(image, content);
  let holder = -1;
  let claimed: { fd: number; index: number } | undefined;
  let cleaned = false;
  const cleanup = (): void => {
    if (cleaned) return;
    cleaned = true;
    live.delete(loop);
    try {
      if (holder >= 0) {
        try {
          native.loopClear(holder);
        } catch (error) {
          console.error(`hostile loop cleanup: LOOP_CLR_FD: ${(error as Error).message}`);
        }
        closeSync(holder);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  const loop: HostileLoop = { index: -1, name: '', diskseq: 0n, marker, cleanup };
  live.add(loop);
  if (!exitHook) {
    exitHook = true;
    process.once('exit', () => {
      for (const l of [...live]) l.cleanup();
    });
  }
  t?.teardown(cleanup);
  try {
    claimed = native.loopClaim();
    loop.index = claimed.index;
    loop.name = `loop${claimed.index}`;
    const backing = openSync(image, 'r+');
    try {
      native.loopConfigure(claimed.fd, backing, 0, 0, 0);
    } finally {
      closeSync(backing);
    }
    holder = openSync(`/dev/${loop.name}`, constants.O_RDONLY);
    native.close(claimed.fd);
    claimed = undefined;
    const probe = native.probeFdSync(holder);
    if (probe.loopBound !== true || probe.diskseq === null) throw new Error(`${loop.name} is not bound after LOOP_CONFIGURE`);
    loop.diskseq = probe.diskseq;
    const sysfs = BigInt(readFileSync(`/sys/block/${loop.name}/diskseq`, 'utf8').trim());
    if (sysfs !== loop.diskseq) throw new Error(`${loop.name}: BLKGETDISKSEQ ${loop.diskseq} != sysfs ${sysfs}`);
    return loop;
  } catch (error) {
    if (claimed !== undefined) native.close(claimed.fd);
    cleanup();
    throw error;
  }
}

/** The highest diskseq of any block device now (sysfs), to keep fuzzed opens off others' devices. */
export function highestDiskseqNow(): bigint {
  let highest = 0n;
  for (const name of readdirNames('/sys/class/block')) {
    try {
      const value = BigInt(readFileSync(`/sys/class/block/${name}/diskseq`, 'utf8').trim());
      if (value > highest) highest = value;
    } catch {
      // Partitions have no diskseq file; devices can vanish while we read.
    }
  }
  return highest;
}

function readdirNames(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
