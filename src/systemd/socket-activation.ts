/**
 * Socket activation (sd_listen_fds(3) semantics, written out so the daemon needs no libsystemd):
 * systemd binds the sockets itself — /run/diskseqd.sock (diskseqd.socket) and, when
 * diskseqd-varlink.socket is enabled, the Varlink socket — passes the listening sockets
 * from fd 3 on and says so in LISTEN_PID / LISTEN_FDS / LISTEN_FDNAMES. The daemon then
 * serves on those fds instead of binding, and never unlinks the paths: the socket units
 * own them.
 */
import { fstatSync, readFileSync, readlinkSync } from 'node:fs';
import { native } from '../../native/index.js';

/** The first inherited fd (SD_LISTEN_FDS_START). */
export const LISTEN_FDS_START = 3;

/** FileDescriptorName= of the two socket units. */
export const SEQPACKET_FD_NAME = 'seqpacket';
export const VARLINK_FD_NAME = 'varlink';

/** The few native calls the check needs; the real addon by default. */
export interface ListenerChecks {
  socketKind(fd: number): { domain: number; type: number; listening: boolean };
  setNonblockCloexec(fd: number): void;
}

/** The listening sockets systemd handed us. */
export interface InheritedSockets {
  /** The SOCK_SEQPACKET socket of the protobuf protocol (always there). */
  seqpacket: number;
  /** The SOCK_STREAM socket of the Varlink front-end, when systemd passed one. */
  varlink?: number;
}

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_SEQPACKET = 5;

/**
 * The listening sockets systemd handed us, or null when we were not socket-activated.
 *
 * null when LISTEN_PID or LISTEN_FDS is unset, when LISTEN_FDS is 0, or when LISTEN_PID
 * names another process (the variables leaked through a fork or exec: ignored, as
 * sd_listen_fds does). Otherwise one or two fds from 3 on: which is which comes from
 * LISTEN_FDNAMES (FileDescriptorName= `seqpacket` and `varlink`), and for a name the daemon
 * does not know, or with no names at all (systemd-socket-activate sets them only with
 * --fdname), from the socket type (SO_TYPE). Each must be a listening AF_UNIX socket of
 * its kind — SOCK_SEQPACKET for the protocol, SOCK_STREAM for Varlink — at most one of
 * each, and the SEQPACKET one must be there. The fds are set non-blocking and
 * close-on-exec and the caller owns them from here on. LISTEN_PID, LISTEN_FDS and
 * LISTEN_FDNAMES are removed from `env` in every case, so nothing we start later mistakes
 * them for its own.
 *
 * Throws an Error with a message meant for the operator (the daemon exits non-zero with
 * it) when the variables are malformed, when more than two fds are passed, or when an fd
 * is not what it must be.
 */
export function inheritedListeners(
  env: NodeJS.ProcessEnv = process.env,
  checks: ListenerChecks = native,
  pid: number = process.pid,
): InheritedSockets | null {
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
  if (count > 2) {
    const named = names ? ` (LISTEN_FDNAMES=${names})` : '';
    throw new Error(`socket activation: systemd passed ${count} fds${named}; diskseqd takes at most two, ` +
      'a ListenSequentialPacket= socket and a ListenStream= socket for Varlink');
  }
  const fdNames = names === undefined ? [] : names.split(':');
  const found: { seqpacket?: number; varlink?: number } = {};
  for (let i = 0; i < count; i++) {
    const fd = LISTEN_FDS_START + i;
    const role = roleOf(fd, fdNames[i], checks);
    if (found[role] !== undefined) {
      throw new Error(`socket activation: fds ${found[role]} and ${fd} from systemd are both ${describeRole(role)} sockets; ` +
        'diskseqd takes one of each');
    }
    found[role] = fd;
  }
  if (found.seqpacket === undefined) {
    throw new Error(`socket activation: systemd passed no SOCK_SEQPACKET socket (got ${describeFd(found.varlink!)}); ` +
      'diskseqd.socket (ListenSequentialPacket=) must be part of the activation');
  }
  for (const fd of [found.seqpacket, found.varlink]) if (fd !== undefined) checks.setNonblockCloexec(fd);
  return { seqpacket: found.seqpacket, varlink: found.varlink };
}

/** Which socket fd is (from its name, else its type), after checking it is that kind. */
function roleOf(fd: number, name: string | undefined, checks: ListenerChecks): 'seqpacket' | 'varlink' {
  let kind: { domain: number; type: number; listening: boolean };
  try {
    kind = checks.socketKind(fd);
  } catch (err) {
    throw wrongKind(fd, name, err);
  }
  const listeningUnix = kind.domain === AF_UNIX && kind.listening;
  const role = name === SEQPACKET_FD_NAME ? 'seqpacket' : name === VARLINK_FD_NAME ? 'varlink'
    : kind.type === SOCK_STREAM && listeningUnix ? 'varlink' : 'seqpacket';
  if (!listeningUnix || kind.type !== (role === 'varlink' ? SOCK_STREAM : SOCK_SEQPACKET)) throw wrongKind(fd, name, undefined, role);
  return role;
}

function describeRole(role: 'seqpacket' | 'varlink'): string {
  return role === 'varlink' ? 'SOCK_STREAM (Varlink)' : 'SOCK_SEQPACKET';
}

function wrongKind(fd: number, name: string | undefined, cause?: unknown, role?: 'seqpacket' | 'varlink'): Error {
  const named = name === undefined ? '' : ` (named ${JSON.stringify(name)})`;
  if (role === 'varlink') {
    return new Error(`socket activation: fd ${fd}${named} from systemd is not a listening AF_UNIX SOCK_STREAM ` +
      `socket (got ${describeFd(fd)}); the Varlink socket unit needs ListenStream=`, { cause });
  }
  return new Error(`socket activation: fd ${fd}${named} from systemd is not a listening AF_UNIX SOCK_SEQPACKET ` +
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
