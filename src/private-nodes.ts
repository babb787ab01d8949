/**
 * Opening through a private device node (docs/design.md, "Reopening and private nodes"),
 * so that an unprivileged peer who reopens its fd (through /dev/fd/N, as tools given `{}`
 * by diskseq-open do) gets exactly what it was granted and never more. A reopen is
 * checked against the inode's owner and mode, not against the grant, and O_EXCL has no
 * permission bit: any reopen that succeeds can claim the device exclusively. So each open
 * gets its own node, owned by root (an owner could chmod it) with mode 000: only the
 * daemon (CAP_DAC_OVERRIDE) can open it, and a reopen by the peer fails with EACCES.
 * Only when the policy grants the peer exclusive opens does the verified fd's inode get
 * the peer's gid as group and group bits equal to the grant (allowReopen). The node is
 * unlinked as soon as it is open; the fd keeps the inode.
 *
 * The directory is a hidden 0700 directory on devtmpfs: /run is often nodev, a tmpfs the
 * daemon mounted would outlive a crash, and a mount namespace unshared in a multithreaded
 * process covers only one thread.
 */
import { chmodSync, fchmodSync, fchownSync, lstatSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { AccessMode } from '../proto/contract.js';

/** Group permission bits per grant, for a peer that may reopen; owner (root) and others get nothing. */
const GROUP_MODE: Record<AccessMode, number> = { 'read-only': 0o040, 'read-write': 0o060, 'write-only': 0o020 };

export class PrivateNodes {
  private counter = 0;

  /** This instance's own directory, <root>/<pid>: daemons never touch each other's nodes. */
  readonly dir: string;

  /**
   * Creates the root-owned 0700 root directory if needed and this instance's directory in
   * it. Removes what crashed instances left (directories of pids that no longer run), never
   * another live daemon's nodes.
   */
  constructor(readonly root = '/dev/.diskseqd') {
    mkdirSync(root, { recursive: true, mode: 0o700 });
    const stat = lstatSync(root);
    if (!stat.isDirectory() || stat.uid !== 0) throw new Error(`${root} must be a directory owned by root`);
    chmodSync(root, 0o700);
    for (const entry of readdirSync(root)) {
      const pid = /^[1-9][0-9]*$/.test(entry) ? Number(entry) : 0;
      if (pid !== 0 && pid !== process.pid && isRunning(pid)) continue;
      rmSync(join(root, entry), { recursive: true, force: true });
    }
    this.dir = join(root, String(process.pid));
    mkdirSync(this.dir, { mode: 0o700 });
  }

  /**
   * The node for one open: a fresh path in this instance's directory. The open job (native
   * openVerified) makes it with mknod, owner and group root, mode 000, opens it and
   * unlinks it, off the event loop; the fd keeps the inode.
   */
  node(): { path: string; gid: number; mode: number } {
    return { path: `${this.dir}/n${++this.counter}`, gid: 0, mode: 0 };
  }

  /**
   * Lets the peer reopen a verified fd's inode with exactly `access` (through /dev/fd/N):
   * group `gid`, group bits the grant. Only for a peer the policy lets open the device
   * exclusively (Policy.grantsReopen), since a reopen can claim it with O_EXCL. Inode
   * metadata on devtmpfs: no device I/O, so it runs on the event loop. Throws like fchown.
   */
  allowReopen(fd: number, gid: number, access: AccessMode): void {
    fchownSync(fd, 0, gid);
    fchmodSync(fd, GROUP_MODE[access]);
  }

  /** Removes this instance's directory (at shutdown); idempotent. */
  close(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Whether a process runs. kill(pid, 0), not /proc/<pid>: under ProtectProc=invisible a
 * process with more privileges than this one has no visible /proc entry.
 */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}
