/**
 * An open flood as a peer program, run as another user (through peer-launcher.js) by the
 * hostile tests: COUNT opens of DISKSEQ over one connection, CONCURRENCY at a time, each
 * delivered fd closed at once. Prints one JSON line: how each open ended ({"opened": n,
 * "NOT_FOUND": m, ...}), and "badFdCount" if an Opened came without exactly one fd.
 *
 *   node peer-launcher.js IDENTITY peer-open-flood.js SOCKET DISKSEQ COUNT CONCURRENCY
 */
import { closeSync } from 'node:fs';
import { encodeRequest } from '../../testkit/fuzz-packets.js';
import { RawClient } from '../../testkit/raw-client.js';
import { outcomeOf, readAnswer, u64 } from './hostile-requests.js';

/** The program (see the module comment). */
export async function main(args: string[]): Promise<number> {
  const [socketPath, diskseq, countText, concurrencyText] = args;
  const count = Number(countText);
  const client = new RawClient(socketPath!);
  const outcomes: Record<string, number> = {};
  let sent = 0;
  let answered = 0;
  const send = async (): Promise<void> => {
    sent++;
    await client.send(encodeRequest({ id: u64(sent), open: { diskseq: u64(BigInt(diskseq!)) } }));
  };
  try {
    for (let i = 0; i < Math.min(Number(concurrencyText), count); i++) await send();
    while (answered < count) {
      const { response, fds } = await readAnswer(client, 20_000);
      answered++;
      const outcome = outcomeOf(response);
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
      if (outcome === 'opened' && fds.length !== 1) outcomes.badFdCount = (outcomes.badFdCount ?? 0) + 1;
      for (const fd of fds) closeSync(fd);
      if (sent < count) await send();
    }
  } catch (error) {
    outcomes[`failed: ${(error as Error).message}`] = 1;
  } finally {
    client.close();
  }
  process.stdout.write(`${JSON.stringify(outcomes)}\n`);
  return 0;
}
