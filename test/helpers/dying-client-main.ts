/**
 * A client process for test/hostile-dying-client.test.ts, to be SIGKILLed mid-request:
 * connects, sends COUNT pipelined opens of DISKSEQ, reads READ responses (keeping their
 * fds open), prints "ready <sent> <read>" (and " dropped:<errno>" when the daemon dropped it
 * as a client that does not read) and waits to be killed.
 *
 *   node dist/test/helpers/dying-client-main.js SOCKET DISKSEQ COUNT READ
 */
import { native } from '../../native/index.js';
import { sleepSync } from '../../testkit/cleanup.js';
import { encodeRequest } from '../../testkit/fuzz-packets.js';
import { u64 } from './hostile-requests.js';

/** native.send/recv never block (MSG_DONTWAIT); this process has nothing else to do. */
function pause(): void {
  sleepSync(1);
}

const [socketPath, diskseq, countText, readText] = process.argv.slice(2);
const fd = native.connectSeqpacket(socketPath!, false);
let sent = 0;
let dropped = '';
while (sent < Number(countText)) {
  try {
    if (native.send(fd, encodeRequest({ id: u64(sent + 1), open: { diskseq: u64(BigInt(diskseq!)) } }), -1)) sent++;
    else pause();
  } catch (error) {
    // Not reading while sending many opens gets us dropped as a slow reader: also fine.
    dropped = ` dropped:${(error as { code?: string }).code}`;
    break;
  }
}
const buffer = Buffer.alloc(65536);
let read = 0;
const held: number[] = [];
while (read < Number(readText)) {
  const received = native.recv(fd, buffer);
  if (received === null) {
    pause();
    continue;
  }
  if (received.bytes === 0 && received.fds.length === 0) break;
  held.push(...received.fds); // kept open on purpose: the kernel closes them at our death
  read++;
}
process.stdout.write(`ready ${sent} ${read}${dropped}\n`);
setInterval(() => undefined, 60_000);
