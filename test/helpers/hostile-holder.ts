/**
 * A client that takes shared resources and holds them, for test/hostile-uid-shares.test.ts.
 * Started as root, it drops to UID (gid UID, no groups) before it connects, so it never
 * needs to read the checkout as that user.
 *
 *   node dist/test/helpers/hostile-holder.js SOCKET UID waits COUNT DISKSEQ
 *     one connection, COUNT opens of DISKSEQ with wait_ms 600000 (at most 15: one
 *     connection has 16 requests in flight); an open that is refused is answered at once,
 *     one that waits is not
 *   node dist/test/helpers/hostile-holder.js SOCKET UID watches COUNT
 *     COUNT connections, one watch each; each ends with SYNCED or an Error
 *
 * Prints {"outcomes": [...]} — per open its code or "waiting", per watch "synced" or its
 * code — once every answer that will come has come, then holds everything until stdin
 * says "exit" (or ends).
 */
import { createInterface } from 'node:readline';
import { RawClient } from '../../testkit/raw-client.js';
import { outcomeOf, readAnswer, u64 } from './hostile-requests.js';
import { encodeRequest } from '../../testkit/fuzz-packets.js';

const [socketPath, uidText, mode, countText, diskseq] = process.argv.slice(2);
const uid = Number(uidText);
const count = Number(countText);
process.setgroups!([]);
process.setgid!(uid);
process.setuid!(uid);

/**
 * Opens that wait are never answered, those refused are answered as soon as they are read.
 * A List sent after them is the barrier: its answer is produced in a later turn of the
 * daemon's event loop than any request read before it (List work runs in fair turns), so
 * once its last packet is here, every refusal that will come has come.
 */
async function waits(): Promise<string[]> {
  const client = new RawClient(socketPath!);
  for (let i = 1; i <= count; i++) await client.send(encodeRequest({ id: u64(i), open: { diskseq: u64(BigInt(diskseq!)), waitMs: 600_000 } }));
  const barrier = 1001;
  await client.send(encodeRequest({ id: u64(barrier), list: {} }));
  const outcomes = new Map<number, string>();
  for (;;) {
    const { response } = await readAnswer(client, 20_000);
    const id = Number(response.id.toString());
    if (id === barrier) {
      if (response.devices?.more === true) continue;
      break;
    }
    outcomes.set(id, outcomeOf(response));
  }
  return Array.from({ length: count }, (_, i) => outcomes.get(i + 1) ?? 'waiting');
}

async function watches(): Promise<string[]> {
  const outcomes: string[] = [];
  for (let i = 0; i < count; i++) {
    const client = new RawClient(socketPath!);
    await client.send(encodeRequest({ id: u64(7), watch: {} }));
    for (;;) {
      const { response } = await readAnswer(client, 20_000);
      if (response.body === 'error') {
        outcomes.push(outcomeOf(response));
        break;
      }
      if (response.body === 'event' && response.event?.kind === 4 /* SYNCED */) {
        outcomes.push('synced');
        break;
      }
    }
  }
  return outcomes;
}

const outcomes = mode === 'waits' ? await waits() : await watches();
process.stdout.write(`${JSON.stringify({ outcomes })}\n`);
const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (line === 'exit') process.exit(0);
});
lines.on('close', () => process.exit(0));
