/**
 * Fixtures for the LD_PRELOAD shim's tests and bench: the built shim (and a copy other
 * users can load), the probe program (native/preload/test/preload-probe.c, compiled here
 * with cc), a partitioned loop device, and a runner for unmodified tools with and without
 * the shim, as root or as another user.
 *
 * Every resource registers its cleanup on the test's teardown and, as a safety net, at
 * process exit. Nothing here touches a loop device it did not claim itself.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  chmodSync, closeSync, copyFileSync, existsSync, openSync, readSync, statSync, writeFileSync, writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { sleep, tempDir, type TeardownHost } from './cleanup.js';
import { DaemonProcess } from './daemon.js';
import { createLoop } from './loop.js';
import { whyUnreachable, type PeerIdentity } from './reachable.js';
import { REPO_ROOT, SHIM_PATH } from './repo.js';

let shimCopy: string | undefined;

/**
 * A copy of the shim that every user can load (a 0755 directory of its own, mode 0644),
 * made once per process and removed at exit. The dynamic loader of a program running as
 * another user opens LD_PRELOAD's file as that user: the checkout's build/Release may be
 * out of its reach (a checkout under /root).
 */
export function readableShim(): string {
  if (shimCopy === undefined) {
    const dir = tempDir(undefined, 'diskseqd-shim-', { shared: true });
    const copy = join(dir, 'libdiskseq-preload.so');
    copyFileSync(SHIM_PATH, copy);
    chmodSync(copy, 0o644);
    shimCopy = copy;
  }
  return shimCopy;
}

/** Compiles the probe program into `dir` and returns its path. */
export function buildProbe(dir: string): string {
  const out = join(dir, 'preload-probe');
  execFileSync('cc', ['-O2', '-Wall', '-pthread', '-o', out, join(REPO_ROOT, 'native', 'preload', 'test', 'preload-probe.c')], { stdio: ['ignore', 'pipe', 'pipe'] });
  return out;
}

/**
 * Builds and starts native/preload/test/null-broker.c in `dir`: it answers every open with
 * an fd of `device` described as (`diskseq`, `partition`) with the device's own dev_t, and
 * checks nothing — the shim's own cost in the bench, and a daemon that lies consistently
 * in the tests of the shim's re-check. Killed in teardown. Resolves to its socket path.
 */
export async function startNullBroker(t: TeardownHost, dir: string, device: string, diskseq: bigint, partition = 0): Promise<string> {
  const binary = join(dir, 'null-broker');
  const gen = join(REPO_ROOT, 'build', 'preload-gen');
  if (!existsSync(binary)) {
    execFileSync('cc', ['-O2', `-I${gen}`, '-o', binary, join(REPO_ROOT, 'native', 'preload', 'test', 'null-broker.c'),
      join(gen, 'diskseqd.pb-c.c'), '-lprotobuf-c'], { stdio: ['ignore', 'pipe', 'pipe'] });
  }
  const socket = join(dir, `null-${device.replaceAll('/', '_')}-${partition}.sock`);
  const child = spawn(binary, [socket, device, diskseq.toString(), String(partition)], { stdio: 'ignore' });
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  for (let i = 0; !existsSync(socket); i++) {
    if (i > 500 || child.exitCode !== null) throw new Error('null-broker did not start');
    await sleep(10);
  }
  return socket;
}

/** Result of running one command. */
export interface RunResult {
  status: number | null;
  stdout: Buffer;
  stderr: string;
}

/** How to run a command. */
export interface RunOptions {
  /** Preload the shim (default true). */
  shim?: boolean;
  /** DISKSEQD_SOCKET for the command. */
  socket?: string;
  /**
   * Run as this user, via setpriv (uid, gid, supplementary groups), with the shim copy
   * that user can load, from `/` as the working directory.
   */
  as?: PeerIdentity;
  input?: Buffer | string;
  env?: Record<string, string>;
}

/** Runs an unmodified command, by default with the shim preloaded. */
export function run(command: string, args: string[], options: RunOptions = {}): RunResult {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C', LC_ALL: 'C', ...options.env };
  const who = options.as;
  if (options.shim ?? true) env.LD_PRELOAD = who === undefined ? SHIM_PATH : readableShim();
  if (options.socket) env.DISKSEQD_SOCKET = options.socket;
  let argv = [command, ...args];
  if (who !== undefined) {
    // ld.so only warns when it cannot load the shim, and the tool then fails in ways that
    // do not say why: refuse to start it instead, naming the directory in the way.
    for (const path of [env.LD_PRELOAD, command.startsWith('/') ? command : undefined, options.socket]) {
      const why = path === undefined ? undefined : whyUnreachable(path, who);
      if (why !== undefined) throw new Error(`cannot run ${command} as uid ${who.uid}: ${why}`);
    }
    const groups = who.groups && who.groups.length > 0 ? `--groups=${who.groups.join(',')}` : '--clear-groups';
    argv = ['setpriv', `--reuid=${who.uid}`, `--regid=${who.gid}`, groups, '--', ...argv];
  }
  const result = spawnSync(argv[0]!, argv.slice(1), {
    env, input: options.input, maxBuffer: 64 * 1024 * 1024, timeout: 60_000, cwd: who === undefined ? undefined : '/',
  });
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr.toString() };
}

