// A log reader that stops reading never stops the daemon (docs/design.md, "Logging"):
// lines wait in a bounded backlog, lines past the bound are dropped and counted, one
// "N log lines dropped" line stands where the gap is once the reader is back, audit lines
// and warnings keep the whole backlog while other lines get half; and a real daemon whose
// stdout is a FIFO nobody reads goes on serving opens, every audit line written in the end.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, constants, openSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { native } from '../native/index.js';
import { FdSink } from '../src/log-sink.js';
import { needsRoot } from './helpers/ci.js';
import { onExit, sleep, tempDir, within } from '../testkit/cleanup.js';
import { createLoop } from '../testkit/loop.js';
import { daemonArgv } from '../testkit/repo.js';
import { WireClient } from '../testkit/wire-client.js';

/** Waits until process `pid` is stopped (state T in /proc/PID/stat). */
async function stopped(pid: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (/^\d+ \(.*\) [tT]/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))) return;
    await sleep(10);
  }
  throw new Error(`process ${pid} did not stop`);
}

test('FdSink on a pipe whose reader is stopped: never blocks, keeps a bounded backlog, reports the gap once the reader is back', async (t) => {
  // cat copies the pipe we write to a pipe we read; SIGSTOP makes it a reader that stalls.
  const cat = spawn('cat', [], { stdio: ['pipe', 'pipe', 'inherit'] });
  const killCat = onExit(() => cat.kill('SIGKILL'));
  t.teardown(killCat);
  const fd = (cat.stdin as unknown as { _handle: { fd: number } })._handle.fd;
  cat.kill('SIGSTOP');
  await stopped(cat.pid!);
  const limit = 128 * 1024;
  const sink = new FdSink(fd, limit, (n) => `dropped ${n}\n`);
  t.teardown(() => sink.close());

  const line = (i: number): string => `line ${String(i).padStart(6, '0')} ${'x'.repeat(185)}\n`; // 200 bytes
  const started = Date.now();
  let i = 0;
  for (; i < 2000; i++) sink.write(line(i), true); // 400 KB: far more than pipe + backlog
  t.true(Date.now() - started < 5000, 'writes return while nobody reads');
  t.true(sink.dropped > 0, 'lines past the bound are dropped');
  t.true(sink.backlogBytes <= limit, `backlog ${sink.backlogBytes} within ${limit}`);
  const droppedImportant = sink.dropped;
  // The backlog is above half full: an ordinary line is dropped, as is an important one now.
  sink.write('ordinary\n', false);
  t.is(sink.dropped, droppedImportant + 1);

  // The reader comes back: the backlog drains on the poller, then the gap report, then new lines.
  let output = '';
  cat.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  cat.kill('SIGCONT');
  await within((async () => {
    while (sink.backlogBytes > 0) await sleep(10);
  })(), 20_000, 'the backlog to drain');
  sink.write('after recovery\n', true);
  await within((async () => {
    while (!output.includes('after recovery\n')) await sleep(10);
  })(), 20_000, 'the line after recovery');

  const lines = output.split('\n').slice(0, -1);
  const numbered = lines.filter((l) => l.startsWith('line ')).map((l) => Number(l.slice(5, 11)));
  // Every line kept is whole and in order, the first ones without a gap...
  t.true(lines.filter((l) => l.startsWith('line ')).every((l) => l.length === 197));
  t.deepEqual(numbered, numbered.map((_, k) => k), 'the lines kept are the first ones, in order');
  // ...then exactly one report where the gap is, counting what is missing, then the new line.
  t.deepEqual(lines.slice(numbered.length), [`dropped ${2000 - numbered.length + 1}`, 'after recovery']);
  t.is(sink.dropped, 2000 - numbered.length + 1);
});

