/**
 * Fixtures for the LD_PRELOAD shim's tests and bench: the built shim, the probe program
 * (native/preload/test/preload-probe.c, compiled here with cc), a partitioned loop device
 * claimed race-free and attached with LO_FLAGS_PARTSCAN, the real daemon on a private
 * socket, and a runner for unmodified tools with and without the shim.
 *
 * Every resource registers its cleanup on the test's teardown and, as a safety net, at
 * process exit. Nothing here touches a loop device it did not claim itself.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, constants, existsSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { native } from '../native/index.js';

/** The repository root (this file runs from dist/testkit/). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** Where `make -C native/preload` puts the shim. */
export const SHIM_PATH = join(REPO_ROOT, 'build', 'Release', 'libdiskseq-preload.so');

/** Anything with ava's teardown; benches pass a collector of their own. */
export interface TeardownHost {
  teardown(fn: () => void | Promise<void>): void;
}

const atExit = new Set<() => void>();
process.once('exit', () => {
  for (const fn of [...atExit]) {
    try {
      fn();
    } catch {
      // best effort at exit: keep cleaning the rest
    }
  }
});

/** Registers `fn` (idempotent) on `t` and at process exit; returns it. */
function owned(t: TeardownHost, fn: () => void): () => void {
  let done = false;
  const once = (): void => {
    if (done) return;
    done = true;
    atExit.delete(once);
    fn();
  };
  atExit.add(once);
  t.teardown(once);
  return once;
}

