/**
 * A client that asks for fds and never takes them, for test/hostile-unreceived-fds.test.ts.
 * Started as root, it drops to UID (and gid UID, no groups) before it connects, so it never
 * needs to read the checkout as that user. It opens CONNECTIONS connections and on each
 * pipelines up to OPENS opens of DISKSEQ without reading, prints
 *   {"sent": [n, ...]}
 * and then obeys lines on stdin: "read" receives everything queued on every connection
 * (closing the fds), until end-of-file or nothing more comes, and prints
 *   {"fds": [n, ...], "packets": [n, ...], "ended": [true, ...]}
 * "exit" (or the end of stdin) exits, closing whatever it has not read.
 *
 *   node dist/test/helpers/hostile-never-reader.js SOCKET UID DISKSEQ CONNECTIONS OPENS
 */
import { createInterface } from 'node:readline';
import { native } from '../../native/index.js';
import { encodeRequest } from '../../testkit/fuzz-packets.js';
import { u64 } from './hostile-requests.js';

const [socketPath, uidText, diskseq, connectionsText, opensText] = process.argv.slice(2);
const uid = Number(uidText);
process.setgroups!([]);
process.setgid!(uid);
process.setuid!(uid);

const sockets: number[] = [];
const sent: number[] = [];
for (let c = 0; c < Number(connectionsText); c++) {
  const fd = native.connectSeqpacket(socketPath!, true);
  sockets.push(fd);
  let n = 0;
  try {
    // Non-blocking: stop when our buffer is full (the daemon stopped reading us).
    while (n < Number(opensText) && native.send(fd, encodeRequest({ id: u64(n + 1), open: { diskseq: u64(BigInt(diskseq!)) } }), -1)) n++;
  } catch {
    // Dropped already: what was sent is what counts.
  }
  sent.push(n);
}
process.stdout.write(`${JSON.stringify({ sent })}\n`);

/** Receives every packet queued on fd: fds counted and closed, until end-of-file or 1 s without anything. */
async function drain(fd: number): Promise<{ fds: number; packets: number; ended: boolean }> {
  const buffer = Buffer.alloc(65536);
  let fds = 0;
  let packets = 0;
  let idleSince = Date.now();
  for (;;) {
    let got;
    try {
      got = native.recv(fd, buffer);
    } catch {
      return { fds, packets, ended: true }; // ECONNRESET and the like: the daemon is gone
    }
    if (got === null) {
      if (Date.now() - idleSince > 1000) return { fds, packets, ended: false };
      await new Promise((resolve) => setTimeout(resolve, 5));
      continue;
    }
    if (got.bytes === 0 && got.fds.length === 0) return { fds, packets, ended: true };
    idleSince = Date.now();
    packets++;
    fds += got.fds.length;
    for (const received of got.fds) native.close(received);
  }
}

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (line === 'read') {
    void Promise.all(sockets.map(drain)).then((results) => {
      process.stdout.write(`${JSON.stringify({ fds: results.map((r) => r.fds), packets: results.map((r) => r.packets), ended: results.map((r) => r.ended) })}\n`);
    });
  } else if (line === 'exit') {
    process.exit(0);
  }
});
lines.on('close', () => process.exit(0));
