/**
 * What both front-ends' listening sockets do alike (src/server.ts for SEQPACKET,
 * src/varlink/listener.ts for Varlink's stream): bind a path without ever taking one a live
 * process serves, accept what waits in the backlog, and read each peer's credentials once.
 */
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import { native } from '../native/index.js';
import { hasErrnoCode } from './errors.js';
import type { Logger } from './log.js';
import type { Peer } from './policy/index.js';

/** How to listen on, and connect to, one kind of socket. */
export interface SocketKind {
  listen(path: string, backlog: number): number;
  connect(path: string): number;
}

/**
 * A listening socket at `path` with `mode`. A socket file in the way is replaced only when
 * nobody accepts on it; throws with the reason when the path is something else, or served.
 */
export function bindReplacingStale(path: string, kind: SocketKind, backlog: number, mode: number): number {
  try {
    return listenAt(path, kind, backlog, mode);
  } catch (error) {
    if (!hasErrnoCode(error, 'EADDRINUSE')) throw error;
  }
  if (!lstatSync(path).isSocket()) throw new Error(`${path} exists and is not a socket; refusing to replace it`);
  try {
    native.close(kind.connect(path));
    throw new Error(`a live process already serves ${path}`);
  } catch (error) {
    // ECONNREFUSED: a socket file nobody listens on. Anything else (a socket of the other
    // type answers EPROTOTYPE) means someone does.
    if (!hasErrnoCode(error, 'ECONNREFUSED')) throw error;
  }
  unlinkSync(path);
  return listenAt(path, kind, backlog, mode);
}

function listenAt(path: string, kind: SocketKind, backlog: number, mode: number): number {
  const fd = kind.listen(path, backlog);
  try {
    chmodSync(path, mode);
  } catch (error) {
    native.close(fd);
    throw error;
  }
  return fd;
}

/**
 * Accepts the connections waiting on `listenFd`, handing each to `admit`, while `open()`
 * says the listener is. Returns the accept error that stopped it early (out of fds: the
 * caller pauses and tries again, the connection staying in the backlog), else undefined.
 */
export function acceptPending(listenFd: number, open: () => boolean, admit: (fd: number) => void): unknown {
  while (open()) {
    let fd: number | null;
    try {
      fd = native.accept(listenFd);
    } catch (error) {
      if (hasErrnoCode(error, 'ECONNABORTED', 'EINTR')) continue;
      return error;
    }
    if (fd === null) return undefined;
    admit(fd);
  }
  return undefined;
}

/** The peer of an accepted connection (SO_PEERCRED and SO_PEERGROUPS), or undefined: then `fd` is closed and why is logged. */
export function readPeer(fd: number, log: Logger): Peer | undefined {
  try {
    return { ...native.peerCredentials(fd), groups: native.peerGroups(fd) };
  } catch (error) {
    log.warn({ err: error }, 'could not read peer credentials; closing');
    native.close(fd);
    return undefined;
  }
}
