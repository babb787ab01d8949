/**
 * A peer program for connection-limit-per-uid.test.ts, run as another user (through
 * peer-launcher.js): connects COUNT times to SOCKET, says hello on each connection and
 * keeps them all open, and prints one JSON array with each connection's outcome: "served",
 * or the ErrorCode name of the refusal.
 *
 *   node peer-launcher.js IDENTITY peer-connection-holder.js SOCKET COUNT
 */
import Long from 'long';
import { native } from '../../native/index.js';
import { wire } from '../../proto/contract.js';
import { sleepSync } from '../../testkit/cleanup.js';

/** The program (see the module comment). */
export async function main(args: string[]): Promise<number> {
  const [socket, count] = [args[0]!, Number(args[1])];
  const outcomes: string[] = [];
  const held: number[] = []; // kept open on purpose: each one counts against the limit
  for (let i = 0; i < count; i++) {
    const fd = native.connectSeqpacket(socket, false);
    held.push(fd);
    try {
      native.send(fd, Buffer.from(wire.Request.encode({ id: Long.fromNumber(i + 1, true), hello: { protocolVersion: 1 } }).finish()), -1);
    } catch (error) {
      // A refusal may have closed the connection before the hello: its answer is still there.
      if ((error as { code?: string }).code !== 'EPIPE') throw error;
    }
    const buffer = Buffer.alloc(65536);
    let got;
    // recv never blocks (MSG_DONTWAIT): poll, sleeping 1 ms between tries. A refusal that
    // crossed our hello reports ECONNRESET once; the refusal itself is still there to read.
    for (;;) {
      try {
        got = native.recv(fd, buffer);
      } catch (error) {
        if ((error as { code?: string }).code !== 'ECONNRESET') throw error;
        continue;
      }
      if (got !== null) break;
      sleepSync(1);
    }
    const response = wire.Response.decode(buffer.subarray(0, got.bytes));
    outcomes.push(response.body === 'hello' ? 'served' : wire.ErrorCode[response.error!.code!]!);
  }
  process.stdout.write(`${JSON.stringify(outcomes)}\n`);
  return 0;
}
