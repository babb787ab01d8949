/**
 * The diskseqd client library: open block devices by diskseq through the daemon and get an
 * fd that is provably that disk instance (re-checked with BLKGETDISKSEQ in this process).
 *
 * ```ts
 * import { connect } from 'diskseqd';
 * const client = await connect();            // $DISKSEQD_SOCKET or /run/diskseqd.sock
 * const { fd, device } = await client.open({ diskseq: 42n, partition: 1 });
 * // ... use fd, then close it (fs.closeSync(fd)); it is yours.
 * client.close();
 * ```
 */
export { connect, Client, type ConnectOptions, type HelloInfo, type ListOptions, type OpenResult } from './client.js';
export { resolveSocketPath } from './connection.js';
export { deviceToJSON, type DeviceInfo, type DeviceJSON } from './device.js';
export { AbortError, ConnectionError, DiskseqError, type DiskseqErrorCode } from './errors.js';
export { toDiskseq, type AccessMode, type OpenOptions } from './open-request.js';
export { parseDeviceSpec, formatDeviceSpec, type DeviceSpec } from './device-spec.js';
export { DeviceWatch, watchEventToJSON, type WatchEvent, type WatchEventJSON, type WatchEventKind, type WatchOptions } from './watch.js';
