/**
 * The connection bounds every front-end shares (docs/design.md, "Second front-end:
 * Varlink"): one count of connections and one count per non-root uid, over the SEQPACKET
 * socket and the Varlink socket together, so a second socket is no way around a limit.
 *
 * This is the seam for per-uid quotas: a front-end asks admit() at accept and calls
 * release() when the connection closes; what the limits are, and how they are counted,
 * lives here only.
 */
import type { Peer } from './policy/index.js';

export class ConnectionLimits {
  private total = 0;
  private readonly perUid = new Map<number, number>();

  constructor(readonly maxConnections: number, readonly maxConnectionsPerUid: number) {}

  /** Connections open now, over every front-end. */
  get count(): number {
    return this.total;
  }

  /** Connections open now over every front-end, by peer uid (what the status request shows). */
  get byUid(): ReadonlyMap<number, number> {
    return this.perUid;
  }

  /**
   * Counts a new connection of `peer` and returns undefined, or returns why it is refused
   * (nothing counted). Root is bound by the total only.
   */
  admit(peer: Peer): string | undefined {
    if (this.total >= this.maxConnections) return `too many connections (limit ${this.maxConnections})`;
    const ofUid = this.perUid.get(peer.uid) ?? 0;
    if (peer.uid !== 0 && ofUid >= this.maxConnectionsPerUid) {
      return `too many connections from uid ${peer.uid} (limit ${this.maxConnectionsPerUid})`;
    }
    this.total++;
    this.perUid.set(peer.uid, ofUid + 1);
    return undefined;
  }

  /** Uncounts a connection admit() counted. */
  release(peer: Peer): void {
    this.total--;
    const left = (this.perUid.get(peer.uid) ?? 1) - 1;
    if (left === 0) this.perUid.delete(peer.uid);
    else this.perUid.set(peer.uid, left);
  }
}
