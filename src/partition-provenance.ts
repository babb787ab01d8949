/**
 * Where each loop-disk partition came from (docs/design.md, "Registry", invariant 4): sysfs
 * cannot tell a partition added to this disk instance from one carried over from the
 * previous instance — BLKPG partitions of a loop without LO_FLAGS_PARTSCAN survive its
 * detach, and when one is held open the next attach's rescan fails with EBUSY and leaves
 * them under the new diskseq, the old offsets over the new bytes. Only the kernel's `add`
 * uevent says which instance a partition was added to. This keeps what the daemon learned
 * from those events, so that a full scan (at start, after a uevent overrun) admits a loop
 * partition by the same rule as the live path.
 *
 * A partition object is identified by its sysfs name and the inode of its sysfs directory:
 * the kernel gives every new partition a new kernfs node (and inode), and a partition
 * carried over keeps its own. One entry per name: {inode, diskseq of the instance it was
 * added to}. The rule (allows): a partition is admitted under disk instance D only if its
 * entry has its current inode and D. Entries come from `add` events (recordAdd), and from
 * full scans for objects no daemon has seen before (observe): those were created while no
 * daemon ran since boot (or its file was lost), so their provenance cannot be known; they
 * are recorded under the instance they are under now and served — the limit stated in
 * docs/design.md, "Known kernel limits".
 *
 * The entries are kept in memory (across overruns) and, when a runtime directory is given,
 * in a file there (`partition-provenance.json`), written atomically (temp file + rename;
 * no fsync: it lives on tmpfs until reboot) after every change, so that a restart or an
 * idle exit finds them. A file that is corrupt, from another boot, too large, or not the
 * daemon's own (owner, mode 0600) is ignored with a warning, never trusted. Bounded: at
 * most MAX_ENTRIES; beyond it new partitions are not recorded, and so not admitted.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from './log.js';
import { makeOwnDirectory, readOwnFile, writeOwnFile } from './own-file.js';

/** Entries kept at most: far more loop partitions than any system has at once. */
export const MAX_ENTRIES = 16384;
/** A larger file is refused unread (an entry takes well under 100 bytes). */
const MAX_FILE_BYTES = 4 * 1024 * 1024;
const FILE_NAME = 'partition-provenance.json';
const FORMAT = 'diskseqd-partition-provenance';
const VERSION = 1;
/** A sysfs partition name (what the kernel names partitions: loop3p1). */
const NAME = /^[A-Za-z0-9_.+:!-]{1,64}$/;
const DECIMAL = /^(0|[1-9][0-9]{0,19})$/;
const BOOT_ID_FILE = '/proc/sys/kernel/random/boot_id';

interface Entry {
  ino: bigint;
  diskseq: bigint;
}

export class PartitionProvenance {
  private readonly entries = new Map<string, Entry>();
  private dirty = false;
  private saveFailed = false;
  private fullWarned = false;

  /**
   * @param file where the entries are kept (null: in memory only, for tests of the registry)
   * @param bootId this boot's id; a file from another boot is ignored
   */
  private constructor(private readonly file: string | null, private readonly bootId: string, private readonly log?: Logger) {}

  /** In memory only: what a restart would forget. */
  static inMemory(): PartitionProvenance {
    return new PartitionProvenance(null, '');
  }

  /**
   * The provenance kept in `runtimeDir` (created 0700 if missing). Throws when the
   * directory is not a directory, not owned by root (or this process's user), or writable
   * by group or others: whoever could write there could make the daemon serve a carried-over
   * partition. A missing or untrustworthy file starts empty (with a warning for the latter).
   */
  static inDirectory(runtimeDir: string, log: Logger): PartitionProvenance {
    makeOwnDirectory(runtimeDir);
    const provenance = new PartitionProvenance(join(runtimeDir, FILE_NAME), readBootId(), log);
    provenance.load();
    return provenance;
  }

  /** Number of entries. */
  get size(): number {
    return this.entries.size;
  }

  /** The kernel announced partition `name` (sysfs directory inode `ino`) added to instance `diskseq`. */
  recordAdd(name: string, ino: bigint, diskseq: bigint): void {
    const old = this.entries.get(name);
    if (old?.ino === ino && old.diskseq === diskseq) return;
    this.set(name, { ino, diskseq });
  }

  /**
   * A full scan found partition `name` under instance `diskseq`. Recorded only when no
   * entry is about this very object (none for the name, or one for an earlier object of
   * that name): then no daemon saw it being added, and it is served where it is now.
   */
  observe(name: string, ino: bigint, diskseq: bigint): void {
    if (this.entries.get(name)?.ino === ino) return;
    this.set(name, { ino, diskseq });
  }

  /** The kernel announced the removal of partition `name`. */
  forget(name: string): void {
    if (this.entries.delete(name)) this.dirty = true;
  }

