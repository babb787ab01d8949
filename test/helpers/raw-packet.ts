/**
 * Hostile-client helper: one connection that sends a single arbitrary packet (optionally
 * with an fd in SCM_RIGHTS) and reports whether the daemon then dropped it. Built on the
 * wire client, so anything the daemon sends back is decoded, and stray fds are closed.
 */
import { WireClient } from '../../testkit/wire-client.js';
import type { CloseReason } from '../../native/packet-socket.js';

/** What happened to a connection after one raw packet. */
export interface RawPacketOutcome {
  /** The daemon closed the connection within the wait. */
  dropped: boolean;
  /** Why the connection closed (undefined when it stayed open). */
  reason?: CloseReason;
  /** Packets the daemon sent that answered nothing we asked (e.g. an Error with id 0). */
  strayPackets: number;
  /** fds the daemon sent along with them (closed here). */
  strayFds: number;
}

/**
 * Connects to `socketPath`, sends `bytes` as one packet (with `fd` when >= 0; ownership of
 * fd passes here), and waits up to `waitMs` for the daemon to close the connection. The
 * connection is closed before returning either way.
 */
export async function sendRawPacket(socketPath: string, bytes: Uint8Array, fd = -1, waitMs = 3000): Promise<RawPacketOutcome> {
  const client = WireClient.connect(socketPath);
  try {
    client.sendRaw(bytes, fd);
    let timer: NodeJS.Timeout | undefined;
    const reason = await Promise.race([
      client.whenClosed(),
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), waitMs);
      }),
    ]);
    clearTimeout(timer);
    return { dropped: reason !== undefined && reason.kind !== 'local', reason, strayPackets: client.strayPackets, strayFds: client.strayFds };
  } finally {
    client.close();
  }
}