test('FdSink: an ordinary line is dropped past half the backlog while audit lines and warnings still fit', async (t) => {
  const cat = spawn('cat', [], { stdio: ['pipe', 'ignore', 'inherit'] });
  const killCat = onExit(() => cat.kill('SIGKILL'));
  t.teardown(killCat);
  const fd = (cat.stdin as unknown as { _handle: { fd: number } })._handle.fd;
  cat.kill('SIGSTOP');
  await stopped(cat.pid!);
  const sink = new FdSink(fd, 64 * 1024);
  t.teardown(() => sink.close());
  const filler = `${'y'.repeat(1023)}\n`;
  // Fill the pipe itself, then 40 KiB of backlog (more than half of 64 KiB).
  let guard = 0;
  while (sink.backlogBytes < 40 * 1024 && guard++ < 10_000) sink.write(filler, true);
  t.is(sink.dropped, 0);
  sink.write(filler, false);
  t.is(sink.dropped, 1, 'an ordinary line does not get the second half');
  sink.write(filler, true);
  t.is(sink.dropped, 1, 'an important line does');
});

test('a daemon whose stdout is a FIFO nobody reads still serves opens, and writes every audit line once read', async (t) => {
  if (!needsRoot(t)) return;
  const dir = tempDir(t, 'diskseqd-log-fifo-');
  const fifo = join(dir, 'stdout');
  const made = spawnSync('mkfifo', [fifo]);
  t.is(made.status, 0, made.stderr?.toString());
  const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  t.teardown(() => closeSync(reader));
  const writer = openSync(fifo, constants.O_WRONLY);
  const socketPath = join(dir, 'd.sock');
  const [node, ...argv] = daemonArgv('--socket', socketPath, '--log-level', 'info');
  const daemon = spawn(node!, argv, { stdio: ['ignore', writer, 'pipe'] });
  closeSync(writer);
  const killDaemon = onExit(() => daemon.kill('SIGKILL'));
  t.teardown(killDaemon);
  let stderr = '';
  daemon.stderr!.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  const exited = new Promise<number | null>((resolve) => daemon.once('exit', (code) => resolve(code)));
  const loop = createLoop({}, t);

  await within((async () => {
    for (;;) {
      try {
        native.close(native.connectSeqpacket(socketPath, false));
        return;
      } catch {
        await sleep(20);
      }
    }
  })(), 20_000, `the daemon to listen (stderr: ${stderr})`);

  // ~3000 audit lines of ~400 bytes: some 20 times what a pipe holds, well within the backlog.
  const opens = 3000;
  const client = WireClient.connect(socketPath);
  t.teardown(() => client.close());
  await within((async () => {
    for (let i = 0; i < opens; i++) {
      const outcome = await client.open({ diskseq: loop.diskseq });
      if (!outcome.ok) throw new Error(`open ${i} failed: ${outcome.code} ${outcome.message}`);
      native.close(outcome.fd);
    }
  })(), 60_000, `${opens} opens with nobody reading the daemon's stdout`);
  client.close();

  // Now read: the backlog drains as the FIFO empties; SIGTERM flushes the rest at exit.
  let text = '';
  const buffer = Buffer.alloc(1 << 16);
  const readAvailable = (): boolean => {
    for (;;) {
      let n: number;
      try {
        n = readSync(reader, buffer, 0, buffer.length, null);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EAGAIN') return false;
        throw error;
      }
      if (n === 0) return true; // every writer closed: end of file
      text += buffer.toString('utf8', 0, n);
    }
  };
  readAvailable();
  daemon.kill('SIGTERM');
  await within((async () => {
    while (!readAvailable()) await sleep(10);
  })(), 30_000, 'the daemon\'s log to end');
  t.is(await exited, 0, stderr);

  const records = text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { msg: string; op?: string });
  t.is(records.filter((r) => r.msg === 'audit' && r.op === 'open').length, opens, 'every audit line is there');
  t.false(records.some((r) => / log lines dropped/.test(r.msg)), 'nothing dropped');
  t.is(records.at(-1)?.msg, 'stopped', 'the last line is written before exit');
});
