/**
 * The addon's job pool (openDevice, probeFd, closeAsync): many jobs at once, a job blocked
 * in open does not hold up the others, a pending job keeps the process alive and a settled
 * one does not, and a worker thread torn down with jobs in flight neither crashes nor leaks
 * the fd a job opened. A FIFO stands in for a hung device: open(O_RDONLY) of a FIFO blocks
 * until a writer opens it, deterministically and without root.
 */
import test, { type ExecutionContext } from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, constants, openSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { native } from '../native/index.js';
import { tempDir } from '../testkit/cleanup.js';

const addonPath = fileURLToPath(new URL('../../build/Release/diskseqd.node', import.meta.url));

/** A FIFO in a temporary directory (mkfifo(1): Node has no mkfifo). */
function makeFifo(t: ExecutionContext): string {
  const path = join(tempDir(t), 'fifo');
  const result = spawnSync('mkfifo', [path]);
  if (result.status !== 0) throw new Error(`mkfifo failed: ${result.stderr}`);
  return path;
}

/**
 * Opens the FIFO for writing once a reader is in open(): O_NONBLOCK fails with ENXIO while
 * there is none, so this retries (the reader is a job that may not have started yet).
 * Gives up with null once `gone()` says the reader can no longer come.
 */
async function openWriter(fifo: string, gone: () => boolean = () => false): Promise<number | null> {
  while (!gone()) {
    try {
      return openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENXIO') throw error;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
  return null;
}

/** Whether some process has the FIFO open for reading (a non-blocking writer open succeeds). */
function hasReader(fifo: string): boolean {
  try {
    closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENXIO') return false;
    throw error;
  }
}

// Serial: it counts this process's fds, which concurrent tests would change.
/** A node -e child with ADDON and FIFO set; `seen(text)` waits for its output or its exit. */
function runChild(t: ExecutionContext, script: string, fifo: string) {
  const child = spawn(process.execPath, ['-e', script], {
    env: { ...process.env, ADDON: addonPath, FIFO: fifo },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => child.kill('SIGKILL'));
  const out = { stdout: '', stderr: '', gone: false };
  child.stderr.on('data', (chunk: Buffer) => (out.stderr += chunk.toString()));
  child.stdout.on('data', (chunk: Buffer) => (out.stdout += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  void exited.then(() => (out.gone = true));
  const seen = (text: string): Promise<unknown> =>
    Promise.race([
      exited,
      new Promise<void>((resolve) => {
        const check = (): void => {
          if (out.stdout.includes(text)) resolve();
        };
        check();
        child.stdout.on('data', check);
      }),
    ]);
  return { out, exited, seen };
}

test.serial('hundreds of concurrent jobs all settle, each fd exactly once', async (t) => {
  const file = join(tempDir(t), 'file');
  writeFileSync(file, 'x');
  const before = readdirSync('/proc/self/fd').length;
  const opened = await Promise.all(Array.from({ length: 300 }, () => native.openDevice(file, constants.O_RDONLY)));
  const fds = opened.map((o) => o.fd);
  t.is(new Set(fds).size, fds.length);
  const probes = await Promise.all(fds.map((fd) => native.probeFd(fd)));
  t.true(probes.every((p) => (p.mode & native.constants.S_IFMT) === constants.S_IFREG));
  await Promise.all(fds.map((fd) => native.closeAsync(fd)));
  t.is(readdirSync('/proc/self/fd').length, before);
});

test('a job blocked in open does not hold up the others', async (t) => {
  const fifo = makeFifo(t);
  const blocked = native.openDevice(fifo, constants.O_RDONLY);
  const file = join(tempDir(t), 'file');
  writeFileSync(file, 'x');
  // Settles while the FIFO open is still blocked in its thread.
  const { fd } = await native.openDevice(file, constants.O_RDONLY);
  t.is((await native.probeFd(fd)).mode & native.constants.S_IFMT, constants.S_IFREG);
  await native.closeAsync(fd);
  const writer = (await openWriter(fifo))!;
  t.teardown(() => closeSync(writer));
  const reader = await blocked;
  t.is(reader.probe.mode & native.constants.S_IFMT, constants.S_IFIFO);
  await native.closeAsync(reader.fd);
  t.false(hasReader(fifo));
});

test('a settled job leaves the process free to exit; a pending one keeps it alive', async (t) => {
  const fifo = makeFifo(t);
  const script = `
const n = require(process.env.ADDON);
n.probeFd(0).then(() => console.log('probed'));
n.openDevice(process.env.FIFO, 0).then((o) => { n.close(o.fd); console.log('opened'); });
console.log('submitted');
`;
  const { out, exited, seen } = runChild(t, script, fifo);
  await seen('submitted');
  // Had the pending open not kept the loop alive, the child would be past its last turn
  // now, and its open's promise would never settle ('opened' missing below).
  const writer = await openWriter(fifo, () => out.gone);
  t.teardown(() => writer !== null && closeSync(writer));
  t.not(writer, null, `the child exited with its open pending: ${out.stdout}`);
  // Exiting at all shows that settled jobs do not keep the loop alive.
  t.is(await exited, 0, out.stderr);
  t.deepEqual(out.stdout.trim().split('\n').sort(), ['opened', 'probed', 'submitted']);
});

test('a worker thread torn down with a job in open exits cleanly and the job closes its fd', async (t) => {
  const fifo = makeFifo(t);
  // The worker's job blocks in open(fifo); once terminate() has begun (no JS can run in
  // the worker any more), the writer below releases it. The fd the job then holds belongs
  // to nobody: the pool must close it, before terminate() resolves. The child checks that
  // itself (at its exit every fd would be closed anyway): a non-blocking writer open fails
  // with ENXIO only when no reader is left.
  const script = `
const fs = require('fs');
const { Worker } = require('worker_threads');
const worker = new Worker(\`
const n = require(process.env.ADDON);
n.openDevice(process.env.FIFO, 0).then(() => console.log('resolved (unexpected)'));
n.probeFd(0).then(() => require('worker_threads').parentPort.postMessage('running'));
\`, { eval: true, env: process.env });
worker.on('message', async () => {
  const terminated = worker.terminate();
  console.log('terminating');
  await terminated;
  try {
    fs.closeSync(fs.openSync(process.env.FIFO, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK));
    console.log('leaked');
  } catch (error) {
    console.log(error.code === 'ENXIO' ? 'closed' : error.code);
  }
});
`;
  const { out, exited, seen } = runChild(t, script, fifo);
  await seen('terminating');
  const writer = await openWriter(fifo, () => out.gone);
  t.teardown(() => writer !== null && closeSync(writer));
  t.is(await exited, 0, out.stderr);
  t.deepEqual(out.stdout.trim().split('\n'), ['terminating', 'closed']);
});
