/**
 * Volume names of the storage provider (docs/storage-provider.md, "Names"): a disk
 * instance and nothing else. `N` is the whole disk of diskseq N, `N-partM` its partition
 * M — the names udev gives them under /dev/disk/by-diskseq/. A kernel name, a path or a
 * number written another way is not a name: identity is never re-derived from a name the
 * kernel reuses.
 */

/** What a volume name names. */
export interface Volume {
  diskseq: bigint;
  /** 0: the whole disk. */
  partition: number;
}

const NAME = /^([1-9][0-9]{0,19})(?:-part([1-9][0-9]{0,9}))?$/;
const MAX_DISKSEQ = 2n ** 64n - 1n;
const MAX_PARTITION = 2 ** 32 - 1;

/** The disk instance (and partition) `name` names, or undefined when it is no volume name. */
export function parseVolumeName(name: string): Volume | undefined {
  const match = NAME.exec(name);
  if (match === null) return undefined;
  const diskseq = BigInt(match[1]!);
  const partition = match[2] === undefined ? 0 : Number(match[2]);
  if (diskseq > MAX_DISKSEQ || partition > MAX_PARTITION) return undefined;
  return { diskseq, partition };
}

/** The name of a disk instance (partition 0) or of one of its partitions. */
export function volumeName(diskseq: bigint, partition: number): string {
  return partition === 0 ? `${diskseq}` : `${diskseq}-part${partition}`;
}

/**
 * Whether a client-sent name or template is a string at all (systemd's rule for names:
 * not empty, no control characters, no quotes or backslashes). What fails this is an
 * InvalidParameter; what passes it and is no volume name is NoSuchVolume.
 */
export function isSafeName(text: string): boolean {
  // eslint-disable-next-line no-control-regex
  return text.length > 0 && !/[\x00-\x1f\x7f"'\\]/.test(text);
}
