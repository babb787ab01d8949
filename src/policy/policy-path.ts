/**
 * Whoever may change a directory or a symlink on the way to the policy file decides which
 * file the daemon reads, and so who gets every disk. This walks the path exactly as given,
 * component by component, following symlinks by hand, and checks each thing it passes:
 *
 * - every directory it enters is owned by root (or the daemon's user) and not writable by
 *   group or others, unless it is sticky like /tmp (others cannot rename or remove root's
 *   entries there);
 * - a symlink is followed only when root (or the daemon's user) owns it; its directory has
 *   passed the check above, so nobody else can replace it either;
 * - the directories and symlinks of a symlink's target are checked the same way.
 *
 * The result is the physical path of the file, free of symlinks, which the caller opens
 * with O_NOFOLLOW and fstats. Nobody but root can change what the walk saw, so the open
 * reaches the file the walk checked.
 */
import { lstatSync, readlinkSync, type Stats } from 'node:fs';
import { posix } from 'node:path';
import { PolicyError } from './policy-error.js';

/** The kernel's own bound on symlinks followed in one lookup (MAXSYMLINKS). */
const MAX_SYMLINKS = 40;

/**
 * Checks every component of `path` as given (see the module comment) and returns the
 * file's physical path. Throws PolicyError naming `path` and the component at fault.
 */
export function checkPolicyPath(path: string, euid: number): string {
  const trusted = (uid: number): boolean => uid === 0 || uid === euid;
  const queue = posix.resolve(path).split('/').filter((part) => part !== '');
  let current = '/';
  checkDirectory(path, current, lstat(path, current), trusted);
  let links = 0;
  while (queue.length > 0) {
    const part = queue.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      current = posix.dirname(current); // current is physical: its parent is the real one
      continue;
    }
    const next = posix.join(current, part);
    const stat = lstat(path, next);
    if (stat.isSymbolicLink()) {
      if (++links > MAX_SYMLINKS) throw new PolicyError(path, `cannot open: more than ${MAX_SYMLINKS} symlinks on the way`);
      if (!trusted(stat.uid)) {
        throw new PolicyError(path, `symlink ${next} is owned by uid ${stat.uid}; a symlink on the way to the policy must be owned by root`);
      }
      const target = readlinkSync(next);
      if (target.startsWith('/')) current = '/';
      queue.unshift(...target.split('/').filter((piece) => piece !== ''));
      continue;
    }
    if (queue.length === 0) return next; // the file itself: the caller checks it on its fd
    if (!stat.isDirectory()) throw new PolicyError(path, `cannot open: ${next} is not a directory`);
    checkDirectory(path, next, stat, trusted);
    current = next;
  }
  return current; // the path named a directory; the caller's fstat refuses it
}

function lstat(path: string, component: string): Stats {
  try {
    return lstatSync(component);
  } catch (error) {
    throw new PolicyError(path, `cannot open: ${(error as Error).message}`);
  }
}

function checkDirectory(path: string, dir: string, stat: Stats, trusted: (uid: number) => boolean): void {
  if (!trusted(stat.uid)) throw new PolicyError(path, `directory ${dir} is owned by uid ${stat.uid}; it must be owned by root`);
  if ((stat.mode & 0o022) !== 0 && (stat.mode & 0o1000) === 0) {
    throw new PolicyError(path, `directory ${dir} is writable by others (mode ${(stat.mode & 0o7777).toString(8).padStart(4, '0')}), who could replace the policy`);
  }
}
