// Clients that die mid-request (docs/design.md, "Who owns each fd"): the daemon finishes or
// abandons their opens, and every fd it opened for them is closed — none leak. A client
// that closes right after pipelining opens, and client processes SIGKILLed with opens in
// flight, some holding fds they received.
import test from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { DaemonProcess, describeFootprint } from '../testkit/daemon.js';
import { encodeRequest } from '../testkit/fuzz-packets.js';
import { RawClient } from '../testkit/raw-client.js';
import { createLoop, type LoopFixture } from '../testkit/loop.js';
import { needsRoot } from './helpers/ci.js';
import { checkValidOpen, u64 } from './helpers/hostile-requests.js';

const PEER = fileURLToPath(new URL('./helpers/dying-client-main.js', import.meta.url));

/** Runs the dying peer until it has sent `count` opens and read `read` answers, then SIGKILLs it. */
async function killMidRequest(socketPath: string, loop: LoopFixture, count: number, read: number): Promise<string> {
  const child = spawn(process.execPath, [PEER, socketPath, loop.diskseq.toString(), String(count), String(read)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const exited = once(child, 'exit');
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`peer not ready within 20 s; stderr: ${err}`)), 20_000);
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('\n')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => reject(new Error(`peer exited with ${code} before it was ready; stderr: ${err}`)));
    });
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
  return out.trim();
}

test('clients that die mid-request leak no fds in the daemon', async (t) => {
  if (!needsRoot(t)) return;
  t.timeout(60_000);
  const loop = createLoop({}, t);
  // A short stall timeout: the peer that sends 1000 opens without reading is dropped soon.
  const daemon = await DaemonProcess.start({ capture: 'counts', extraArgs: ['--stall-timeout-ms', '500'] }, t);
  t.is(await checkValidOpen(daemon.socketPath, loop), undefined, 'warm-up open');
  const before = { fds: await daemon.stableFdCount(), rssBytes: daemon.rssBytes() };
  t.log(`daemon before: ${describeFootprint(before)}`);
  const auditsBefore = daemon.count('audit');

  // 1. Pipelines 200 opens and closes at once, without reading anything.
  for (let round = 0; round < 5; round++) {
    const client = new RawClient(daemon.socketPath);
    for (let i = 0; i < 200; i++) {
      const outcome = await client.send(encodeRequest({ id: u64(i + 1), open: { diskseq: u64(loop.diskseq), exclusive: i % 7 === 0 } }));
      if (!outcome.sent) break;
    }
    client.close();
  }
  let fds = await daemon.settleFds(before.fds);
  t.log(`after 5 clients closed right after 200 pipelined opens each: ${describeFootprint(daemon.footprint())}`);
  t.is(fds, before.fds, `fds leaked:\n${daemon.fdTargets().join('\n')}`);

  // 2. Processes SIGKILLed with opens in flight: some read nothing, some hold fds they got.
  for (const [count, read] of [[300, 0], [300, 5], [50, 50], [1000, 0]] as const) {
    const status = await killMidRequest(daemon.socketPath, loop, count, read);
    t.log(`peer ${status} (sent, read), then SIGKILL`);
  }
  fds = await daemon.settleFds(before.fds);
  const after = daemon.footprint();
  t.log(`daemon after the killed peers: ${describeFootprint(after)}; ${daemon.count('audit') - auditsBefore} requests audited`);
  t.is(fds, before.fds, `fds leaked:\n${daemon.fdTargets().join('\n')}`);
  t.false(daemon.fdTargets().some((f) => f.endsWith(`/dev/${loop.name}`)), 'the daemon holds no fd of the device');
  t.is(daemon.count('internal error'), 0);
  t.true(daemon.alive);
  t.is(await checkValidOpen(daemon.socketPath, loop), undefined, 'the daemon keeps serving');
});
