/**
 * Loop-device fixtures for tests and benchmarks: claim a free loop device race-free,
 * attach a backing file with known content, add GPT partitions through BLKPG (partx),
 * re-attach another file to the same device ("same name, new diskseq"), and always clean
 * up — on t.teardown and, as a safety net, on process exit. Never touches a loop device
 * it did not claim itself.
 *
 * Ownership: a fixture holds one non-exclusive fd on /dev/loopN while attached. That fd
 * pins the binding (a kernel fact: an fd opened while bound keeps its device) without
 * O_EXCL, so the daemon's exclusive opens remain possible. Detach is LOOP_CLR_FD on it and
 * then its close (the real detach happens at the last close).
 */
import { execFileSync } from 'node:child_process';
import {
  closeSync, constants, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../native/index.js';
import { onExit, sleepSync, type TeardownHost } from './cleanup.js';
import { createImage, type ImageLayout, type ImageSpec } from './image.js';

/** How to create a loop fixture. */
export interface LoopOptions extends ImageSpec {
  /** Attach with LO_FLAGS_PARTSCAN (default false). */
  partscan?: boolean;
  /** Run `partx --add` after attaching when the image has partitions (default true). */
  addPartitions?: boolean;
}

/** The kernel's diskseq of block device `name` (e.g. loop3), from sysfs. */
export function sysfsDiskseq(name: string): bigint {
  return BigInt(readFileSync(`/sys/block/${name}/diskseq`, 'utf8').trim());
}

/** True while /sys/block/loopN says the loop device has a backing file. */
export function loopIsBound(index: number): boolean {
  return existsSync(`/sys/block/loop${index}/loop/backing_file`);
}

/** A loop device claimed by this process: held with O_EXCL, unbound. */
export interface LoopClaim {
  fd: number;
  index: number;
  /** This claim made the device exist; whoever releases it removes it again (removeCreatedLoop). */
  created: boolean;
}

/**
 * native.loopClaim, and whether the device is one this claim made exist: the claim makes
 * one with LOOP_CTL_ADD after losing a race to another claimer, and LOOP_CTL_GET_FREE makes
 * one when none is free; either way it was not in /sys/block before. Left behind, every
 * such device slows each later daemon start (its first scan).
 */
export function claimLoopDevice(): LoopClaim {
  const before = new Set(readdirSync('/sys/block'));
  const { fd, index } = native.loopClaim();
  return { fd, index, created: !before.has(`loop${index}`) };
}

/**
 * LOOP_CTL_REMOVE of a device this process made exist, once nobody holds it: retried while
 * it is still busy from its detach (EBUSY), for up to a second; then, or when another
 * process has taken it meanwhile, left as it is.
 */
export function removeCreatedLoop(index: number): void {
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      native.loopRemove(index);
      return;
    } catch (error) {
      if ((error as { code?: string }).code !== 'EBUSY') return; // ENODEV: gone already
      sleepSync(20);
    }
  }
}

function run(cmd: string, args: string[]): void {
  try {
    execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`${cmd} ${args.join(' ')} failed: ${stderr || String(error)}`);
  }
}

/**
 * partx --delete of every partition of `devPath`, retried for up to `waitMs`: the kernel
 * refuses (EBUSY) while any fd of a partition is open, and the daemon closes its own copies
 * of delivered and refused fds off the event loop, a moment after the client has its answer.
 */
export function deletePartitions(devPath: string, waitMs = 5000): void {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      run('partx', ['--delete', devPath]);
      return;
    } catch (error) {
      if (Date.now() >= deadline) throw new Error(`${(error as Error).message}; open by: ${holdersOf(devPath).join(', ') || 'no process found'}`);
      sleepSync(20);
    }
  }
}

/**
 * Processes with an fd on a partition of `devPath` (`pid comm fd -> target`), for failure
 * messages: matched by device number, so fds opened through the daemon's private nodes
 * (unlinked) count too.
 */
function holdersOf(devPath: string): string[] {
  const name = devPath.replace(/^\/dev\//, '');
  const devs = new Set<number>();
  try {
    for (const entry of readdirSync(`/sys/block/${name}`)) {
      if (!existsSync(`/sys/block/${name}/${entry}/partition`)) continue;
      const [major, minor] = readFileSync(`/sys/block/${name}/${entry}/dev`, 'utf8').trim().split(':').map(Number);
      devs.add((minor! & 0xff) | (major! << 8) | ((minor! & ~0xff) << 12));
    }
  } catch {
    return [];
  }
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((e) => /^[0-9]+$/.test(e))) {
    try {
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        let target: string;
        try {
          const st = statSync(`/proc/${pid}/fd/${fd}`);
          if (!st.isBlockDevice() || !devs.has(st.rdev)) continue;
          target = readlinkSync(`/proc/${pid}/fd/${fd}`);
        } catch {
          continue;
        }
        const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
        found.push(`${pid} ${comm} ${fd} -> ${target}`);
      }
    } catch {
      // gone, or not ours to read
    }
  }
  return found;
}

