/**
 * Who can reach a path. Unprivileged peers must never need to read the checkout, which may
 * well live under a directory others cannot enter (/root is mode 0700, and that is where
 * root clones): when a peer cannot reach something it needs, the error should say which
 * directory shuts it out, not just "Cannot find module" or "cannot be preloaded".
 */
import { statSync } from 'node:fs';
import { dirname, resolve, sep } from 'node:path';

/** The user an unprivileged peer runs as. */
export interface PeerIdentity {
  uid: number;
  gid: number;
  /** Supplementary groups (default: none). */
  groups?: number[];
}

/** The unprivileged user every Debian system has. */
export const NOBODY: PeerIdentity = { uid: 65534, gid: 65534 };

/**
 * Why `who` cannot reach `path` through directory permissions — the first directory on the
 * way without search (x) permission for it, and that directory's mode and owner — or
 * undefined when every directory lets it through. uid 0 passes everything. Only the path's
 * directories are checked: whether the file itself may be read or run is the file's mode.
 */
export function whyUnreachable(path: string, who: PeerIdentity): string | undefined {
  if (who.uid === 0) return undefined;
  const groups = new Set([who.gid, ...(who.groups ?? [])]);
  const dirs: string[] = [];
  for (let dir = dirname(resolve(path)); ; dir = dirname(dir)) {
    dirs.unshift(dir);
    if (dir === sep) break;
  }
  for (const dir of dirs) {
    let st;
    try {
      st = statSync(dir);
    } catch (error) {
      return `${dir} does not exist (${(error as NodeJS.ErrnoException).code})`;
    }
    const bit = st.uid === who.uid ? 0o100 : groups.has(st.gid) ? 0o010 : 0o001;
    if ((st.mode & bit) === 0) {
      return `directory ${dir} (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}, owner uid ${st.uid}, group ${st.gid}) ` +
        `does not let uid ${who.uid} through, so it cannot reach ${path}`;
    }
  }
  return undefined;
}
