/**
 * Opening through a private device node, so that an unprivileged peer who reopens its fd
 * (through /dev/fd/N, as tools given `{}` by diskseq-open do) gets exactly the access it
 * was granted and never more. A reopen is checked against the inode's owner and mode, not
 * against the grant: so each open gets its own node, owned by root (an owner could chmod
 * it), with the peer's gid as group and group bits equal to the grant. The node is
 * unlinked as soon as it is open; the fd keeps the inode.
 *
 * The directory is a hidden 0700 directory on devtmpfs: /run is often nodev, a tmpfs the
 * daemon mounted would outlive a crash, and a mount namespace unshared in a multithreaded
 * process covers only one thread.
 */
import { chmodSync, chownSync, lstatSync, mkdirSync, readdirSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { native, type OpenedDevice } from '../native/index.js';
import type { Access } from './policy/index.js';

/** Group permission bits per grant; owner (root) and others get nothing. */
const GROUP_MODE: Record<Access, number> = { 'read-only': 0o040, 'read-write': 0o060, 'write-only': 0o020 };

export class PrivateNodes {
  private counter = 0;

  /** Creates (or empties) the directory; it must be a real root-owned directory. */
  constructor(readonly dir = '/dev/.diskseqd') {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const stat = lstatSync(dir);
    if (!stat.isDirectory() || stat.uid !== 0) throw new Error(`${dir} must be a directory owned by root`);
    chmodSync(dir, 0o700);
    // Leftovers of a crash: nodes nobody can reach but root; remove them.
    for (const entry of readdirSync(dir)) rmSync(join(dir, entry), { force: true });
  }

  /**
   * Off the event loop, opens major:minor through a fresh node with group `gid` and the
   * group bits of `access`, then unlinks the node. Rejects like native.openDevice.
   */
  async open(major: number, minor: number, gid: number, access: Access, flags: number): Promise<OpenedDevice> {
    const path = join(this.dir, `n${++this.counter}`);
    native.mknodBlock(path, 0, major, minor);
    try {
      chownSync(path, 0, gid);
      chmodSync(path, GROUP_MODE[access]);
      return await native.openDevice(path, flags);
    } finally {
      unlinkSync(path);
    }
  }
}
