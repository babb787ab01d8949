// QEMU takes the verified fd from the TypeScript client (docs/qemu.md, the TypeScript
// snippets): spawned with the fd at 3 and `-add-fd fd=3`, or handed it later over QMP
// `add-fd` with sendFd(); QEMU reads the device through host_device on /dev/fdset/N. A
// stale diskseq is refused before QEMU sees anything. No guest runs (-M none -S).
import test, { type ExecutionContext } from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { connect, DiskseqError, sendFd } from '../client/index.js';
import { native } from '../native/index.js';
import { DaemonProcess } from '../testkit/daemon.js';
import { needsRoot } from './helpers/ci.js';
import { createLoop, reattachOrReplace } from '../testkit/loop.js';

const QEMU = 'qemu-system-x86_64';

function qemuAvailable(t: ExecutionContext): boolean {
  if (!needsRoot(t)) return false;
  if (spawnSync(QEMU, ['--version']).status === 0) return true;
  const reason = `${QEMU} is not installed (Debian: qemu-system-x86)`;
  if (process.env.CI === 'true' || process.env.CI === '1') t.fail(`CI is set and ${reason}`);
  else {
    console.warn(`\n*** SKIPPED (not a pass): ${t.title}: ${reason} ***\n`);
    t.pass();
  }
  return false;
}

/** How long any one QMP reply may take before the test fails rather than hangs. */
const QMP_REPLY_TIMEOUT_MS = 20_000;

/** QMP over a unix stream socket: one JSON object per line, events skipped. */
class Qmp {
  private readonly replies: Record<string, unknown>[] = [];
  private readonly waiters: ((reply: Record<string, unknown>) => void)[] = [];

  constructor(readonly socket: Socket) {
    createInterface({ input: socket }).on('line', (line) => {
      const message = JSON.parse(line) as Record<string, unknown>;
      if ('event' in message) return;
      const waiter = this.waiters.shift();
      if (waiter) waiter(message);
      else this.replies.push(message);
    });
  }

  /** The greeting, then qmp_capabilities: the session is in command mode after this. */
  async negotiate(): Promise<void> {
    await this.reply();
    await this.execute('qmp_capabilities');
  }

  /** The next reply; rejects after QMP_REPLY_TIMEOUT_MS. */
  reply(what = 'a QMP reply'): Promise<Record<string, unknown>> {
    const ready = this.replies.shift();
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`QEMU sent no reply to ${what} within ${QMP_REPLY_TIMEOUT_MS} ms`));
      }, QMP_REPLY_TIMEOUT_MS);
      const waiter = (reply: Record<string, unknown>): void => {
        clearTimeout(timer);
        resolve(reply);
      };
      this.waiters.push(waiter);
    });
  }

  /** Runs a command; with `fd`, the fd goes first, in SCM_RIGHTS (what add-fd takes). */
  execute(command: string, args: Record<string, unknown> = {}, fd?: number): Promise<Record<string, unknown>> {
    if (fd !== undefined) sendFd(this.socket, fd);
    this.socket.write(`${JSON.stringify({ execute: command, arguments: args })}\n`);
    return this.reply(command);
  }
}

interface Qemu {
  child: ChildProcess;
  qmp: Qmp;
  /** Quits QEMU; resolves with its standard output (qemu-io prints the bytes it read there). */
  quit(): Promise<string>;
}

/**
 * Starts QEMU with its QMP monitor as a *client* of a socket this test listens on
 * (`server=off`): QEMU connects once at startup and has nothing to accept. QEMU 7.2 as the
 * listener (`server=on,wait=off`) was once seen blocked in a second, blocking accept() with
 * the test's first command unread (docs/qemu.md); the Python tests avoid it the same way.
 */
async function startQemu(t: ExecutionContext, extraArgs: string[], fd?: number): Promise<Qemu> {
  const dir = mkdtempSync(join(tmpdir(), 'diskseqd-qemu-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const qmpPath = join(dir, 'qmp.sock');
  const server = createServer();
  t.teardown(() => server.close());
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(qmpPath, resolve));
  const connected = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const args = ['-M', 'none', '-nographic', '-nodefaults', '-S', '-qmp', `unix:${qmpPath},server=off`, ...extraArgs];
  // The fd becomes the child's fd 3: QEMU's -add-fd fd=3 adopts it.
  const child = spawn(QEMU, args, { stdio: ['ignore', 'pipe', 'pipe', ...(fd === undefined ? [] : [fd])] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const socket = await new Promise<Socket>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`QEMU did not connect to QMP within ${QMP_REPLY_TIMEOUT_MS} ms: ${output}`)), QMP_REPLY_TIMEOUT_MS);
    const early = (): void => reject(new Error(`QEMU exited before connecting to QMP: ${output}`));
    child.once('exit', early);
    void connected.then((connection) => {
      clearTimeout(timer);
      child.off('exit', early);
      resolve(connection);
    });
  });
  server.close(); // one monitor connection; nothing else may connect
  t.teardown(() => socket.destroy());
  const qmp = new Qmp(socket);
  await qmp.negotiate();
  return {
    child, qmp,
    async quit() {
      await qmp.execute('quit');
      socket.destroy();
      await exited;
      return output;
    },
  };
}

