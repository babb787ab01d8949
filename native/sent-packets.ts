/**
 * Which of the packets a socket sent the peer may not have received yet, from SIOCOUTQ
 * alone (docs/design.md, "Limits: fds in flight"). The kernel charges every packet's
 * truesize to the sender's send buffer until the peer's recvmsg frees it (or the peer
 * closes), and the peer receives in order; so what SIOCOUTQ reports is the total cost of
 * the newest packets, and each older one has been received.
 *
 * Each packet's cost is taken as SIOCOUTQ after its sendmsg minus before it. That is exact
 * unless the peer received something in between, which only makes it smaller, so the
 * packets kept here are always a superset of those unreceived, and `fds` an upper bound of
 * the fds the peer has not received.
 *
 * On a unix stream socket (StreamSocket) a "packet" is one sendmsg: it makes skbs of its
 * own, the fd on the first, each charged until the peer has read all of its bytes, in
 * order. Once SIOCOUTQ has fallen by the first skb, the packet counts as received — and its
 * fd is, having gone with the first byte; a peer that read only part of that skb has its
 * fd already and is still counted, which keeps `fds` an upper bound.
 */

interface SentPacket {
  bytes: number;
  fd: boolean;
}

/** The packets a socket sent that may still be unreceived, oldest first. */
export class SentPackets {
  private readonly packets: SentPacket[] = [];
  private head = 0;
  private bytes = 0;
  /** fds among them: at least as many as the peer has not received. */
  fds = 0;

  /** Records a packet whose sendmsg took SIOCOUTQ from `before` to `after`. */
  sent(before: number, after: number, fd: boolean): void {
    this.received(before);
    const bytes = Math.max(0, after - before);
    this.packets.push({ bytes, fd });
    this.bytes += bytes;
    if (fd) this.fds++;
  }

  /**
   * Drops the packets SIOCOUTQ = `unreceived` shows as received: while the kept ones cost
   * more than that, the oldest is gone. Returns how many fds that removed.
   */
  received(unreceived: number): number {
    const fdsBefore = this.fds;
    if (unreceived <= 0) {
      this.packets.length = 0;
      this.head = 0;
      this.bytes = 0;
      this.fds = 0;
      return fdsBefore;
    }
    while (this.head < this.packets.length && this.bytes > unreceived) {
      const oldest = this.packets[this.head++]!;
      this.bytes -= oldest.bytes;
      if (oldest.fd) this.fds--;
    }
    if (this.head > 64 && this.head * 2 > this.packets.length) {
      this.packets.splice(0, this.head);
      this.head = 0;
    }
    return fdsBefore - this.fds;
  }
}
