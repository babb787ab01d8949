// fds in flight (docs/design.md, "Limits: fds in flight"): the kernel charges fds sent and
// not yet received to the sender, and past its RLIMIT_NOFILE refuses every sendmsg with an
// fd (ETOOMANYREFS) unless it has CAP_SYS_RESOURCE or CAP_SYS_ADMIN, which the unit does not
// give. Here the daemon runs with exactly the unit's capabilities and RLIMIT_NOFILE 512; an
// unprivileged client (uid 65534) asks for fds on 8 connections and never takes them —
// before the bound, 8 connections held ~290 each and root's opens ended in EOF. Now: the
// uid holds at most its share of a quarter of the limit, root is still served, and the
// daemon's fd count returns to its baseline when the client closes (round 1) or takes its
// fds (round 2).
import test, { type ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { needsRoot } from './helpers/ci.js';
import { nobodyReadOnlyPolicy } from './helpers/hostile-peers.js';
import { NOBODY as NOBODY_PEER } from '../testkit/reachable.js';
import { checkValidOpen } from './helpers/hostile-requests.js';
import { DaemonProcess, describeFootprint } from '../testkit/daemon.js';
import { createLoop } from '../testkit/loop.js';

const NOBODY = NOBODY_PEER.uid;
const PEER = fileURLToPath(new URL('./helpers/hostile-never-reader.js', import.meta.url));
const DROP_MSG = 'client does not read its responses; dropped with its queued fds';
const NOFILE = 512;
const CONNECTIONS = 8;
/** diskseqd.service's CapabilityBoundingSet, as setpriv spells it. */
const UNIT_CAPS = '-all,+mknod,+chown,+dac_override';
/** CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_MKNOD. */
const UNIT_CAP_MASK = (1n << 0n) | (1n << 1n) | (1n << 27n);

/** The never-reading client, driven line by line. */
class NeverReader {
  private readonly lines: string[] = [];
  private readonly waiters: Array<() => void> = [];
  private readonly exited: Promise<unknown>;

  constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      this.lines.push(line);
      for (const wake of this.waiters.splice(0)) wake();
    });
    this.exited = once(child, 'exit');
  }

  static start(t: ExecutionContext, socketPath: string, diskseq: bigint, opens: number): NeverReader {
    const child = spawn(process.execPath, [PEER, socketPath, String(NOBODY), diskseq.toString(), String(CONNECTIONS), String(opens)],
      { stdio: ['pipe', 'pipe', 'inherit'] });
    const peer = new NeverReader(child);
    t.teardown(() => peer.kill());
    return peer;
  }

  /** The next JSON line it prints (rejects after 20 s). */
  async next<T>(): Promise<T> {
    const deadline = Date.now() + 20_000;
    while (this.lines.length === 0) {
      if (Date.now() > deadline || this.child.exitCode !== null) throw new Error('the never-reading client printed nothing');
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 200);
      });
    }
    return JSON.parse(this.lines.shift()!) as T;
  }

  tell(command: 'read' | 'exit'): void {
    this.child.stdin!.write(`${command}\n`);
  }

  async exit(): Promise<void> {
    this.tell('exit');
    await this.exited;
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

/** The fds the daemon reported unreceived when it dropped each client (its drop lines). */
async function droppedWith(daemon: DaemonProcess, from: number): Promise<number[]> {
  await daemon.waitForCount(DROP_MSG, from + CONNECTIONS, 20_000);
  return daemon.logs.filter((l) => l.msg === DROP_MSG).slice(from).map((l) => Number(l.unreceivedFds));
}

test('a client that never takes its fds holds at most its share; root is still served under the unit\'s capabilities and RLIMIT_NOFILE 512', async (t) => {
  if (!needsRoot(t)) return;
  t.timeout(90_000);
  const loop = createLoop({}, t);
  const daemon = await DaemonProcess.start({
    worldAccessible: true, policy: nobodyReadOnlyPolicy(t, loop.name), extraArgs: ['--stall-timeout-ms', '1000'],
    wrapper: ['prlimit', `--nofile=${NOFILE}:${NOFILE}`, 'setpriv', '--no-new-privs', '--inh-caps=-all', `--bounding-set=${UNIT_CAPS}`, '--'],
  }, t);
  const status = readFileSync(`/proc/${daemon.pid}/status`, 'utf8');
  t.is(BigInt(`0x${/^CapEff:\s+([0-9a-f]+)$/m.exec(status)![1]}`), UNIT_CAP_MASK, 'exactly the unit\'s capabilities: no CAP_SYS_RESOURCE, no CAP_SYS_ADMIN');
  t.regex(readFileSync(`/proc/${daemon.pid}/limits`, 'utf8'), new RegExp(`^Max open files\\s+${NOFILE}\\s+${NOFILE}\\s`, 'm'));
  const serving = await daemon.waitForLog((l) => l.msg === 'serving');
  const limits = (serving.limits as { unreceivedFds: { total: number; perUid: number; perConnection: number }; rootSharePercent: number });
  t.is(limits.unreceivedFds.total, NOFILE / 4, 'a quarter of RLIMIT_NOFILE in all');
  const uidShare = Math.min(limits.unreceivedFds.perUid, limits.unreceivedFds.total - Math.floor(limits.unreceivedFds.total * limits.rootSharePercent / 100));
  t.log(`unreceived fds: ${limits.unreceivedFds.perConnection} per connection, ${uidShare} for uid ${NOBODY}, ${limits.unreceivedFds.total} in all`);

  t.is(await checkValidOpen(daemon.socketPath, loop), undefined, 'warm-up open');
  const baseline = await daemon.stableFdCount();
  t.log(`daemon baseline: ${describeFootprint(daemon.footprint())}`);

  for (const round of ['closes without reading', 'reads everything, then closes'] as const) {
    const drops = daemon.count(DROP_MSG);
    const peer = NeverReader.start(t, daemon.socketPath, loop.diskseq, 200);
    const { sent } = await peer.next<{ sent: number[] }>();
    t.log(`${round}: the client sent ${sent.join(', ')} opens on its ${CONNECTIONS} connections`);
    const unreceived = await droppedWith(daemon, drops);
    const total = unreceived.reduce((a, b) => a + b, 0);
    t.log(`dropped with ${unreceived.join(', ')} fds unreceived: ${total} in all`);
    t.true(unreceived.every((n) => n <= limits.unreceivedFds.perConnection), 'per connection at most its bound');
    t.true(total > 0 && total <= uidShare, `uid ${NOBODY} held ${total}, at most its share ${uidShare}`);

    // Root is served meanwhile, again and again (before the bound its opens ended in EOF).
    for (let i = 0; i < 20; i++) t.is(await checkValidOpen(daemon.socketPath, loop), undefined, `root's open ${i}`);
    // Settled: the daemon may not have noticed yet that root's last connection hung up.
    const held = await daemon.settleFds(baseline + CONNECTIONS);
    t.true(held <= baseline + CONNECTIONS, `while the client holds its fds the daemon keeps at most one socket per connection (${held} fds, baseline ${baseline}): ${daemon.fdTargets().join('\n')}`);

    if (round === 'reads everything, then closes') {
      peer.tell('read');
      const got = await peer.next<{ fds: number[]; packets: number[]; ended: boolean[] }>();
      t.log(`the client received ${got.fds.join(', ')} fds`);
      t.deepEqual([...got.fds].sort((a, b) => a - b), [...unreceived].sort((a, b) => a - b), 'it received exactly what the daemon counted, per connection');
      t.true(got.ended.every(Boolean), 'each connection then ends');
      // Taken: the daemon lets go of its sockets while the client is still connected.
      t.is(await daemon.settleFds(baseline), baseline, `after the client read: ${daemon.fdTargets().join('\n')}`);
    }
    await peer.exit();
    t.is(await daemon.settleFds(baseline), baseline, `after the client closed: ${daemon.fdTargets().join('\n')}`);
    t.false(daemon.fdTargets().some((f) => f.endsWith(`/dev/${loop.name}`)), 'the daemon holds no fd of the device');
  }
  t.is(daemon.count('connection failed'), 0, 'no sendmsg failed (ETOOMANYREFS would)');
  t.is(await checkValidOpen(daemon.socketPath, loop), undefined, 'the daemon keeps serving');
});
