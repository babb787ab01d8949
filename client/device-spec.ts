/**
 * The DEVICE argument of diskseq-open: which disk instance (and partition) to open.
 *
 * Accepted, strictly (no signs, no leading zeros, no whitespace):
 *   42                              whole disk with diskseq 42
 *   42p1, 42-part1                  partition 1 of it
 *   /dev/disk/by-diskseq/42         whole disk (udev's path)
 *   /dev/disk/by-diskseq/42-part1   partition 1 (udev's spelling; `42p1` is accepted there
 *                                   too, as the LD_PRELOAD shim does)
 * diskseq: 1 .. 2^64-1 (0 is never a diskseq). Partition: 1 .. 2^32-1; a whole disk is
 * written without a suffix (`42p0` is rejected rather than guessed at).
 */

/** A parsed DEVICE argument. */
export interface DeviceSpec {
  diskseq: bigint;
  /** 0 for the whole disk. */
  partition: number;
}

const BY_DISKSEQ = '/dev/disk/by-diskseq/';
const UINT64_MAX = (1n << 64n) - 1n;
const UINT32_MAX = 0xffff_ffff;
const SPEC = /^([1-9][0-9]*)(?:(?:p|-part)([1-9][0-9]*))?$/;

/** Parses DEVICE; throws a RangeError whose message says what is wrong. */
export function parseDeviceSpec(text: string): DeviceSpec {
  const name = text.startsWith(BY_DISKSEQ) ? text.slice(BY_DISKSEQ.length) : text;
  const match = SPEC.exec(name);
  if (match === null) {
    throw new RangeError(`invalid DEVICE ${JSON.stringify(text)}: expected N, NpM, N-partM, ` +
      `${BY_DISKSEQ}N or ${BY_DISKSEQ}N-partM (N a diskseq >= 1, M a partition >= 1)`);
  }
  const diskseq = BigInt(match[1]!);
  if (diskseq > UINT64_MAX) throw new RangeError(`invalid DEVICE ${JSON.stringify(text)}: diskseq exceeds 2^64-1`);
  let partition = 0;
  if (match[2] !== undefined) {
    // Compare as a bigint first: a long digit string is not safely a Number.
    if (BigInt(match[2]) > BigInt(UINT32_MAX)) {
      throw new RangeError(`invalid DEVICE ${JSON.stringify(text)}: partition exceeds 2^32-1`);
    }
    partition = Number(match[2]);
  }
  return { diskseq, partition };
}

/** The canonical short form of a DeviceSpec: `42` or `42p1`. */
export function formatDeviceSpec(spec: DeviceSpec): string {
  return spec.partition === 0 ? `${spec.diskseq}` : `${spec.diskseq}p${spec.partition}`;
}
