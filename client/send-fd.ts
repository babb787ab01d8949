/**
 * sendFd: pass an fd over a connected Unix *stream* socket (a net.Socket), for programs
 * that take fds in SCM_RIGHTS beside their own protocol — QEMU's QMP `add-fd` above all
 * (docs/qemu.md). Node has no API for ancillary data on stream sockets; the addon's
 * sendmsg does it on the socket's own fd.
 */
import type { Socket } from 'node:net';
import { native } from '../native/index.js';

/**
 * Sends one space byte with `fd` in SCM_RIGHTS on `socket` (the receiver gets its own copy;
 * `fd` stays open here and is still the caller's). A JSON peer such as QMP skips the space;
 * write the command that uses the fd after this call. One byte cannot be sent in part, and
 * nothing Node has queued on the socket may still be unsent: call it between a reply and
 * the next command. Throws TypeError when `socket` has no fd (not connected, or not a Unix
 * socket), and the sendmsg error (EPIPE, ECONNRESET ...) otherwise; EAGAIN is retried.
 */
export function sendFd(socket: Socket, fd: number): void {
  const handleFd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof handleFd !== 'number' || handleFd < 0) throw new TypeError('sendFd needs a connected Unix socket');
  if (!Number.isInteger(fd) || fd < 0) throw new TypeError(`not an fd: ${fd}`);
  if (socket.writableLength > 0) throw new Error('sendFd: the socket still has queued writes');
  const space = Buffer.from(' ');
  for (let attempt = 0; !native.send(handleFd, space, fd); attempt++) {
    if (attempt > 1000) throw new Error('sendFd: the socket stayed full');
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
  }
}