/** One loop device this process claimed, attached to a file it created. */
export class LoopFixture {
  /** N of /dev/loopN. */
  readonly index: number;
  readonly partscan: boolean;
  /** The temp directory holding this fixture's backing files (removed at cleanup). */
  readonly dir: string;
  /** The current image (replaced by reattach). */
  image!: ImageLayout;
  /** The current disk instance's diskseq (replaced by reattach). */
  diskseq = 0n;
  private holderFd = -1;
  private partitionsAdded = false;
  private readonly addPartitions: boolean;
  private generation = 0;
  private cleaned = false;

  /**
   * Use createLoop(). Takes ownership of `exclusiveFd` (the claimed, unbound device);
   * `created`: the claim made the device exist, and cleanup removes it.
   */
  constructor(exclusiveFd: number, index: number, options: LoopOptions, private readonly created = false) {
    this.index = index;
    this.partscan = options.partscan ?? false;
    this.addPartitions = options.addPartitions ?? true;
    this.dir = mkdtempSync(join(tmpdir(), `diskseqd-loop${index}-`));
    onExit(() => this.cleanup());
    try {
      this.attach(exclusiveFd, options);
    } catch (error) {
      this.cleanup();
      throw error;
    }
  }

  /** loopN */
  get name(): string {
    return `loop${this.index}`;
  }

  /** /dev/loopN */
  get devPath(): string {
    return `/dev/loop${this.index}`;
  }

  /** The kernel name of partition n, e.g. loop3p1. */
  partitionName(n: number): string {
    return `${this.name}p${n}`;
  }

  /** True while this fixture holds a binding. */
  get attached(): boolean {
    return this.holderFd >= 0;
  }

  /**
   * Attaches a new image through `exclusiveFd` (owned from here; closed here whatever
   * happens), then swaps to a non-exclusive holder fd.
   */
  private attach(exclusiveFd: number, spec: ImageSpec): void {
    try {
      this.image = createImage(join(this.dir, `image-${this.generation++}.img`), spec);
      const backing = openSync(this.image.path, 'r+');
      try {
        // AUTOCLEAR: a test process that dies without its teardown (SIGKILL, an ava
        // timeout) still leaves no bound loop device: the kernel detaches at the last close.
        const { LO_FLAGS_PARTSCAN, LO_FLAGS_AUTOCLEAR } = native.constants;
        const flags = LO_FLAGS_AUTOCLEAR | (this.partscan ? LO_FLAGS_PARTSCAN : 0);
        native.loopConfigure(exclusiveFd, backing, flags, 0, 0);
      } finally {
        closeSync(backing);
      }
      this.holderFd = openSync(this.devPath, constants.O_RDONLY);
    } finally {
      native.close(exclusiveFd);
    }
    const probe = native.probeFdSync(this.holderFd);
    if (probe.loopBound !== true || probe.diskseq === null) {
      throw new Error(`${this.name}: not bound after LOOP_CONFIGURE (probe ${JSON.stringify(probe, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))})`);
    }
    this.diskseq = probe.diskseq;
    const fromSysfs = sysfsDiskseq(this.name);
    if (fromSysfs !== this.diskseq) throw new Error(`${this.name}: BLKGETDISKSEQ ${this.diskseq} != sysfs ${fromSysfs}`);
    if (this.image.partitions.length > 0 && this.addPartitions) {
      this.partitionsAdded = true;
      run('partx', ['--add', this.devPath]);
      for (const p of this.image.partitions) {
        if (!existsSync(`/dev/${this.partitionName(p.number)}`)) throw new Error(`partx --add did not create /dev/${this.partitionName(p.number)}`);
      }
    }
  }

  /**
   * Detaches: deletes BLKPG partitions (they would survive a detach without PARTSCAN),
   * LOOP_CLR_FD, closes the holder, and waits until the device is unbound. Returns false
   * when someone else still holds it open (the detach then completes at their close).
   */
  detach(waitMs = 5000): boolean {
    if (this.holderFd < 0) return true;
    if (this.partitionsAdded) {
      deletePartitions(this.devPath);
      this.partitionsAdded = false;
    }
    try {
      native.loopClear(this.holderFd);
    } finally {
      closeSync(this.holderFd);
      this.holderFd = -1;
    }
    for (let waited = 0; loopIsBound(this.index); waited += 5) {
      if (waited >= waitMs) return false;
      sleepSync(5);
    }
    return true;
  }

