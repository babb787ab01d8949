/**
 * Notifier against a real AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET.
 * (The daemon-level order — READY=1 only once serving — is in systemd-daemon.test.ts.)
 */
import test from 'ava';
import { join } from 'node:path';
import { Notifier, type NotifyLog } from '../src/systemd/notify.js';
import { REPO_ROOT } from '../testkit/repo.js';
import { sleep, tempDir, within } from '../testkit/cleanup.js';
import { NotifyReceiver, spawnTracked } from './helpers/systemd.js';

function recordingLog(): NotifyLog & { lines: string[] } {
  const lines: string[] = [];
  const record = (a: unknown, b?: unknown): void => { lines.push(typeof a === 'string' ? a : String(b)); };
  return { lines, warn: record } as NotifyLog & { lines: string[] };
}

test('READY=1 with STATUS, STATUS=, STOPPING=1 arrive in order, one line each', async (t) => {
  const receiver = new NotifyReceiver(t);
  const notifier = new Notifier({ log: recordingLog(), env: { NOTIFY_SOCKET: receiver.path } });
  notifier.ready('3 devices');
  notifier.status('3 devices, 1 connection\nsecond line');
  notifier.stopping();
  await receiver.waitFor((m) => m.startsWith('STOPPING=1'));
  t.deepEqual(receiver.messages, [
    'READY=1\nSTATUS=3 devices',
    'STATUS=3 devices, 1 connection second line',
    'STOPPING=1',
  ]);
});

test('after STOPPING=1 no READY=1, and neither watchdog nor status timer starts', async (t) => {
  const receiver = new NotifyReceiver(t);
  const notifier = new Notifier({
    log: recordingLog(), env: { NOTIFY_SOCKET: receiver.path, WATCHDOG_USEC: '40000', WATCHDOG_PID: String(process.pid) },
  });
  t.teardown(() => notifier.close());
  notifier.stopping();
  notifier.ready('late');
  t.false(notifier.startWatchdog());
  notifier.trackStatus(() => 'late', 10);
  await receiver.waitFor((m) => m === 'STOPPING=1');
  await sleep(200); // ten watchdog intervals, twenty status intervals
  t.deepEqual(receiver.messages, ['STOPPING=1']);
});

test('WATCHDOG=1 is sent at half of WATCHDOG_USEC and stops with STOPPING=1', async (t) => {
  const receiver = new NotifyReceiver(t);
  const notifier = new Notifier({
    log: recordingLog(), env: { NOTIFY_SOCKET: receiver.path, WATCHDOG_USEC: '40000', WATCHDOG_PID: String(process.pid) },
  });
  t.is(notifier.watchdogIntervalMs, 20);
  t.true(notifier.startWatchdog());
  const first = await receiver.waitFor((m) => m === 'WATCHDOG=1');
  await receiver.waitFor((m) => m === 'WATCHDOG=1', 10_000, first + 1);
  notifier.stopping();
  const stop = await receiver.waitFor((m) => m === 'STOPPING=1');
  await sleep(200); // ten intervals: a timer left running would have sent more
  t.deepEqual(receiver.messages.slice(stop + 1), []);
});

test('no watchdog when WATCHDOG_PID names another process or WATCHDOG_USEC is unset', (t) => {
  const path = join(tempDir(t), 'unused.sock');
  const other = new Notifier({ log: recordingLog(), env: { NOTIFY_SOCKET: path, WATCHDOG_USEC: '1000000', WATCHDOG_PID: '1' } });
  t.is(other.watchdogIntervalMs, null);
  t.false(other.startWatchdog());
  const unset = new Notifier({ log: recordingLog(), env: { NOTIFY_SOCKET: path } });
  t.false(unset.startWatchdog());
});

test('trackStatus sends STATUS= only when the summary changes', async (t) => {
  const receiver = new NotifyReceiver(t);
  const notifier = new Notifier({ log: recordingLog(), env: { NOTIFY_SOCKET: receiver.path } });
  t.teardown(() => notifier.close());
  let summary = 'a';
  notifier.trackStatus(() => summary, 10);
  await receiver.waitFor((m) => m === 'STATUS=a');
  await sleep(100);
  summary = 'b';
  await receiver.waitFor((m) => m === 'STATUS=b');
  notifier.close();
  t.deepEqual(receiver.messages, ['STATUS=a', 'STATUS=b']);
});

test('an abstract NOTIFY_SOCKET is reported once and otherwise ignored', (t) => {
  const log = recordingLog();
  const notifier = new Notifier({ log, env: { NOTIFY_SOCKET: '@/org/freedesktop/systemd1/notify/1', WATCHDOG_USEC: '1000000' } });
  t.is(notifier.socketPath, null);
  notifier.ready();
  notifier.status('x');
  t.false(notifier.startWatchdog());
  notifier.stopping();
  t.is(log.lines.length, 1);
  t.regex(log.lines[0], /abstract socket/);
});

test('a failing send is logged once and never throws', (t) => {
  const log = recordingLog();
  const notifier = new Notifier({ log, env: { NOTIFY_SOCKET: join(tempDir(t), 'nobody-listens.sock') } });
  t.notThrows(() => {
    notifier.ready();
    notifier.status('x');
    notifier.stopping();
  });
  t.is(log.lines.length, 1);
  t.regex(log.lines[0], /sd_notify failed/);
});

test('watchdog and status timers do not keep the process alive', async (t) => {
  const receiver = new NotifyReceiver(t);
  const script = `
    import { Notifier } from ${JSON.stringify(join(REPO_ROOT, 'dist/src/systemd/notify.js'))};
    const n = new Notifier({ log: console });
    n.ready();
    n.startWatchdog();
    n.trackStatus(() => 'x', 1000);
    console.log('started');`;
  const env: NodeJS.ProcessEnv = { ...process.env, NOTIFY_SOCKET: receiver.path, WATCHDOG_USEC: '2000000' };
  delete env.WATCHDOG_PID;
  const run = spawnTracked(t, process.execPath, ['--input-type=module', '-e', script], env);
  // The child exits by itself once its script is done; a ref'd timer would keep it alive forever.
  const result = await within(run.exited, 30_000, 'child with watchdog timers');
  t.is(result.code, 0, result.stderr);
  t.is(result.stdout.trim(), 'started');
  await receiver.waitFor((m) => m === 'READY=1');
});
