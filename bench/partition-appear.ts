/**
 * Partition-appear benchmark (docs/design.md, "Registry"): time from the BLKPG ioctl that
 * adds a partition to the verified fd in the hand of a client whose open (wait_ms) was
 * already waiting for it; median of 100.
 *
 * How it is measured, and why this way:
 * - The BLKPG add is issued by a small C helper compiled at run time (the addon has no
 *   BLKPG call; spawning partx would put a process start and exit inside or around the
 *   measured window). The helper stays running and takes one command per line on stdin,
 *   so no process starts during a measurement; it reads CLOCK_MONOTONIC right before and
 *   right after ioctl(BLKPG_ADD_PARTITION) and prints both.
 * - The client (this process, the test helpers' wire client, no client-library re-check)
 *   reads the same clock (process.hrtime = uv_hrtime = CLOCK_MONOTONIC) when the Opened
 *   response with its fd has been received and decoded.
 * - Reported: after-ioctl -> fd (the figure the target names: "BLKPG add returns -> fd")
 *   and before-ioctl -> fd. The kernel sends the add uevent inside the ioctl, so the
 *   daemon can start before the ioctl returns; the first figure may even be negative.
 * - Each iteration: open(partition 1, wait_ms 10 s) + a hello barrier (the daemon has
 *   registered the wait), then the BLKPG add; after the fd arrives it is checked
 *   (BLKGETDISKSEQ, partition marker) and closed, the partition deleted (BLKPG) and an
 *   open of a gone diskseq makes the daemon drain the remove event before the next round.
 * - For scale, each round also times one plain open of the partition once it is there
 *   (request sent -> fd received): the daemon's fixed open cost under the same load.
 *
 * Run as root: `node dist/bench/partition-appear.js`. BENCH_APPEAR_N (default 100),
 * BENCH_LOG_LEVEL (the daemon's, default info: audit lines are part of its work).
 */
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { native } from '../native/index.js';
import { DaemonProcess } from '../testkit/daemon.js';
import { readMarker } from '../testkit/image.js';
import { createLoop } from '../testkit/loop.js';
import { WireClient } from '../testkit/wire-client.js';

const HELPER_SOURCE = String.raw`
#include <errno.h>
#include <fcntl.h>
#include <linux/blkpg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

/* One command per stdin line: "add PNO START LEN" or "del PNO" (bytes). Answers
   "ok NS_BEFORE NS_AFTER" (CLOCK_MONOTONIC around the ioctl) or "err ERRNO". */
static long long ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
  if (fd < 0) { perror("open"); return 1; }
  char line[256], op[8];
  while (fgets(line, sizeof line, stdin)) {
    long long pno = 0, start = 0, length = 0;
    if (sscanf(line, "%7s %lld %lld %lld", op, &pno, &start, &length) < 2) { printf("err %d\n", EINVAL); fflush(stdout); continue; }
    struct blkpg_partition part;
    memset(&part, 0, sizeof part);
    part.pno = (int)pno;
    part.start = start;
    part.length = length;
    struct blkpg_ioctl_arg arg = { .op = strcmp(op, "add") == 0 ? BLKPG_ADD_PARTITION : BLKPG_DEL_PARTITION, .flags = 0, .datalen = sizeof part, .data = &part };
    long long before = ns();
    int r = ioctl(fd, BLKPG, &arg);
    long long after = ns();
    if (r < 0) printf("err %d\n", errno); else printf("ok %lld %lld\n", before, after);
    fflush(stdout);
  }
  return 0;
}
`;

/** The BLKPG helper process: one request at a time. */
class BlkpgHelper {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly pending: ((line: string) => void)[] = [];

  constructor(binary: string, device: string) {
    this.child = spawn(binary, [device]);
    createInterface({ input: this.child.stdout }).on('line', (line) => this.pending.shift()?.(line));
  }

  /** Runs one BLKPG op; resolves with CLOCK_MONOTONIC ns before and after the ioctl. */
  async run(command: string): Promise<{ before: bigint; after: bigint }> {
    const line = await new Promise<string>((resolve) => {
      this.pending.push(resolve);
      this.child.stdin.write(`${command}\n`);
    });
    const [status, a, b] = line.split(' ');
    if (status !== 'ok') throw new Error(`BLKPG ${command}: ${line}`);
    return { before: BigInt(a!), after: BigInt(b!) };
  }

  close(): void {
    this.child.stdin.end();
    this.child.kill();
  }
}

/** The figures this benchmark reports (microseconds). */
export interface PartitionAppearResult {
  count: number;
  afterIoctl: { p50: number; p90: number; min: number; max: number };
  beforeIoctl: { p50: number; p90: number; min: number; max: number };
  /** For scale: a plain open of the same partition once present (request sent -> fd), in the same rounds. */
  plainOpen: { p50: number; p90: number; min: number; max: number };
}

const stats = (samples: number[]) => {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  const mid = sorted.length >> 1;
  const p50 = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { p50, p90: at(0.9), min: sorted[0]!, max: sorted[sorted.length - 1]! };
};