/** Runs the probe program and parses its one JSON line. */
export function probe(probePath: string, args: string[], options: RunOptions = {}): Record<string, unknown> {
  const result = run(probePath, args, options);
  const text = result.stdout.toString().trim();
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new Error(`probe ${args.join(' ')} exited ${result.status}: stdout ${JSON.stringify(text)} stderr ${JSON.stringify(result.stderr)}`);
  }
}

function sh(command: string, args: string[], input?: string): string {
  try {
    return execFileSync(command, args, { input, stdio: ['pipe', 'pipe', 'pipe'] }).toString();
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`${command} ${args.join(' ')} failed: ${stderr || String(error)}`);
  }
}

/** Partition sizes of the test disk in MiB, GPT: 1 for ext4, 2 with a marker in its first sector, 3 for LUKS2. */
export const PARTITIONS_MIB = [16, 1, 20];

/** A loop device this process claimed, with a GPT image and BLKPG partitions. */
export interface TestDisk {
  readonly index: number;
  /** The current disk instance (changes with reattach). */
  readonly diskseq: bigint;
  /** /dev/loopN */
  readonly devPath: string;
  /** /dev/loopNpM */
  partPath(n: number): string;
  /** Same loop device, new image: detach, re-claim with O_EXCL, attach, partx. */
  reattach(): void;
}

/** Content marker written at the start of partition 2 of an image (generation g). */
export function partitionMarker(generation: number): Buffer {
  const marker = Buffer.alloc(512);
  marker.write(`diskseqd-preload-marker-p2-generation-${generation}\n`);
  return marker;
}

/**
 * A loop fixture (testkit/loop.ts: claimed race-free, LO_FLAGS_PARTSCAN, partitions added
 * with partx) with a GPT of PARTITIONS_MIB, and partition 2's first sector set to the
 * marker of its generation: 0 at first, one more after every reattach.
 */
export function createTestDisk(t: TeardownHost): TestDisk {
  const spec = { sizeMiB: PARTITIONS_MIB.reduce((sum, mib) => sum + mib, 0) + 2, partitionsMiB: PARTITIONS_MIB };
  const loop = createLoop({ ...spec, partscan: true }, t);
  const partPath = (n: number): string => `/dev/${loop.partitionName(n)}`;
  let generation = 0;
  const mark = (): void => {
    const p2 = openSync(partPath(2), 'r+');
    try {
      const marker = partitionMarker(generation++);
      if (writeSync(p2, marker, 0, marker.length, 0) !== marker.length) throw new Error('short marker write');
    } finally {
      closeSync(p2);
    }
  };
  mark();
  return {
    index: loop.index,
    get diskseq() {
      return loop.diskseq;
    },
    devPath: loop.devPath,
    partPath,
    reattach(): void {
      loop.reattach(spec);
      mark();
    },
  };
}

/**
 * The daemon the shim talks to: the one runner (testkit/daemon.ts), its socket reachable
 * by every user (what a peer may do is the policy's business), its log in a file: the
 * tests run tools with spawnSync, which blocks this event loop, and a daemon writing its
 * audit lines into a full pipe would stall.
 */
export function startShimDaemon(t: TeardownHost, policy?: object): Promise<DaemonProcess> {
  return DaemonProcess.start({ capture: 'file', worldAccessible: true, policy }, t);
}

/** mkfs.ext4 with a known label and UUID (quiet). */
export function makeExt4(device: string, label: string, uuid: string): void {
  sh('mkfs.ext4', ['-q', '-F', '-L', label, '-U', uuid, device]);
}

/** A LUKS2 header (fast PBKDF) with a known UUID, keyed by a file in `dir`. */
export function makeLuks(device: string, dir: string, uuid: string): void {
  const keyFile = join(dir, 'luks.key');
  writeFileSync(keyFile, 'diskseqd-preload-test-key', { mode: 0o600 });
  sh('cryptsetup', ['luksFormat', '--batch-mode', '--type', 'luks2', '--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', '1000',
    '--uuid', uuid, '--key-file', keyFile, device]);
}

/** [major, minor] of a device node's st_rdev (glibc's dev_t encoding). */
export function majorMinor(node: string): [number, number] {
  const rdev = statSync(node, { bigint: true }).rdev;
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return [Number(major), Number(minor)];
}

/** The first `bytes` bytes of a device or file, read directly (no shim). */
export function head(path: string, bytes: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(bytes);
    return buffer.subarray(0, readSync(fd, buffer, 0, bytes, 0));
  } finally {
    closeSync(fd);
  }
}