  /** Drops the entries of partitions a full scan no longer found. */
  retainOnly(names: ReadonlySet<string>): void {
    for (const name of this.entries.keys()) {
      if (!names.has(name)) {
        this.entries.delete(name);
        this.dirty = true;
      }
    }
  }

  /**
   * Drops the entries whose partition object is gone: sysfs has no such name now, or it is
   * another object of that name (`identityOf` gives its inode, null when gone). For the
   * first scan, which runs while the daemon serves and does not see every partition (see
   * Registry.startInitialScan): an entry it did not find may still be needed, and is
   * dropped only once its partition is known to be gone.
   */
  forgetGone(identityOf: (name: string) => bigint | null): void {
    for (const [name, entry] of this.entries) {
      if (identityOf(name) === entry.ino) continue;
      this.entries.delete(name);
      this.dirty = true;
    }
  }

  /** Whether partition `name` (inode `ino`) may be served as a partition of instance `diskseq`. */
  allows(name: string, ino: bigint | null, diskseq: bigint): boolean {
    const entry = this.entries.get(name);
    return ino !== null && entry !== undefined && entry.ino === ino && entry.diskseq === diskseq;
  }

  /**
   * Writes the entries if they changed: a temp file, then rename over the old one. A
   * failure is logged (once until a save succeeds again) and the entries stay in memory.
   */
  save(): void {
    if (!this.dirty || this.file === null) return;
    this.dirty = false;
    const body = JSON.stringify({
      format: FORMAT, version: VERSION, bootId: this.bootId,
      partitions: [...this.entries].map(([name, e]) => [name, e.ino.toString(), e.diskseq.toString()]),
    });
    try {
      writeOwnFile(this.file, [body]);
      if (this.saveFailed) this.log?.info({ file: this.file }, 'partition provenance saved again');
      this.saveFailed = false;
    } catch (error) {
      this.dirty = true;
      if (!this.saveFailed) {
        this.log?.error({ file: this.file, error: (error as Error).message },
          'cannot save partition provenance; a restart would serve partitions it cannot place');
      }
      this.saveFailed = true;
    }
  }

  private set(name: string, entry: Entry): void {
    if (!this.entries.has(name) && this.entries.size >= MAX_ENTRIES) {
      if (!this.fullWarned) this.log?.warn({ max: MAX_ENTRIES }, 'partition provenance is full; new loop partitions are not served');
      this.fullWarned = true;
      return;
    }
    this.entries.set(name, entry);
    this.dirty = true;
  }

  /** Reads the file, or starts empty (and says why when the file is there but not usable). */
  private load(): void {
    let text: string;
    try {
      text = readOwnFile(this.file!, MAX_FILE_BYTES).toString('utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        this.log?.info({ file: this.file }, 'no partition provenance yet (first start since boot)');
      } else {
        this.log?.warn({ file: this.file, why: (error as Error).message }, 'ignoring the partition provenance file');
      }
      return;
    }
    const parsed = parseProvenance(text, this.bootId);
    if (typeof parsed === 'string') {
      this.log?.warn({ file: this.file, why: parsed }, 'ignoring the partition provenance file');
      return;
    }
    for (const [name, entry] of parsed) this.entries.set(name, entry);
    this.log?.info({ file: this.file, partitions: parsed.size }, 'partition provenance loaded');
  }
}

/** The entries of a provenance file, or why it cannot be trusted. */
export function parseProvenance(text: string, bootId: string): Map<string, Entry> | string {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return 'not JSON';
  }
  const file = data as { format?: unknown; version?: unknown; bootId?: unknown; partitions?: unknown };
  if (typeof data !== 'object' || data === null || file.format !== FORMAT || file.version !== VERSION) return 'not a provenance file of this version';
  if (file.bootId !== bootId) return 'written during another boot';
  if (!Array.isArray(file.partitions) || file.partitions.length > MAX_ENTRIES) return 'no valid partition list';
  const entries = new Map<string, Entry>();
  for (const item of file.partitions as unknown[]) {
    if (!Array.isArray(item) || item.length !== 3) return 'a malformed entry';
    const [name, ino, diskseq] = item as unknown[];
    if (typeof name !== 'string' || !NAME.test(name) || typeof ino !== 'string' || !DECIMAL.test(ino)
      || typeof diskseq !== 'string' || !DECIMAL.test(diskseq) || entries.has(name)) return 'a malformed entry';
    entries.set(name, { ino: BigInt(ino), diskseq: BigInt(diskseq) });
  }
  return entries;
}

function readBootId(): string {
  try {
    return readFileSync(BOOT_ID_FILE, 'utf8').trim();
  } catch {
    return 'unknown'; // no /proc: a file from another boot cannot be told apart, but this is rare
  }
}
