/**
 * A partition of a loop device without LO_FLAGS_PARTSCAN is never served (docs/design.md,
 * "Registry", invariant 3), so waiting for one cannot help: when the loop is already
 * attached the wait ends at once with NOT_FOUND and says why; when it is attached during
 * the wait (the flag may still follow, by LOOP_SET_STATUS64), the TIMEOUT says why.
 * Through the wire and through diskseq-open --wait.
 */
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { expectRefused, startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';
import { createLoop } from '../testkit/loop.js';
import { native } from '../native/index.js';
import { runCli } from './helpers/cli.js';
import type { OpenOutcome, WireClient } from '../testkit/wire-client.js';

const TEN_MINUTES = 600_000;
const HINT = /loop device without LO_FLAGS_PARTSCAN: its partitions could outlive it, so they are never served/;

/** The highest diskseq sysfs shows now. */
function highestDiskseq(): bigint {
  let highest = 0n;
  for (const name of readdirSync('/sys/block')) {
    try {
      const diskseq = BigInt(readFileSync(`/sys/block/${name}/diskseq`, 'utf8').trim());
      if (diskseq > highest) highest = diskseq;
    } catch {
      // Gone meanwhile.
    }
  }
  return highest;
}

test('--wait for a partition of a loop already attached without LO_FLAGS_PARTSCAN: NOT_FOUND at once, with the reason', async (t) => {
  if (!needsRoot(t)) return;
  const { client, daemon } = await startBroker(t);
  // partx --add (in createLoop) makes the partition; without PARTSCAN the daemon never indexes it.
  const loop = createLoop({ partscan: false, partitionsMiB: [2] }, t);
  const outcome = await client.open({ diskseq: loop.diskseq, partition: 1, waitMs: TEN_MINUTES });
  expectRefused(t, outcome, 'NOT_FOUND', 'non-PARTSCAN partition');
  if (!outcome.ok) t.regex(outcome.message, HINT);
  // The whole disk is served as usual.
  const whole = await client.open({ diskseq: loop.diskseq, waitMs: TEN_MINUTES });
  t.true(whole.ok);
  if (whole.ok) native.close(whole.fd);

  const cli = await runCli(['--socket', daemon.socketPath, '--wait', '600', `${loop.diskseq}p1`, '--', 'true']);
  t.is(cli.code, 125, 'the open failed before COMMAND ran');
  t.regex(cli.stderr, /NOT_FOUND/);
  t.regex(cli.stderr, HINT);
});

test('a loop attached without LO_FLAGS_PARTSCAN while its partition is awaited: the TIMEOUT says why', async (t) => {
  if (!needsRoot(t)) return;
  const { client, connect } = await startBroker(t);
  // The next attach takes the next diskseq, unless the machine attaches others meanwhile:
  // wait for partition 1 of each of the next 32, each on a connection of its own. Another
  // test's device may take one of them, and the partition it adds would then be opened for
  // us; so as soon as the attach (synchronous) has told which one is ours, the other
  // connections close: their waits end, and any fd already sent on them goes with the
  // connection. Holding one for the whole wait made that test's partx --delete fail (EBUSY).
  // Long enough for the attach to be indexed first on a busy machine (checked below),
  // since the hint is about what is indexed then.
  const WAIT_MS = 15_000;
  // A List is answered once the first scan has indexed every bound disk. Before that an
  // open waits for the index while the hellos below are answered, and the attach could be
  // indexed by the time the opens go on (NOT_FOUND at once, not the TIMEOUT asked about).
  await client.list(false);
  const base = highestDiskseq();
  const waits = new Map<bigint, { connection: WireClient; wait: Promise<OpenOutcome> }>();
  for (let i = 1n; i <= 32n; i++) {
    const connection = connect();
    const wait = connection.open({ diskseq: base + i, partition: 1, waitMs: WAIT_MS });
    wait.catch(() => undefined); // ours is settled below; the others end with their connection
    waits.set(base + i, { connection, wait });
  }
  for (const { connection } of waits.values()) {
    const { response } = await connection.request({ hello: { protocolVersion: 1 } }); // its wait is registered
    t.truthy(response.hello);
  }
  const started = Date.now();
  const loop = createLoop({ partscan: false }, t);
  for (const [diskseq, { connection, wait }] of waits) {
    if (diskseq === loop.diskseq) continue;
    connection.close();
    void wait.then((outcome) => outcome.ok && native.close(outcome.fd), () => undefined);
  }
  const mine = waits.get(loop.diskseq)?.wait;
  if (mine === undefined) {
    t.fail(`the loop got diskseq ${loop.diskseq}, beyond the 32 awaited after ${base}`);
    return;
  }
  const whole = await client.open({ diskseq: loop.diskseq });
  t.true(whole.ok, 'the daemon indexed the loop device');
  if (whole.ok) native.close(whole.fd);
  t.true(Date.now() - started < WAIT_MS - 1000, 'indexed well before the wait expires');
  const outcome = await mine;
  expectRefused(t, outcome, 'TIMEOUT', 'partition of a loop attached without PARTSCAN');
  if (!outcome.ok) {
    t.regex(outcome.message, new RegExp(`^diskseq ${loop.diskseq} partition 1 did not appear within ${WAIT_MS} ms \\(`));
    t.regex(outcome.message, HINT);
  }
});