/** A private temp directory (0755 so an unprivileged peer can reach what is in it). */
export function tempDir(t: TeardownHost, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  owned(t, () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Compiles the probe program into `dir` and returns its path. */
export function buildProbe(dir: string): string {
  const out = join(dir, 'preload-probe');
  execFileSync('cc', ['-O2', '-Wall', '-pthread', '-o', out, join(REPO_ROOT, 'native', 'preload', 'test', 'preload-probe.c')], { stdio: ['ignore', 'pipe', 'pipe'] });
  return out;
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
  /** Run as this uid (and gid = uid, no supplementary groups), via setpriv. */
  uid?: number;
  input?: Buffer | string;
  env?: Record<string, string>;
}

/** Runs an unmodified command, by default with the shim preloaded. */
export function run(command: string, args: string[], options: RunOptions = {}): RunResult {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C', LC_ALL: 'C', ...options.env };
  if (options.shim ?? true) env.LD_PRELOAD = SHIM_PATH;
  if (options.socket) env.DISKSEQD_SOCKET = options.socket;
  let argv = [command, ...args];
  if (options.uid !== undefined) argv = ['setpriv', `--reuid=${options.uid}`, `--regid=${options.uid}`, '--clear-groups', '--', ...argv];
  const result = spawnSync(argv[0]!, argv.slice(1), { env, input: options.input, maxBuffer: 64 * 1024 * 1024, timeout: 60_000 });
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

/** Partition layout of the test disk: sizes in MiB, GPT. */
export const PARTITIONS = [
  { number: 1, mib: 16 }, // ext4
  { number: 2, mib: 1 }, // a marker in its first sector
  { number: 3, mib: 20 }, // LUKS2
];

/** A loop device this process claimed, with a GPT image and BLKPG partitions. */
export interface TestDisk {
  index: number;
  /** The current disk instance (changes with reattach). */
  diskseq: bigint;
  /** /dev/loopN */
  devPath: string;
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
 * Claims a free loop device (native.loopClaim: race-free), attaches a sparse image with a
 * GPT table (PARTITIONS) with LO_FLAGS_PARTSCAN, adds the partitions with partx (BLKPG;
 * works without kernel partition parsers) and writes partition 2's marker. The holder fd
 * (non-exclusive) pins the binding until detach.
 */
export function createTestDisk(t: TeardownHost): TestDisk {
  const dir = tempDir(t, 'diskseqd-preload-disk-');
  let claim = native.loopClaim();
  const index = claim.index;
  const devPath = `/dev/loop${index}`;
  let holder = -1;
  let generation = 0;
  let partitioned = false;
  const disk: TestDisk = {
    index,
    diskseq: 0n,
    devPath,
    partPath: (n) => `${devPath}p${n}`,
    reattach(): void {
      detach();
      const fd = openSync(devPath, constants.O_RDWR | constants.O_EXCL);
      if (native.probeFdSync(fd).loopBound !== false) {
        closeSync(fd);
        throw new Error(`${devPath} was bound by someone else right after our detach; not touching it`);
      }
      claim = { fd, index };
      attach();
    },
  };
  const detach = (): void => {
    if (holder < 0) return;
    try {
      if (partitioned) sh('partx', ['--delete', devPath]);
      partitioned = false;
      native.loopClear(holder);
    } finally {
      closeSync(holder);
      holder = -1;
    }
    for (let i = 0; existsSync(`/sys/block/loop${index}/loop/backing_file`); i++) {
      if (i > 1000) throw new Error(`${devPath} still bound 5 s after detach`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
    }
  };
  const attach = (): void => {
    const image = join(dir, `image-${generation}.img`);
    try {
      writeFileSync(image, '');
      const totalMib = PARTITIONS.reduce((sum, p) => sum + p.mib, 0) + 2;
      sh('truncate', ['-s', `${totalMib}M`, image]);
      sh('sfdisk', ['--quiet', image], `label: gpt\n${PARTITIONS.map((p) => `size=${p.mib}MiB, type=L`).join('\n')}\n`);
      const backing = openSync(image, 'r+');
      try {
        native.loopConfigure(claim.fd, backing, native.constants.LO_FLAGS_PARTSCAN, 0, 0);
      } finally {
        closeSync(backing);
      }
      holder = openSync(devPath, constants.O_RDONLY);
    } finally {
      native.close(claim.fd);
      claim.fd = -1;
    }
    const probed = native.probeFdSync(holder);
    if (probed.loopBound !== true || probed.diskseq === null) throw new Error(`${devPath}: not bound after LOOP_CONFIGURE`);
    disk.diskseq = probed.diskseq;
    sh('partx', ['--add', devPath]);
    partitioned = true;
    const p2 = openSync(disk.partPath(2), 'r+');
    try {
      const marker = partitionMarker(generation);
      if (writeSync(p2, marker, 0, marker.length, 0) !== marker.length) throw new Error('short marker write');
    } finally {
      closeSync(p2);
    }
    generation++;
  };
  owned(t, () => {
    try {
      detach();
    } finally {
      if (claim.fd >= 0) native.close(claim.fd);
    }
  });
  attach();
  return disk;
}

/** A running real daemon (bin/diskseqd.js) on a private socket. */
export interface TestDaemon {
  socket: string;
  /** Its stdout+stderr so far, for failure messages. */
  output(): string;
  /** SIGTERM and wait (SIGKILL after 5 s); idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts `node bin/diskseqd.js --socket PATH [--policy FILE]` and waits until the socket
 * accepts connections. The socket is made world-connectable so unprivileged peers can be
 * tested (what they may do is the policy's business).
 */
export async function startDaemon(t: TeardownHost, options: { policy?: object } = {}): Promise<TestDaemon> {
  const dir = tempDir(t, 'diskseqd-preload-daemon-');
  const socket = join(dir, 'd.sock');
  const args = [join(REPO_ROOT, 'bin', 'diskseqd.js'), '--socket', socket];
  if (options.policy) {
    const policyFile = join(dir, 'policy.json');
    writeFileSync(policyFile, JSON.stringify(options.policy), { mode: 0o644 });
    args.push('--policy', policyFile);
  }
  // The log goes to a file, not a pipe: tests run tools with spawnSync, which blocks this
  // event loop, and a daemon writing its audit lines into a full pipe would stall.
  const logPath = join(dir, 'daemon.log');
  const logFd = openSync(logPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, args, { stdio: ['ignore', logFd, logFd] });
  } finally {
    closeSync(logFd);
  }
  const out = (): string => {
    try {
      return readFileSync(logPath, 'utf8');
    } catch {
      return '';
    }
  };
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once('exit', () => {
    exited = true;
    resolve();
  }));
  const kill = owned(t, () => {
    if (!exited) child.kill('SIGKILL');
  });
  const daemon: TestDaemon = {
    socket,
    output: out,
    async stop(): Promise<void> {
      if (!exited) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exit;
        clearTimeout(timer);
      }
      kill();
    },
  };
  t.teardown(() => daemon.stop());
  for (const started = Date.now(); ; await new Promise((r) => setTimeout(r, 20))) {
    if (exited) throw new Error(`diskseqd exited before serving:\n${out()}`);
    if (Date.now() - started > 10_000) throw new Error(`diskseqd did not accept connections within 10 s:\n${out()}`);
    if (!existsSync(socket)) continue;
    try {
      native.close(native.connectSeqpacket(socket, false));
      break;
    } catch {
      // bound but not listening yet
    }
  }
  chmodSync(socket, 0o666);
  return daemon;
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
