/**
 * Socket activation (sd_listen_fds(3) semantics, written out so the daemon needs no libsystemd):
 * systemd binds /run/diskseqd.sock itself, passes the listening socket as fd 3 and says so
 * in LISTEN_PID / LISTEN_FDS / LISTEN_FDNAMES. The daemon then serves on that fd instead
 * of binding, and never unlinks the path: the socket unit owns it.
 */
import { fstatSync, readFileSync, readlinkSync } from 'node:fs';
import { native } from '../../native/index.js';

/** The first inherited fd (SD_LISTEN_FDS_START). */
export const LISTEN_FDS_START = 3;

/** The few native calls the check needs; the real addon by default. */
export interface ListenerChecks {
  isListeningSeqpacket(fd: number): boolean;
  setNonblockCloexec(fd: number): void;
}

/**
 * The listening socket systemd handed us, or null when we were not socket-activated.
 *
 * null when LISTEN_PID or LISTEN_FDS is unset, when LISTEN_FDS is 0, or when LISTEN_PID
 * names another process (the variables leaked through a fork or exec: ignored, as
 * sd_listen_fds does). Otherwise exactly one fd (3) is accepted; it must be a listening
 * AF_UNIX SOCK_SEQPACKET socket. It is set non-blocking and close-on-exec and the caller
 * owns it from here on. LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES are removed from `env`
 * in every case, so nothing we start later mistakes them for its own.
 *
 * Throws an Error with a message meant for the operator (the daemon exits non-zero with
 * it) when the variables are malformed, when more than one fd is passed, or when fd 3 is
 * not the right kind of socket.
 */
export function inheritedListener(
  env: NodeJS.ProcessEnv = process.env,
  checks: ListenerChecks = native,
  pid: number = process.pid,
): number | null {
  const listenPid = env.LISTEN_PID;
  const listenFds = env.LISTEN_FDS;
  const names = env.LISTEN_FDNAMES;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;

  if (listenPid === undefined || listenFds === undefined) return null;
  if (!/^[1-9][0-9]*$/.test(listenPid)) {
    throw new Error(`socket activation: LISTEN_PID=${JSON.stringify(listenPid)} is not a process id`);
  }
  if (Number(listenPid) !== pid) return null;
  if (!/^[0-9]+$/.test(listenFds)) {
    throw new Error(`socket activation: LISTEN_FDS=${JSON.stringify(listenFds)} is not a count`);
  }
  const count = Number(listenFds);
  if (count === 0) return null;
  if (count > 1) {
    const named = names ? ` (LISTEN_FDNAMES=${names})` : '';
    throw new Error(`socket activation: systemd passed ${count} fds${named}; diskseqd takes exactly one, ` +
      'a ListenSequentialPacket= socket: give the socket unit a single Listen line');
  }

  const fd = LISTEN_FDS_START;
  let listening: boolean;
  try {
    listening = checks.isListeningSeqpacket(fd);
  } catch (err) {
    throw wrongKind(fd, err);
  }
  if (!listening) throw wrongKind(fd);
  checks.setNonblockCloexec(fd);
  return fd;
}

function wrongKind(fd: number, cause?: unknown): Error {
  return new Error(`socket activation: fd ${fd} from systemd is not a listening AF_UNIX SOCK_SEQPACKET ` +
    `socket (got ${describeFd(fd)}); the socket unit needs ListenSequentialPacket=`, { cause });
}

const UNIX_TYPES: Record<number, string> = { 1: 'SOCK_STREAM', 2: 'SOCK_DGRAM', 5: 'SOCK_SEQPACKET' };

/** One AF_UNIX socket as /proc/self/net/unix lists it. */
interface UnixSocketEntry {
  type: number;
  listening: boolean;
  /** The bound path ('@name' for an abstract one), or undefined when unbound. */
  path: string | undefined;
}

/** The /proc/self/net/unix entry of socket fd, or undefined (not AF_UNIX, or unreadable). */
function unixSocketEntry(fd: number): UnixSocketEntry | undefined {
  let table: string;
  let inode: number;
  try {
    inode = fstatSync(fd).ino;
    table = readFileSync('/proc/self/net/unix', 'utf8');
  } catch {
    return undefined;
  }
  // Num RefCount Protocol Flags Type St Inode Path
  for (const line of table.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 7 || Number(f[6]) !== inode) continue;
    return { type: parseInt(f[4], 16), listening: (parseInt(f[3], 16) & 0x10000) !== 0, path: f.length > 7 ? f.slice(7).join(' ') : undefined };
  }
  return undefined;
}

/** Where an inherited socket lives, for the log: its bound path, if the kernel says. */
export function socketPathOf(fd: number): string | undefined {
  return unixSocketEntry(fd)?.path;
}

/**
 * A best-effort human description of what fd is, for the error message only: the decision
 * itself is the addon's getsockopt check. Socket details come from /proc/self/net/unix
 * (Type and the __SO_ACCEPTCON flag of the socket's inode).
 */
export function describeFd(fd: number): string {
  let st;
  try {
    st = fstatSync(fd);
  } catch (err) {
    return `no open fd: ${(err as NodeJS.ErrnoException).code ?? String(err)}`;
  }
  if (st.isFile()) return 'a regular file';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a pipe';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (!st.isSocket()) {
    // e.g. anon_inode:[eventpoll]: fd 3 was not inherited and Node opened one of its own.
    try {
      return readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      return 'an fd of unknown kind';
    }
  }
  const entry = unixSocketEntry(fd);
  if (entry === undefined) return 'a socket that is not AF_UNIX';
  const type = UNIX_TYPES[entry.type] ?? `type ${entry.type}`;
  return `an AF_UNIX ${type} socket, ${entry.listening ? 'listening' : 'not listening'}`;
}
