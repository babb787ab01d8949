/**
 * IdleExit, the countdown the server pokes: fires after the idle period, never while the
 * daemon is busy, and counts again when the daemon decided to go on.
 * (The daemon-level idle exit is in systemd-daemon.test.ts.)
 */
import test from 'ava';
import { IdleExit, parseIdleExit } from '../src/systemd/idle-exit.js';
import { sleep, within } from '../testkit/cleanup.js';

/**
 * An IdleExit and a promise of its firing. The promise carries a (ref'd) timeout: the
 * idle timer itself is unref'd, as in the daemon, where the listener keeps the loop alive.
 */
function countdown(idleMs: number): { idle: IdleExit; fired: Promise<void>; count: () => number } {
  let count = 0;
  let resolve!: () => void;
  const fired = new Promise<void>((r) => { resolve = r; });
  const idle = new IdleExit(idleMs, () => { count++; resolve(); return true; });
  return { idle, fired: within(fired, 10_000, 'idle timer'), count: () => count };
}

test('fires once after the idle period when the daemon was never busy', async (t) => {
  const { idle, fired, count } = countdown(20);
  await fired;
  idle.update(false);
  idle.update(true);
  await sleep(100);
  t.is(count(), 1);
  t.true(idle.expired);
});

test('never fires while busy, and fires after becoming idle again', async (t) => {
  const { idle, fired, count } = countdown(20);
  idle.update(false);
  idle.update(false); // repeated reports change nothing
  await sleep(200); // ten idle periods
  t.is(count(), 0);
  t.false(idle.expired);
  idle.update(true);
  await fired;
  t.is(count(), 1);
});

test('a busy spell before the deadline restarts the idle period', async (t) => {
  const { idle, fired, count } = countdown(500);
  await sleep(100);
  idle.update(false);
  await sleep(500); // past the first deadline
  t.is(count(), 0);
  idle.update(true);
  await fired;
  t.is(count(), 1);
});

test('when onIdle goes on (clients were waiting), the countdown starts again once they leave', async (t) => {
  let calls = 0;
  let idle!: IdleExit;
  let firstCall!: () => void;
  let secondCall!: () => void;
  const first = new Promise<void>((r) => { firstCall = r; });
  const second = new Promise<void>((r) => { secondCall = r; });
  idle = new IdleExit(10, () => {
    calls++;
    if (calls === 1) {
      idle.update(false); // the server admitted a client it found in the backlog
      firstCall();
      return false;
    }
    secondCall();
    return true;
  });
  await within(first, 10_000, 'first deadline');
  await sleep(100); // ten idle periods while the client is connected
  t.is(calls, 1);
  t.false(idle.expired);
  idle.update(true);
  await within(second, 10_000, 'second deadline');
  t.is(calls, 2);
  t.true(idle.expired);
});

test('close() stops the countdown for good', async (t) => {
  const { idle, count } = countdown(10);
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