  /**
   * Same device name, new disk instance: detaches, re-claims /dev/loopN with O_EXCL and
   * attaches a freshly created image. Fails clearly when the detach cannot complete or
   * another process claimed the device in between.
   */
  reattach(spec: ImageSpec = {}): void {
    const oldDiskseq = this.diskseq;
    if (!this.detach()) throw new Error(`${this.name}: still bound 5 s after detach (an fd on it was not closed)`);
    let fd: number;
    try {
      fd = openSync(this.devPath, constants.O_RDWR | constants.O_EXCL);
    } catch (error) {
      throw new Error(`${this.name}: could not re-claim it after detach (${(error as NodeJS.ErrnoException).code}); another process took it`);
    }
    if (native.probeFdSync(fd).loopBound !== false) {
      closeSync(fd);
      throw new Error(`${this.name}: bound by another process right after our detach; not touching it`);
    }
    this.attach(fd, spec);
    if (this.diskseq <= oldDiskseq) throw new Error(`${this.name}: diskseq did not grow (${oldDiskseq} -> ${this.diskseq})`);
  }

  /** Detaches (best effort) and removes the backing files; idempotent. */
  cleanup(): void {
    if (this.cleaned) return;
    this.cleaned = true;
    try {
      if (this.holderFd >= 0) {
        if (this.partitionsAdded) {
          try {
            deletePartitions(this.devPath);
          } catch (error) {
            console.error(`loop fixture cleanup: ${(error as Error).message}`);
          }
          this.partitionsAdded = false;
        }
        try {
          native.loopClear(this.holderFd);
        } catch (error) {
          console.error(`loop fixture cleanup: LOOP_CLR_FD on ${this.name}: ${(error as Error).message}`);
        }
        closeSync(this.holderFd);
        this.holderFd = -1;
      }
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
      if (this.created) removeCreatedLoop(this.index);
    }
  }
}

/**
 * Claims a free loop device and attaches a new image described by `options`. Cleanup is
 * registered on `t` (when given) and at process exit.
 */
export function createLoop(options: LoopOptions = {}, t?: TeardownHost): LoopFixture {
  const { fd, index, created } = claimLoopDevice();
  const fixture = new LoopFixture(fd, index, options, created);
  t?.teardown(() => fixture.cleanup());
  return fixture;
}

/** A free loop device held O_EXCL and left unbound, so nobody can attach to it meanwhile. */
export interface UnboundLoop {
  index: number;
  name: string;
  /** The diskseq it carries while unbound (left by its last detach). */
  diskseq: bigint;
  /** Closes the exclusive fd; idempotent. */
  release(): void;
}

/** Claims a free loop device and keeps it unbound (held with O_EXCL) until released. */
export function claimUnboundLoop(t?: TeardownHost): UnboundLoop {
  const { fd, index, created } = claimLoopDevice();
  const release = onExit(() => {
    native.close(fd);
    if (created) removeCreatedLoop(index);
  });
  try {
    const name = `loop${index}`;
    const diskseq = sysfsDiskseq(name);
    t?.teardown(release);
    return { index, name, diskseq, release };
  } catch (error) {
    release();
    throw error;
  }
}

/** A read-only loop device whose backing file LOOP_CHANGE_FD can switch. */
export interface ChangeableLoop {
  name: string;
  /** Switches to the other backing file (one uevent, and a new diskseq, each time). */
  changeFd(): void;
}

/**
 * A read-only loop device of the test's own that LOOP_CHANGE_FD switches between two
 * backing files. Detached and removed in teardown.
 */
export function readOnlyChangeableLoop(t: TeardownHost): ChangeableLoop {
  const dir = mkdtempSync(join(tmpdir(), 'diskseqd-changefd-'));
  const backing = [0, 1].map((i) => openSync(createImage(join(dir, `ro-${i}.img`), { sizeMiB: 1 }).path, 'r'));
  const { fd, index, created } = claimLoopDevice();
  t.teardown(() => {
    try {
      native.loopClear(fd);
    } catch (error) {
      if ((error as { code?: string }).code !== 'ENXIO') throw error;
    } finally {
      native.close(fd);
      for (const b of backing) closeSync(b);
      rmSync(dir, { recursive: true, force: true });
      if (created) removeCreatedLoop(index);
    }
  });
  const { LO_FLAGS_READ_ONLY, LO_FLAGS_AUTOCLEAR } = native.constants;
  native.loopConfigure(fd, backing[0]!, LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR, 0, 0);
  let current = 0;
  return { name: `loop${index}`, changeFd: () => native.loopChangeFd(fd, backing[(current = 1 - current)]!) };
}

/**
 * Re-attaches `loop` under the same name when it can. Between the detach and the new
 * claim the device is free, and another process on the machine (another test file, a
 * bench) may claim it first: then the test goes on with a fresh loop device instead.
 */
export function reattachOrReplace(t: TeardownHost & { log(...values: unknown[]): void }, loop: LoopFixture, options: LoopOptions): LoopFixture {
  try {
    loop.reattach(options);
    return loop;
  } catch (error) {
    if (!/re-claim|bound by another process/.test((error as Error).message)) throw error;
    t.log(`${loop.name} was claimed by another process after its detach; going on with a fresh loop device`);
    return createLoop({ ...options, partscan: loop.partscan }, t);
  }
}
