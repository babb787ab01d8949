/**
 * Low-level fixtures for the tests of the native addon itself: a free loop device claimed
 * race-free and held with its exclusive fd (the addon's own loop calls act on that fd),
 * and backing images, all cleaned up in teardown. Tests of the daemon use the loop
 * fixtures of testkit/loop.ts instead.
 */
import type { ExecutionContext } from 'ava';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { native } from '../../native/index.js';
import { tempDir } from '../../testkit/cleanup.js';
import { claimLoopDevice, removeCreatedLoop } from '../../testkit/loop.js';

/** A backing image of `size` bytes (first byte = marker), opened read-write; fd closed in teardown. */
export function makeImage(t: ExecutionContext, size: number, marker = 0x5a): { path: string; fd: number } {
  const path = join(tempDir(t, 'diskseqd-native-'), 'image');
  const bytes = Buffer.alloc(size);
  bytes[0] = marker;
  writeFileSync(path, bytes);
  const fd = openSync(path, 'r+');
  t.teardown(() => closeSync(fd));
  return { path, fd };
}

/** A claimed loop device; teardown clears it (if bound) and closes the exclusive fd. */
export interface ClaimedLoop {
  fd: number;
  index: number;
  path: string;
  /** loopN */
  name: string;
}

/** Claims a free loop device race-free (native.loopClaim); always released in teardown, and removed if the claim made it. */
export function claimLoop(t: ExecutionContext): ClaimedLoop {
  const { fd, index, created } = claimLoopDevice();
  t.teardown(() => {
    try {
      native.loopClear(fd);
    } catch (error) {
      // ENXIO: never bound or already cleared.
      if ((error as { code?: string }).code !== 'ENXIO') throw error;
    } finally {
      native.close(fd);
      if (created) removeCreatedLoop(index);
    }
  });
  return { fd, index, path: `/dev/loop${index}`, name: `loop${index}` };
}

/** /sys/block/loopN/dev as [major, minor]. */
export function sysfsDev(index: number): [number, number] {
  const [major, minor] = readFileSync(`/sys/block/loop${index}/dev`, 'utf8').trim().split(':');
  return [Number(major), Number(minor)];
}

/**
 * LOOP_CONFIGURE with LO_FLAGS_AUTOCLEAR added, so that a test process that dies before its
 * teardown still detaches the device at its last close (process exit).
 */
export function attachLoop(loop: ClaimedLoop, backingFd: number, flags = 0, offset = 0, sizelimit = 0): void {
  native.loopConfigure(loop.fd, backingFd, flags | native.constants.LO_FLAGS_AUTOCLEAR, offset, sizelimit);
}
