/**
 * The diskseqd client library: open block devices by diskseq through the daemon and get an
 * fd that is provably that disk instance (re-checked with BLKGETDISKSEQ in this process).
 *
 * ```ts
 * import { connect } from 'diskseqd';
 * const client = await connect();            // $DISKSEQD_SOCKET or /run/diskseqd.sock
 * try {
 *   const opened = await client.open({ diskseq: 42n, partition: 1 });
 *   try {
 *     // ... use opened.fd (opened.device says what it is)
 *   } finally {
 *     opened.close();
 *   }
 * } finally {
 *   client.close();
 * }
 * ```
 * Where `using` is available (TypeScript, or a Node whose V8 has it), `await using client =
 * await connect()` and `using opened = await client.open(...)` close them instead.
 */
// Connecting, the client, and what its requests take and return.
export { connect, Client, type ConnectOptions, type HelloInfo, type ListOptions, type OpenResult } from './client.js';
// What open() resolves to: the fd, its device, close() and disposal.
export { Opened } from './opened.js';
// The socket path rule: explicit, else $DISKSEQD_SOCKET, else /run/diskseqd.sock.
export { resolveSocketPath } from './connection.js';
// Devices and their JSON form (64-bit numbers as decimal strings; JSON.stringify(device) gives it).
export { deviceToJSON, type Device, type DeviceInfo, type DeviceJSON } from './device.js';
// The errors requests reject with.
export { AbortError, ConnectionError, DiskseqError, type DiskseqErrorCode } from './errors.js';
// Open options.
export { toDiskseq, type AccessMode, type OpenOptions } from './open-request.js';
// The DEVICE forms diskseq-open accepts (42, 42p1, 42-part1, /dev/disk/by-diskseq/...).
export { parseDeviceSpec, formatDeviceSpec, type DeviceSpec } from './device-spec.js';
// The daemon's status view.
export { statusToJSON, type DaemonStatus, type DaemonStatusJSON, type RequestCount, type WaitingOpen } from './status.js';
// The watch stream.
export { DeviceWatch, watchEventToJSON, type WatchEvent, type WatchEventJSON, type WatchEventKind, type WatchOptions } from './watch.js';
// Passing an fd on to another program over a Unix stream socket (QEMU's QMP add-fd: docs/qemu.md).
export { sendFd } from './send-fd.js';
