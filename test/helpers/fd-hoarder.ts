/**
 * A peer program (run as another user through peer-launcher.js) that asks for fds and does
 * not take them, over either front-end, for test/varlink-unreceived-fds.test.ts. For each
 * kind in KINDS (a comma-separated list of `varlink` and `seqpacket`), in order, it opens a
 * connection and pipelines CALLS opens of DISKSEQ on it without reading — Acquire calls on
 * the Varlink socket, OpenRequests on the SEQPACKET one — then waits until the daemon has
 * stopped sending to it (SIOCINQ unchanged for 300 ms) before the next, so that the
 * connections fill the uid's share in the order given. It prints
 *   {"sent": [calls per connection], "unread": [SIOCINQ bytes per connection]}
 * and then obeys lines on stdin:
 *   unread  prints {"unread": [...]} again
 *   read    receives everything on every connection (fds checked and closed) until
 *           end-of-file or 1 s without anything, and prints
 *           {"fds": [...], "replies": [...], "errors": [...], "ended": [...], "wrongDevice": n}
 *   exit    exits (so does the end of stdin), closing whatever it has not read.
 *
 *   node peer-launcher.js IDENTITY fd-hoarder.js VARLINK_SOCKET SEQPACKET_SOCKET DISKSEQ CALLS KINDS
 */
import { createInterface } from 'node:readline';
import { native } from '../../native/index.js';
import { sleep } from '../../testkit/cleanup.js';
import { encodeRequest } from '../../testkit/fuzz-packets.js';
import { u64 } from './hostile-requests.js';

type Kind = 'varlink' | 'seqpacket';

interface Hoarded {
  kind: Kind;
  fd: number;
  sent: number;
}

/** Writes `calls` opens on a non-blocking socket, as many as it takes; returns how many went whole. */
function pipeline(kind: Kind, fd: number, diskseq: string, calls: number): number {
  if (kind === 'seqpacket') {
    let n = 0;
    try {
      while (n < calls && native.send(fd, encodeRequest({ id: u64(n + 1), open: { diskseq: u64(BigInt(diskseq)) } }), -1)) n++;
    } catch {
      // Dropped already: what was sent is what counts.
    }
    return n;
  }
  const call = `{"method":"io.systemd.StorageProvider.Acquire","parameters":{"name":"${diskseq}","readOnly":true}}\0`;
  const bytes = Buffer.from(call.repeat(calls));
  let offset = 0;
  try {
    for (let n; offset < bytes.length && (n = native.sendStream(fd, bytes, offset, -1)) > 0;) offset += n;
  } catch {
    // Dropped already.
  }
  return Math.floor(offset / call.length);
}

/** Waits until the daemon stops sending to fd: SIOCINQ the same for 300 ms (at most 10 s). */
async function settled(fd: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  let last = -1;
  let since = Date.now();
  while (Date.now() - since < 300 && Date.now() < deadline) {
    await sleep(25);
    const now = native.unreadBytes(fd);
    if (now !== last) [last, since] = [now, Date.now()];
  }
}

/** Receives everything on one connection until end-of-file or 1 s of nothing. */
async function drain(h: Hoarded, diskseq: string): Promise<{ fds: number; replies: number; errors: number; ended: boolean; wrong: number }> {
  const buffer = Buffer.alloc(65536);
  const result = { fds: 0, replies: 0, errors: 0, ended: false, wrong: 0 };
  let idleSince = Date.now();
  for (;;) {
    let got;
    try {
      got = native.recv(h.fd, buffer);
    } catch {
      return { ...result, ended: true }; // ECONNRESET: the daemon is gone
    }
    if (got === null) {
      if (Date.now() - idleSince > 1000) return result;
      await sleep(5);
      continue;
    }
    if (got.bytes === 0 && got.fds.length === 0) return { ...result, ended: true };
    idleSince = Date.now();
    const data = buffer.subarray(0, got.bytes);
    if (h.kind === 'varlink') {
      for (let i = data.indexOf(0); i >= 0; i = data.indexOf(0, i + 1)) result.replies++;
      result.errors += data.toString('latin1').split('"error":').length - 1;
    } else {
      result.replies++;
    }
    for (const fd of got.fds) {
      result.fds++;
      if (native.probeFdSync(fd).diskseq?.toString() !== diskseq) result.wrong++;
      native.close(fd);
    }
  }
}

/** The program (see the module comment). */
export async function main(args: string[]): Promise<number> {
  const [varlinkSocket, seqpacketSocket, diskseq, callsText, kindsText] = args as [string, string, string, string, string];
  const hoarded: Hoarded[] = [];
  for (const kind of kindsText.split(',') as Kind[]) {
    const fd = kind === 'varlink' ? native.connectStream(varlinkSocket, true) : native.connectSeqpacket(seqpacketSocket, true);
    hoarded.push({ kind, fd, sent: pipeline(kind, fd, diskseq, Number(callsText)) });
    await settled(fd);
  }
  const unread = (): number[] => hoarded.map((h) => native.unreadBytes(h.fd));
  process.stdout.write(`${JSON.stringify({ sent: hoarded.map((h) => h.sent), unread: unread() })}\n`);
  const lines = createInterface({ input: process.stdin });
  return new Promise((resolve) => {
    lines.on('line', (line) => {
      if (line === 'unread') {
        process.stdout.write(`${JSON.stringify({ unread: unread() })}\n`);
      } else if (line === 'read') {
        void Promise.all(hoarded.map((h) => drain(h, diskseq))).then((results) => {
          process.stdout.write(`${JSON.stringify({
            fds: results.map((r) => r.fds), replies: results.map((r) => r.replies), errors: results.map((r) => r.errors),
            ended: results.map((r) => r.ended), wrongDevice: results.reduce((a, r) => a + r.wrong, 0),
          })}\n`);
        });
      } else if (line === 'exit') {
        lines.close();
      }
    });
    // Exits at once: the sockets close with the process, whatever is still unread.
    lines.on('close', () => {
      resolve(0);
      process.exit(0);
    });
  });
}
