/**
 * Varlink's framing on a byte stream: every message is one JSON object followed by a NUL
 * byte. MessageFramer collects the bytes of a connection and cuts them into messages,
 * refusing any message longer than its bound before it has buffered more than that, so a
 * client that never sends the NUL costs at most the bound.
 */

/** A message longer than the bound, or bytes that cannot start one: drop the connection. */
export class FramingViolation extends Error {
  override name = 'FramingViolation';
}

export class MessageFramer {
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  /** @param maxMessageBytes the longest message accepted, its NUL not counted */
  constructor(private readonly maxMessageBytes: number) {}

  /** Whether the bytes of an unfinished message are buffered. */
  get hasPartial(): boolean {
    return this.pendingBytes > 0;
  }

  /**
   * Takes bytes that arrived (copied: `data` may be reused by the caller) and returns the
   * messages they complete, in order, without their NULs — and, when a message (finished
   * or not) exceeds the bound, the violation, after the messages completed before it.
   */
  push(data: Buffer): { messages: Buffer[]; violation?: FramingViolation } {
    const messages: Buffer[] = [];
    try {
      this.cut(data, messages);
    } catch (error) {
      if (!(error instanceof FramingViolation)) throw error;
      return { messages, violation: error };
    }
    return { messages };
  }

  private cut(data: Buffer, messages: Buffer[]): void {
    let start = 0;
    for (let nul = data.indexOf(0, start); nul >= 0; nul = data.indexOf(0, start)) {
      this.take(data, start, nul);
      messages.push(this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes));
      this.pending = [];
      this.pendingBytes = 0;
      start = nul + 1;
    }
    if (start < data.length) this.take(data, start, data.length);
  }

  private take(data: Buffer, from: number, to: number): void {
    if (this.pendingBytes + (to - from) > this.maxMessageBytes) {
      throw new FramingViolation(`message longer than ${this.maxMessageBytes} bytes`);
    }
    if (to > from) this.pending.push(Buffer.from(data.subarray(from, to)));
    this.pendingBytes += to - from;
  }
}
