/**
 * Backing files with known content for loop-device tests: a sparse file with marker
 * strings at known offsets, optionally a GPT written by sfdisk with 1 MiB-aligned
 * partitions, each starting with its own marker.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';

/** Bytes in one MiB; partitions and the default image size are counted in these. */
export const MiB = 1024 * 1024;
/** Every marker is exactly this many ASCII bytes, unique in its first 16. */
export const MARKER_BYTES = 32;

/** One partition of an image. */
export interface PartitionLayout {
  /** 1-based partition number (the kernel's PARTN). */
  number: number;
  startBytes: number;
  sizeBytes: number;
  /** The marker written at the partition's first byte. */
  marker: string;
}

/** What an image file holds and where. */
export interface ImageLayout {
  path: string;
  sizeBytes: number;
  /** The marker of the whole disk, at diskMarkerOffset. */
  diskMarker: string;
  diskMarkerOffset: number;
  partitions: PartitionLayout[];
}

/** How to build an image. */
export interface ImageSpec {
  /** Total size in MiB (default 8). */
  sizeMiB?: number;
  /** Sizes in MiB of GPT partitions to create, in order (none: no partition table). */
  partitionsMiB?: number[];
}

/**
 * A marker: `tag:` then random hex, MARKER_BYTES long. The random part starts within the
 * first 16 bytes, so `head -c 16` of two markers never collides.
 */
export function makeMarker(tag: string): string {
  const prefix = `${tag}:`;
  if (prefix.length > 8) throw new Error(`marker tag too long: ${tag}`);
  return (prefix + randomBytes(MARKER_BYTES).toString('hex')).slice(0, MARKER_BYTES);
}

/** Writes `text` at `offset` of an open file. */
function writeAt(fd: number, text: string, offset: number): void {
  const bytes = Buffer.from(text, 'ascii');
  if (writeSync(fd, bytes, 0, bytes.length, offset) !== bytes.length) throw new Error('short write');
}

/**
 * Creates `path` as described by `spec`: a GPT (sfdisk, 1 MiB-aligned, first partition at
 * 1 MiB) when partitions are asked for, then the markers. The disk marker goes at offset 0
 * (the protective MBR's boot-code area, which nothing reads), written after sfdisk so the
 * partitioning tool cannot wipe it.
 */
export function createImage(path: string, spec: ImageSpec = {}): ImageLayout {
  const sizeBytes = (spec.sizeMiB ?? 8) * MiB;
  const partitions: PartitionLayout[] = [];
  let start = 1 * MiB;
  for (const [i, sizeMiB] of (spec.partitionsMiB ?? []).entries()) {
    partitions.push({ number: i + 1, startBytes: start, sizeBytes: sizeMiB * MiB, marker: makeMarker(`P${i + 1}`) });
    start += sizeMiB * MiB;
  }
  // The backup GPT takes the last 33 sectors.
  if (start + MiB > sizeBytes && partitions.length > 0) throw new Error('partitions do not fit in the image');
  const fd = openSync(path, 'w+', 0o600);
  try {
    ftruncateSync(fd, sizeBytes);
  } finally {
    closeSync(fd);
  }
  if (partitions.length > 0) {
    const script = ['label: gpt', ...partitions.map(
      (p) => `start=${p.startBytes / 512}, size=${p.sizeBytes / 512}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4`,
    )].join('\n') + '\n';
    execFileSync('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', path], { input: script, stdio: ['pipe', 'pipe', 'pipe'] });
  }
  const diskMarker = makeMarker('D');
  const out = openSync(path, 'r+');
  try {
    writeAt(out, diskMarker, 0);
    for (const p of partitions) writeAt(out, p.marker, p.startBytes);
  } finally {
    closeSync(out);
  }
  return { path, sizeBytes, diskMarker, diskMarkerOffset: 0, partitions };
}

/** Reads MARKER_BYTES at `offset` through `fd` (pread: the fd's position is untouched). */
export function readMarker(fd: number, offset = 0): string {
  const buffer = Buffer.alloc(MARKER_BYTES);
  const n = readSync(fd, buffer, 0, MARKER_BYTES, offset);
  return buffer.subarray(0, n).toString('latin1');
}

/** Reads MARKER_BYTES at `offset` of a file by path. */
export function readFileMarker(path: string, offset = 0): string {
  const fd = openSync(path, 'r');
  try {
    return readMarker(fd, offset);
  } finally {
    closeSync(fd);
  }
}
