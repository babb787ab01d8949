/**
 * The churner of the race test, run as its own process so it re-attaches in parallel with
 * the clients: it claims `loops` loop devices and, as fast as it can, detaches each and
 * attaches it again to its backing file rewritten with a new marker. After every attach
 * it prints one JSON line {"t":"attach","slot","loop","diskseq","marker"} with the
 * diskseq read from its own fd (BLKGETDISKSEQ after LOOP_CONFIGURE), before anyone could
 * have been told about it.
 *
 * It stops — detaching everything it attached — on SIGTERM, SIGINT or end of stdin (the
 * test died), and then prints {"t":"done",...}. It only ever touches loop devices it
 * claimed: a device re-opened with O_EXCL after our detach that is bound to a file that
 * is not ours is left alone and replaced by a freshly claimed one.
 *
 * Usage: node churner-main.js '{"loops":3,"dir":"/tmp/x"}'
 */
import { closeSync, constants, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { native } from '../../native/index.js';
import { makeMarker, MiB } from '../../testkit/image.js';
import { sleepSync } from '../../testkit/cleanup.js';
import { claimLoopDevice, removeCreatedLoop } from '../../testkit/loop.js';

interface Slot {
  slot: number;
  index: number;
  /** The exclusive fd through which we configured the current binding; -1 when none. */
  fd: number;
  file: string;
  /** The claim of the current device made it exist: finish() removes it. */
  created: boolean;
}

const config = JSON.parse(process.argv[2] ?? '{}') as { loops: number; dir: string };
const slots: Slot[] = [];
let stopping = false;
let attaches = 0;
let replaced = 0;
let waits = 0;

function emit(record: Record<string, unknown>): void {
  // Synchronous for pipes on Linux: the line is out before the next attach.
  process.stdout.write(`${JSON.stringify(record)}\n`);
}

function backingOf(index: number): string | undefined {
  try {
    return readFileSync(`/sys/block/loop${index}/loop/backing_file`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Writes a new marker into the slot's file and attaches it through slot.fd (exclusive, unbound). */
function attach(slot: Slot): void {
  const marker = makeMarker(`C${slot.slot}`);
  const backing = openSync(slot.file, 'r+');
  try {
    writeSync(backing, Buffer.from(marker), 0, marker.length, 0);
    // AUTOCLEAR: if this process is killed (SIGKILL skips finish()), the kernel detaches at
    // the last close of the device instead of leaving it bound for good. While we live we
    // hold slot.fd, so it changes nothing for the churn.
    native.loopConfigure(slot.fd, backing, native.constants.LO_FLAGS_AUTOCLEAR, 0, 0);
  } finally {
    closeSync(backing);
  }
  const diskseq = native.probeFdSync(slot.fd).diskseq;
  attaches++;
  emit({ t: 'attach', slot: slot.slot, loop: slot.index, diskseq: diskseq?.toString() ?? null, marker });
}

function newFile(slot: number, index: number): string {
  const file = join(config.dir, `churn-${slot}-loop${index}.img`);
  const fd = openSync(file, 'w', 0o600);
  try {
    writeSync(fd, Buffer.alloc(1), 0, 1, 4 * MiB - 1);
  } finally {
    closeSync(fd);
  }
  return file;
}

/** Claims a fresh free loop device for `slot` and attaches it. */
function claimInto(slot: Slot): void {
  const { fd, index, created } = claimLoopDevice();
  slot.fd = fd;
  slot.index = index;
  slot.created = created;
  slot.file = newFile(slot.slot, index);
  attach(slot);
}

/**
 * Detaches the slot's binding and re-claims the same device. The real detach happens at
 * the last close, so while a client still holds an fd the device stays bound (autoclear);
 * we retry until it is unbound. Returns false when the device is lost to someone else.
 */
function detachAndReclaim(slot: Slot): boolean {
  native.loopClear(slot.fd);
  native.close(slot.fd);
  slot.fd = -1;
  for (let attempt = 0; attempt < 2000; attempt++) {
    let fd: number;
    try {
      fd = openSync(`/dev/loop${slot.index}`, constants.O_RDWR | constants.O_EXCL);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // ENXIO: in rundown; EBUSY: someone holds it exclusively (maybe a new owner).
      if (code !== 'ENXIO' && code !== 'EBUSY') throw error;
      waits++;
      sleepSync(1);
      continue;
    }
    if (native.probeFdSync(fd).loopBound === false) {
      slot.fd = fd;
      return true;
    }
    const backing = backingOf(slot.index);
    closeSync(fd); // if ours was the last reference, the pending detach completes here
    if (backing !== undefined && backing !== slot.file && !backing.startsWith(`${slot.file} `)) return false;
    waits++;
    sleepSync(1);
  }
  return false;
}

function churnOnce(): void {
  for (const slot of slots) {
    if (stopping) return;
    if (detachAndReclaim(slot)) {
      attach(slot);
    } else {
      replaced++;
      claimInto(slot);
    }
  }
}

function shutdown(): void {
  if (stopping) return;
  stopping = true;
}

function finish(): void {
  for (const slot of slots) {
    if (slot.fd < 0) continue;
    try {
      native.loopClear(slot.fd);
    } catch {
      // Already unbound: nothing to undo.
    }
    native.close(slot.fd);
    slot.fd = -1;
    if (slot.created) removeCreatedLoop(slot.index);
  }
  emit({ t: 'done', attaches, replaced, waits });
  process.exit(0);
}

process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
process.stdin.on('end', shutdown);
process.stdin.on('error', shutdown);
process.stdin.resume();

try {
  for (let i = 0; i < config.loops; i++) {
    const slot: Slot = { slot: i, index: -1, fd: -1, file: '', created: false };
    slots.push(slot);
    claimInto(slot);
  }
  emit({ t: 'ready' });
} catch (error) {
  emit({ t: 'error', message: String(error) });
  finish();
}

// Churn in bursts, yielding to the event loop between them so signals and stdin end are seen.
function burst(): void {
  try {
    const until = Date.now() + 20;
    while (!stopping && Date.now() < until) churnOnce();
  } catch (error) {
    emit({ t: 'error', message: (error as Error).stack ?? String(error) });
    stopping = true;
  }
  if (stopping) finish();
  else setImmediate(burst);
}
setImmediate(burst);
