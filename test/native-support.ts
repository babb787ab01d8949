/**
 * Shared setup for the native addon tests: root gating, claimed loop devices and backing
 * images that are always cleaned up.
 */
import test, { type ExecutionContext, type TestFn } from 'ava';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../native/index.js';

const isRoot = process.getuid?.() === 0;
const inCi = process.env.CI === 'true' || process.env.CI === '1';

/**
 * `test` for tests that need root and loop devices. Not root and not CI: skipped with a loud
 * reason. Not root in CI: the test runs and fails on its first line (requireRoot).
 */
export const rootTest: TestFn = isRoot || inCi ? test : (test.skip as unknown as TestFn);
if (!isRoot && !inCi) {
  console.warn('!!! native tests needing root are SKIPPED: not running as root (set CI=true to fail instead)');
}

/** Fails the test when not root (reached only in CI). */
export function requireRoot(t: ExecutionContext): void {
  if (!isRoot) t.fail('this test needs root and loop devices');
}

/** A temporary directory removed in teardown. */
export function tempDir(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'diskseqd-native-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A backing image of `size` bytes (first byte = marker), opened read-write; fd closed in teardown. */
export function makeImage(t: ExecutionContext, size: number, marker = 0x5a): { path: string; fd: number } {
  const path = join(tempDir(t), 'image');
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
}

/** Claims a free loop device race-free (native.loopClaim); always released in teardown. */
export function claimLoop(t: ExecutionContext): ClaimedLoop {
  const { fd, index } = native.loopClaim();
  t.teardown(() => {
    try {
      native.loopClear(fd);
    } catch (error) {
      // ENXIO: never bound or already cleared.
      if ((error as { code?: string }).code !== 'ENXIO') throw error;
    } finally {
      native.close(fd);
    }
  });
  return { fd, index, path: `/dev/loop${index}` };
}

/** /sys/block/loopN/diskseq as a bigint. */
export function sysfsDiskseq(index: number): bigint {
  return BigInt(readFileSync(`/sys/block/loop${index}/diskseq`, 'utf8').trim());
}

/** /sys/block/loopN/dev as [major, minor]. */
export function sysfsDev(index: number): [number, number] {
  const [major, minor] = readFileSync(`/sys/block/loop${index}/dev`, 'utf8').trim().split(':');
  return [Number(major), Number(minor)];
}

/** The open-file flags of fd in this process (/proc/self/fdinfo), e.g. to check O_CLOEXEC. */
export function fdFlags(fd: number): number {
  const match = /^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  if (match === null) throw new Error(`no flags in /proc/self/fdinfo/${fd}`);
  return parseInt(match[1], 8);
}

/**
 * LOOP_CONFIGURE with LO_FLAGS_AUTOCLEAR added, so that a test process that dies before its
 * teardown still detaches the device at its last close (process exit).
 */
export function attachLoop(loop: ClaimedLoop, backingFd: number, flags = 0, offset = 0, sizelimit = 0): void {
  native.loopConfigure(loop.fd, backingFd, flags | native.constants.LO_FLAGS_AUTOCLEAR, offset, sizelimit);
}