/** Runs the benchmark on a loop device and a daemon of its own; cleans up. */
export async function partitionAppear(n = Number(process.env.BENCH_APPEAR_N ?? 100), warmup = 5): Promise<PartitionAppearResult> {
  if (process.getuid?.() !== 0) throw new Error('the partition-appear benchmark needs root');
  const dir = mkdtempSync(join(tmpdir(), 'diskseqd-bench-appear-'));
  const gone = createLoop({});
  const absent = gone.diskseq; // a diskseq that can never appear again: the drain barrier
  gone.cleanup();
  const loop = createLoop({ partscan: true, partitionsMiB: [2], addPartitions: false });
  let daemon: DaemonProcess | undefined;
  let client: WireClient | undefined;
  let helper: BlkpgHelper | undefined;
  try {
    writeFileSync(join(dir, 'blkpg.c'), HELPER_SOURCE);
    execFileSync('cc', ['-O2', '-Wall', '-o', join(dir, 'blkpg'), join(dir, 'blkpg.c')], { stdio: 'pipe' });
    helper = new BlkpgHelper(join(dir, 'blkpg'), loop.devPath);
    daemon = await DaemonProcess.start({ logLevel: process.env.BENCH_LOG_LEVEL ?? 'info' });
    client = WireClient.connect(daemon.socketPath);
    const p1 = loop.image.partitions[0]!;
    const afterSamples: number[] = [];
    const beforeSamples: number[] = [];
    const plainSamples: number[] = [];
    for (let i = 0; i < warmup + n; i++) {
      let arrived = 0n;
      const opened = client.open({ diskseq: loop.diskseq, partition: 1, waitMs: 10_000 }).then((outcome) => {
        arrived = process.hrtime.bigint();
        return outcome;
      });
      const hello = await client.request({ hello: { protocolVersion: 1 } });
      if (!hello.response.hello || arrived !== 0n) throw new Error('the open was answered before the partition existed');
      const add = await helper.run(`add 1 ${p1.startBytes} ${p1.sizeBytes}`);
      const outcome = await opened;
      if (!outcome.ok) throw new Error(`open failed: ${outcome.code} ${outcome.message}`);
      try {
        if (native.probeFdSync(outcome.fd).diskseq !== loop.diskseq) throw new Error('delivered fd has the wrong diskseq');
        if (readMarker(outcome.fd) !== p1.marker) throw new Error('delivered fd does not read partition 1');
      } finally {
        native.close(outcome.fd);
      }
      // For scale, in the same round (same load): the same open now that the partition is
      // there, request sent -> fd received, no wait involved.
      const t0 = process.hrtime.bigint();
      const plain = await client.open({ diskseq: loop.diskseq, partition: 1, waitMs: 10_000 });
      const t1 = process.hrtime.bigint();
      if (!plain.ok) throw new Error(`plain open failed: ${plain.code} ${plain.message}`);
      native.close(plain.fd);
      if (i >= warmup) {
        afterSamples.push(Number(arrived - add.after) / 1000);
        beforeSamples.push(Number(arrived - add.before) / 1000);
        plainSamples.push(Number(t1 - t0) / 1000);
      }
      await deletePartition(helper);
      const miss = await client.open({ diskseq: absent });
      if (miss.ok || miss.code !== 'NOT_FOUND') throw new Error('drain barrier: expected NOT_FOUND');
    }
    return { count: n, afterIoctl: stats(afterSamples), beforeIoctl: stats(beforeSamples), plainOpen: stats(plainSamples) };
  } finally {
    client?.close();
    helper?.close();
    await daemon?.stop();
    loop.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** BLKPG delete, retried while the daemon's copy of the fd may still be closing (EBUSY). */
async function deletePartition(helper: BlkpgHelper): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await helper.run('del 1');
      return;
    } catch (error) {
      if (!/err 16$/.test((error as Error).message) || attempt >= 100) throw error;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }
}

/** Prints the figures. */
export function printPartitionAppear(r: PartitionAppearResult): void {
  const f = (s: PartitionAppearResult['afterIoctl']) => `median ${s.p50.toFixed(0)} us, p90 ${s.p90.toFixed(0)} us, min ${s.min.toFixed(0)} us, max ${s.max.toFixed(0)} us`;
  console.log(`\npartition appears -> fd in the waiting client (${r.count} rounds, BLKPG by a resident C helper, CLOCK_MONOTONIC on both sides)`);
  console.log(`  BLKPG ioctl returned -> fd received: ${f(r.afterIoctl)}   (target <= 1 ms median)`);
  console.log(`  BLKPG ioctl started  -> fd received: ${f(r.beforeIoctl)}`);
  console.log(`  for scale, same rounds, open of the present partition, request sent -> fd received: ${f(r.plainOpen)}`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  partitionAppear().then(printPartitionAppear).catch((error: unknown) => {
    console.error(`bench failed: ${(error as Error).stack ?? String(error)}`);
    process.exitCode = 1;
  });
}