/** The bytes qemu-io's `read -v` printed (hexdump lines `OFFSET:  xx xx ...`), from `offset`. */
function bytesRead(output: string, offset: number, length: number): Buffer {
  const lines = new Map<number, number[]>();
  for (const match of output.matchAll(/^([0-9a-f]{8}):((?:\s+[0-9a-f]{2}){1,16})/gm)) {
    lines.set(parseInt(match[1]!, 16), match[2]!.trim().split(/\s+/).map((b) => parseInt(b, 16)));
  }
  const bytes: number[] = [];
  for (let at = offset; at < offset + length; at += 16) bytes.push(...(lines.get(at) ?? []));
  return Buffer.from(bytes.slice(0, length));
}

test.serial('QEMU spawned with the verified fd at 3 (-add-fd) reads that partition', async (t) => {
  if (!qemuAvailable(t)) return;
  const loop = createLoop({ partitionsMiB: [2, 2], partscan: true }, t);
  const daemon = await DaemonProcess.start({}, t);
  const client = await connect({ socketPath: daemon.socketPath });
  t.teardown(() => client.close());
  const { fd } = await client.open({ diskseq: loop.diskseq, partition: 2 });
  let qemu: Qemu;
  try {
    qemu = await startQemu(t, ['-add-fd', `fd=3,set=1,opaque=diskseq:${loop.diskseq}p2`,
      '-blockdev', 'driver=host_device,node-name=disk0,filename=/dev/fdset/1,read-only=on'], fd);
  } finally {
    native.close(fd); // QEMU has its own copy
  }
  const fdsets = (await qemu.qmp.execute('query-fdsets')).return as { 'fdset-id': number; fds: { opaque?: string }[] }[];
  t.deepEqual(fdsets.map((s) => [s['fdset-id'], s.fds.map((f) => f.opaque)]), [[1, [`diskseq:${loop.diskseq}p2`]]]);
  t.deepEqual(await qemu.qmp.execute('human-monitor-command', { 'command-line': 'qemu-io disk0 "read -v 0 32"' }), { return: '' });
  const output = await qemu.quit();
  t.is(bytesRead(output, 0, 32).toString('latin1'), loop.image.partitions[1]!.marker, output);
});

test.serial('QMP add-fd with sendFd(): QEMU reads the disk; a stale diskseq never reaches it', async (t) => {
  if (!qemuAvailable(t)) return;
  const loop = createLoop({}, t);
  const stale = createLoop({}, t);
  const gone = stale.diskseq;
  reattachOrReplace(t, stale, {}); // the same loop device now holds another image
  const daemon = await DaemonProcess.start({}, t);
  const client = await connect({ socketPath: daemon.socketPath });
  t.teardown(() => client.close());
  const qemu = await startQemu(t, []);

  const refused = await t.throwsAsync(client.open({ diskseq: gone }), { instanceOf: DiskseqError });
  t.is(refused!.code, 'NOT_FOUND');
  t.deepEqual(await qemu.qmp.execute('query-fdsets'), { return: [] }, 'QEMU got no fd');

  const { fd } = await client.open({ diskseq: loop.diskseq });
  try {
    const added = await qemu.qmp.execute('add-fd', { 'fdset-id': 1, opaque: `diskseq:${loop.diskseq}` }, fd);
    t.is((added.return as { 'fdset-id': number })['fdset-id'], 1, JSON.stringify(added));
  } finally {
    native.close(fd);
  }
  const node = await qemu.qmp.execute('blockdev-add', { driver: 'host_device', 'node-name': 'disk0', filename: '/dev/fdset/1', 'read-only': true });
  t.deepEqual(node, { return: {} });
  await qemu.qmp.execute('human-monitor-command', { 'command-line': 'qemu-io disk0 "read -v 0 32"' });
  const output = await qemu.quit();
  t.is(bytesRead(output, 0, 32).toString('latin1'), loop.image.diskMarker, output);
});
