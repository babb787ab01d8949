/**
 * IdleExit, the counter the server pokes: fires once after the idle period with nothing
 * held, never while something is held, and tells when the last hold after firing is gone.
 * (The daemon-level idle exit is in systemd-daemon.test.ts.)
 */
import test from 'ava';
import { IdleExit, parseIdleExit } from '../src/systemd/idle-exit.js';
import { within } from './systemd-support.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * An IdleExit and a promise of its firing. The promise carries a (ref'd) timeout: the
 * idle timer itself is unref'd, as in the daemon, where the listener keeps the loop alive.
 */
function firedPromise(idleMs: number): { idle: IdleExit; fired: Promise<void>; count: () => number } {
  let count = 0;
  let resolve!: () => void;
  const fired = new Promise<void>((r) => { resolve = r; });
  const idle = new IdleExit(idleMs, () => { count++; resolve(); });
  return { idle, fired: within(fired, 10_000, 'idle timer'), count: () => count };
}

test('fires once after the idle period when nothing was ever held', async (t) => {
  const { idle, fired, count } = firedPromise(20);
  await fired;
  await sleep(100);
  t.is(count(), 1);
  t.true(idle.expired);
});

test('never fires while something is held, and fires after the last release', async (t) => {
  const { idle, fired, count } = firedPromise(20);
  const releaseConnection = idle.hold();
  const releaseRequest = idle.hold();
  releaseConnection();
  releaseConnection(); // idempotent: must not release the request's hold too
  t.is(idle.busy, 1);
  await sleep(200); // ten idle periods
  t.is(count(), 0);
  t.false(idle.expired);
  releaseRequest();
  await fired;
  t.is(count(), 1);
});

test('a hold taken before the deadline restarts the idle period', async (t) => {
  const { idle, fired, count } = firedPromise(500);
  await sleep(100);
  const release = idle.hold();
  await sleep(500); // past the first deadline
  t.is(count(), 0);
  release();
  await fired;
  t.is(count(), 1);
});

test('drained() resolves when the holds taken after expiry are released', async (t) => {
  let idle!: IdleExit;
  let release!: () => void;
  const fired = new Promise<void>((resolve) => {
    idle = new IdleExit(10, () => {
      release = idle.hold(); // a connection found in the backlog at the deadline
      resolve();
    });
  });
  await within(fired, 10_000, 'idle timer');
  let drained = false;
  const done = idle.drained().then(() => { drained = true; });
  await sleep(50);
  t.false(drained);
  release();
  await done;
  t.true(drained);
});

test('close() stops the timer for good', async (t) => {
  const { idle, count } = firedPromise(10);
  idle.close();
  await sleep(100);
  t.is(count(), 0);
});

test('--idle-exit takes positive seconds', (t) => {
  t.is(parseIdleExit('300'), 300_000);
  t.is(parseIdleExit('0.5'), 500);
  for (const bad of ['0', '-1', 'abc', '', '1e3', '5s']) {
    t.throws(() => parseIdleExit(bad), { message: /--idle-exit takes a number of seconds > 0/ }, bad);
  }
});
