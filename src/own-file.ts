/**
 * Files the daemon keeps for itself: loop partitions' provenance in its runtime directory,
 * the code cache in its cache directory. Whoever could write one could make the daemon
 * serve what it must not or run what it did not ship, so a file is read only when it is
 * the daemon's own, in a directory nobody else can write to, and written whole or not at
 * all: to a temporary file, then renamed over the old one. No fsync: the runtime directory
 * is on tmpfs and ends with the boot, and a code cache that a crash left torn fails its
 * checksum and is written again.
 */
import { closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';

const euid = (): number => process.geteuid?.() ?? 0;
const octal = (mode: number): string => (mode & 0o7777).toString(8).padStart(4, '0');

/**
 * Throws unless `dir` is a directory (not a symlink to one) owned by root or by this
 * process's user and writable by nobody else. `what` names it in the error.
 */
export function checkOwnDirectory(dir: string, what = 'runtime directory'): void {
  const stat = lstatSync(dir);
  if (!stat.isDirectory()) throw new Error(`${what} ${dir} is not a directory`);
  if (stat.uid !== 0 && stat.uid !== euid()) throw new Error(`${what} ${dir} is owned by uid ${stat.uid}; it must be owned by root`);
  if ((stat.mode & 0o022) !== 0) throw new Error(`${what} ${dir} is writable by others (mode ${octal(stat.mode)})`);
}

/** checkOwnDirectory, after creating `dir` (mode 0700) if it is missing. */
export function makeOwnDirectory(dir: string, what = 'runtime directory'): void {
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw new Error(`${what} ${dir}: ${(error as Error).message}`);
  }
  checkOwnDirectory(dir, what);
}

/**
 * The bytes of `path` if it is a regular file (not a symlink) owned by this process's user,
 * mode 0600 or stricter, and at most `maxBytes` long. Throws otherwise; a missing file is
 * the open's ENOENT.
 */
export function readOwnFile(path: string, maxBytes: number): Buffer {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new Error('not a regular file');
    if (stat.uid !== euid()) throw new Error(`owned by uid ${stat.uid}, not by the daemon's user`);
    if ((stat.mode & 0o077) !== 0) throw new Error(`mode ${octal(stat.mode)}, not 0600`);
    if (stat.size > maxBytes) throw new Error(`${stat.size} bytes, more than ${maxBytes}`);
    // One byte more than fstat said: a file that grew meanwhile is refused, not cut short.
    const buffer = Buffer.allocUnsafe(stat.size + 1);
    let length = 0;
    for (let n; length < buffer.length && (n = readSync(fd, buffer, length, buffer.length - length, null)) > 0;) length += n;
    if (length > stat.size) throw new Error('grew while it was read');
    return buffer.subarray(0, length);
  } finally {
    closeSync(fd);
  }
}

/** Replaces `path` with `parts`, written in order to `path.tmp` (mode 0600) and renamed over it. */
export function writeOwnFile(path: string, parts: readonly (string | Uint8Array)[]): void {
  const temp = `${path}.tmp`;
  try {
    unlinkSync(temp); // left by a daemon that died while writing
  } catch {
    // usually absent
  }
  const fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    for (const part of parts) {
      const bytes = typeof part === 'string' ? Buffer.from(part) : part;
      for (let done = 0; done < bytes.length;) done += writeSync(fd, bytes, done, bytes.length - done);
    }
  } finally {
    closeSync(fd);
  }
  renameSync(temp, path);
}
