/**
 * DeviceWork's rules (docs/design.md, "Hung devices") with jobs this test controls: a job
 * that does not return stalls its disk only; work for that disk then waits without
 * starting, until the job returns or its deadline answers it TIMEOUT; a late result is
 * disposed of; each uid has a bound, and closes never wait for it. The same contract on a
 * device that really hangs is test/hung-device.test.ts; this one needs no root.
 */
import test from 'ava';
import { constants } from 'node:os';
import { BrokerError } from '../src/errors.js';
import { DeviceWork } from '../src/device-work.js';
import { createLogger } from '../src/log.js';
import { ErrorCode } from '../proto/contract.js';
import { sleep } from '../testkit/cleanup.js';

/** A job the test finishes by hand; `started` says whether DeviceWork started it. */
function controlled<T>() {
  let finish!: (value: T) => void;
  const job = { started: false, finish: (value: T) => finish(value) };
  const start = (): Promise<T> => {
    job.started = true;
    return new Promise<T>((resolve) => (finish = resolve));
  };
  return { job, start };
}

const log = createLogger('silent');

async function until(condition: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await sleep(5);
  }
}

test('a stuck job stalls its own disk only; the disk\'s next job starts when it returns', async (t) => {
  const work = new DeviceWork({ stallMs: 20, timeoutMs: 60_000, maxPerUid: 16 }, log);
  const a = controlled<string>();
  const first = work.run('7:1', 'loop1', 1000, a.start, () => undefined);
  await until(() => work.stalledDisks.includes('loop1'));
  const b = controlled<string>();
  const second = work.run('7:1', 'loop1', 0, b.start, () => undefined);
  const other = work.run('7:2', 'loop2', 0, async () => 'other disk', () => undefined);
  t.is(await other, 'other disk', 'another disk is served meanwhile');
  await sleep(50);
  t.false(b.job.started, 'work for the stalled disk waits, without starting');
  a.job.finish('a');
  t.is(await first, 'a');
  await until(() => b.job.started);
  b.job.finish('b');
  t.is(await second, 'b');
  t.deepEqual(work.stalledDisks, []);
});

test('while nothing is stalled, jobs for one disk run at the same time', async (t) => {
  const work = new DeviceWork({ stallMs: 10_000, timeoutMs: 60_000, maxPerUid: 16 }, log);
  const jobs = Array.from({ length: 4 }, () => controlled<number>());
  const results = jobs.map((j, i) => work.run('7:1', 'loop1', 0, j.start, () => undefined).then(() => i));
  t.true(jobs.every((j) => j.job.started), 'all four started before any returned');
  jobs.forEach((j, i) => j.job.finish(i));
  t.deepEqual(await Promise.all(results), [0, 1, 2, 3]);
});

test('the deadline answers TIMEOUT (ETIMEDOUT), the late result is disposed of, and waiting requests time out too', async (t) => {
  const work = new DeviceWork({ stallMs: 10, timeoutMs: 100, maxPerUid: 16 }, log);
  const stuck = controlled<{ fd: number }>();
  const disposed: number[] = [];
  const first = work.run('7:1', 'loop1', 0, stuck.start, (late) => disposed.push(late.fd));
  await until(() => work.stalledDisks.includes('loop1'));
  const waiting = controlled<{ fd: number }>();
  const second = work.run('7:1', 'loop1', 0, waiting.start, () => undefined);
  for (const answer of [await first.catch((e: unknown) => e), await second.catch((e: unknown) => e)]) {
    t.true(answer instanceof BrokerError);
    t.is((answer as BrokerError).code, ErrorCode.ERROR_CODE_TIMEOUT);
    t.is((answer as BrokerError).osErrno, constants.errno.ETIMEDOUT);
  }
  t.false(waiting.job.started, 'the waiting request never started a job');
  stuck.job.finish({ fd: 42 });
  await until(() => disposed.length === 1);
  t.deepEqual(disposed, [42], 'what the abandoned job returned is disposed of');
});

test('a uid at its bound waits (another uid does not); its closes never wait for the bound', async (t) => {
  const work = new DeviceWork({ stallMs: 10_000, timeoutMs: 60_000, maxPerUid: 2 }, log);
  const held = [controlled<number>(), controlled<number>()];
  const runs = held.map((h) => work.run('7:1', 'loop1', 1000, h.start, () => undefined));
  const third = controlled<number>();
  const queued = work.run('7:2', 'loop2', 1000, third.start, () => undefined);
  t.false(third.job.started, 'the third job of uid 1000 waits');
  t.is(await work.run('7:2', 'loop2', 1001, async () => 7, () => undefined), 7, 'uid 1001 is not held up');
  // A close of uid 1000 goes at once (closeOffLoop of a bad fd: it settles, never rejects).
  await work.close('7:2', 'loop2', 1000, 2 ** 30);
  t.pass('the close of a uid at its bound ran');
  held[0]!.job.finish(1);
  await runs[0];
  await until(() => third.job.started);
  third.job.finish(3);
  held[1]!.job.finish(2);
  t.deepEqual(await Promise.all([runs[1], queued]), [2, 3]);
});

test('a close of a stalled disk waits for it to answer; shutdown answers what waits', async (t) => {
  const work = new DeviceWork({ stallMs: 10, timeoutMs: 60_000, maxPerUid: 16 }, log);
  const stuck = controlled<number>();
  const first = work.run('7:1', 'loop1', 0, stuck.start, () => undefined);
  await until(() => work.stalledDisks.includes('loop1'));
  let closed = false;
  const close = work.close('7:1', 'loop1', 0, 2 ** 30).then(() => (closed = true));
  const waiting = work.run('7:1', 'loop1', 0, async () => 1, () => undefined);
  await sleep(30);
  t.false(closed, 'the close waits while the disk is stalled');
  work.shutdown();
  const answers = await Promise.all([first.catch((e: unknown) => e), waiting.catch((e: unknown) => e)]);
  t.true(answers.every((a) => a instanceof BrokerError && a.code === ErrorCode.ERROR_CODE_TIMEOUT), 'shutdown answers them TIMEOUT');
  stuck.job.finish(0);
  await close;
  t.true(closed, 'the close ran once the disk answered');
});
