// Where and whether the daemon serves Varlink (docs/storage-provider.md, "The socket"):
// started by hand on --varlink-socket (its directory made, a stale socket file replaced,
// removed at exit), never on a path a live process serves (then SEQPACKET only), never
// over a file that is no socket, not at all with --no-varlink; socket-activated, on the
// socket systemd passed and nowhere else. The connection limits count both sockets.
// Every path here is private to the test.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { needsRoot } from './helpers/ci.js';
import { PROVIDER } from './helpers/varlink.js';
import { native } from '../native/index.js';
import { sleep, tempDir, within } from '../testkit/cleanup.js';
import { DaemonProcess } from '../testkit/daemon.js';
import { createLoop } from '../testkit/loop.js';
import { daemonArgv } from '../testkit/repo.js';
import { VarlinkClient } from '../testkit/varlink-client.js';
import { WireClient } from '../testkit/wire-client.js';
import { spawnTracked } from './helpers/systemd.js';
import { needsTool } from './helpers/ci.js';

test('started by hand: the directory is made, the socket is 0666, and removed at exit', async (t) => {
  if (!needsRoot(t)) return;
  const daemon = await DaemonProcess.start({ varlink: true }, t);
  const path = daemon.varlinkPath!;
  t.true(lstatSync(path).isSocket());
  t.is(statSync(path).mode & 0o777, 0o666);
  t.like(daemon.logs.find((l) => l.msg === 'serving'), { varlink: path });
  const client = VarlinkClient.connect(path);
  t.like((await client.call1('org.varlink.service.GetInfo')).parameters, { vendor: 'diskseqd' });
  client.close();
  await daemon.stop();
  t.false(existsSync(path), 'unlinked at exit');
});

test('a path a live process serves is left alone: the second daemon serves SEQPACKET only; a stale socket file is replaced', async (t) => {
  if (!needsRoot(t)) return;
  const first = await DaemonProcess.start({ varlink: true }, t);
  const path = first.varlinkPath!;
  const second = await DaemonProcess.start({ extraArgs: ['--varlink-socket', path] }, t);
  const refusal = second.logs.find((l) => l.msg === 'not serving Varlink');
  t.regex(String(refusal?.reason), /a live process already serves/);
  t.like(second.logs.find((l) => l.msg === 'serving'), { varlink: null });
  const wire = WireClient.connect(second.socketPath);
  t.teardown(() => wire.close());
  t.truthy(await wire.hello(), 'the second daemon serves its SEQPACKET socket');
  const client = VarlinkClient.connect(path);
  t.teardown(() => client.close());
  await client.call1('org.varlink.service.GetInfo');
  await first.waitForCount('audit', 1);
  t.is(first.audits().filter((a) => a.via === 'varlink').length, 1, 'the path still belongs to the first daemon');
  await second.stop();
  t.true(lstatSync(path).isSocket(), 'the second daemon did not remove it at exit');
  client.close();

  // A socket file nobody serves any more: the next daemon takes the path.
  await first.stop();
  const dir = tempDir(t);
  const stale = join(dir, 'stale');
  const fd = native.listenStream(stale, 1);
  native.close(fd); // the file stays, nobody listens
  const third = await DaemonProcess.start({ extraArgs: ['--varlink-socket', stale] }, t);
  t.like(third.logs.find((l) => l.msg === 'serving'), { varlink: stale });
  const again = VarlinkClient.connect(stale);
  t.teardown(() => again.close());
  t.like((await again.call1('org.varlink.service.GetInfo')).parameters, { vendor: 'diskseqd' });
});

test('a file that is no socket is never replaced; --no-varlink makes no socket', async (t) => {
  if (!needsRoot(t)) return;
  const dir = tempDir(t);
  const file = join(dir, 'diskseq');
  writeFileSync(file, 'not a socket');
  const daemon = await DaemonProcess.start({ extraArgs: ['--varlink-socket', file] }, t);
  t.regex(String(daemon.logs.find((l) => l.msg === 'not serving Varlink')?.reason), /exists and is not a socket/);
  t.is(readFileSync(file, 'utf8'), 'not a socket');
  const off = await DaemonProcess.start({}, t); // the runner passes --no-varlink
  t.like(off.logs.find((l) => l.msg === 'serving'), { varlink: null });
  const usage = spawnSync(daemonArgv('--no-varlink', '--varlink-socket', file)[0]!, daemonArgv('--no-varlink', '--varlink-socket', file).slice(1), { encoding: 'utf8' });
  t.is(usage.status, 2);
  t.regex(usage.stderr, /--no-varlink and --varlink-socket exclude each other/);
});

test('one count of connections over both sockets: past --max-connections either socket refuses; per uid too', async (t) => {
  if (!needsRoot(t)) return;
  const daemon = await DaemonProcess.start({ varlink: true, worldAccessible: true, extraArgs: ['--max-connections', '3', '--max-connections-per-uid', '2'] }, t);
  const path = daemon.varlinkPath!;
  const wires = [WireClient.connect(daemon.socketPath), WireClient.connect(daemon.socketPath)];
  t.teardown(() => { for (const w of wires) w.close(); });
  for (const w of wires) await w.hello();
  const held = VarlinkClient.connect(path);
  t.teardown(() => held.close());
  await held.call1('org.varlink.service.GetInfo');
  // Three connections held (two SEQPACKET, one Varlink): the fourth, on either, is refused.
  // The refusal comes unasked, right at accept: wait for it without sending (a call could
  // cross the close and fail with EPIPE before the refusal is read).
  const refused = VarlinkClient.connect(path);
  t.teardown(() => refused.close());
  const [[reply]] = await within(refused.expectReplies(1), 5000, 'the refusal');
  t.is(reply!.error, 'org.diskseqd.ResourceExhausted', JSON.stringify(reply));
  t.like(reply!.parameters, { code: 'RESOURCE_EXHAUSTED', message: 'too many connections (limit 3)' });
  await within(refused.whenClosed(), 5000, 'the refused connection closed');
  const wire = WireClient.connect(daemon.socketPath);
  t.teardown(() => wire.close());
  await t.throwsAsync(wire.hello(), undefined, 'the fourth SEQPACKET connection is refused too');
  for (const w of wires) w.close();
  held.close();
  wire.close();

  // Per uid: uid 65534 gets two Varlink connections, not three. The holder uses only node:net,
  // so it reads nothing of the checkout.
  await sleep(300); // the closes reach the daemon
  const script = join(daemon.dir, 'holder.mjs');
  writeFileSync(script, HOLDER, { mode: 0o644 });
  const run = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', process.execPath, script, path, '3'], { encoding: 'utf8', timeout: 20_000 });
  t.is(run.status, 0, run.stderr);
  t.deepEqual(JSON.parse(run.stdout), ['served', 'served', 'org.diskseqd.ResourceExhausted']);
});

/**
 * Opens `count` Varlink connections, keeping each, and prints each outcome: a refusal
 * arrives unasked at accept; a connection that got none within 300 ms calls GetInfo.
 */
const HOLDER = `
import { createConnection } from 'node:net';
const [path, count] = [process.argv[2], Number(process.argv[3])];
const sockets = [];
const outcomes = [];
for (let i = 0; i < count; i++) {
  const socket = createConnection(path);
  sockets.push(socket);
  outcomes.push(await new Promise((resolve) => {
    let text = '';
    socket.on('error', () => resolve('error'));
    socket.on('data', (d) => {
      text += d.toString();
      if (text.includes('\\0')) {
        const reply = JSON.parse(text.slice(0, text.indexOf('\\0')));
        resolve(reply.error ?? 'served');
      }
    });
    setTimeout(() => socket.write('{"method":"org.varlink.service.GetInfo"}\\0'), 300);
  }));
}
console.log(JSON.stringify(outcomes));
for (const s of sockets) s.destroy();
`;

test('socket-activated with both sockets (systemd-socket-activate, named): Acquire over the inherited Varlink socket, never unlinked', async (t) => {
  if (!needsRoot(t)) return;
  const tool = needsTool(t, 'systemd-socket-activate');
  if (tool === undefined) return;
  const loop = createLoop({}, t);
  const dir = tempDir(t);
  const seqpacket = join(dir, 'd.sock');
  const varlink = join(dir, 'v.sock');
  const unused = join(dir, 'unused', 'varlink');
  const env = { ...process.env };
  for (const k of ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES', 'NOTIFY_SOCKET']) delete env[k];
  const run = spawnTracked(t, tool, ['--seqpacket', '-l', seqpacket, '--', tool, '-l', varlink, '--fdname=seqpacket:varlink', '--',
    ...daemonArgv('--varlink-socket', unused)], env);
  await waitFor(() => run.stderr().includes('Listening on'));
  const wire = WireClient.connect(seqpacket); // makes both exec
  t.teardown(() => wire.close());
  await wire.hello();
  const client = VarlinkClient.connect(varlink);
  t.teardown(() => client.close());
  const reply = await client.call1(`${PROVIDER}.Acquire`, { name: `${loop.diskseq}`, readOnly: true });
  t.deepEqual(reply.parameters, { fileDescriptorIndex: 0, type: 'blk', readOnly: true });
  t.is(native.probeFdSync(reply.fds[0]!).diskseq, loop.diskseq);
  native.close(reply.fds[0]!);
  t.regex(run.stdout(), new RegExp(`"inherited":true,"varlink":"${varlink.replace(/[/.]/g, '\\$&')}"`));
  t.false(existsSync(unused), '--varlink-socket is not bound when systemd passed the socket');
  client.close();
  wire.close();
  run.child.kill('SIGTERM');
  await within(run.exited, 30_000, 'daemon exit');
  t.true(lstatSync(varlink).isSocket(), 'the inherited socket belongs to systemd');
});

test('socket-activated with the SEQPACKET socket only: no Varlink, --varlink-socket ignored', async (t) => {
  if (!needsRoot(t)) return;
  const tool = needsTool(t, 'systemd-socket-activate');
  if (tool === undefined) return;
  const dir = tempDir(t);
  const seqpacket = join(dir, 'd.sock');
  const unused = join(dir, 'unused', 'varlink');
  const env = { ...process.env };
  for (const k of ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES', 'NOTIFY_SOCKET']) delete env[k];
  const run = spawnTracked(t, tool, ['--seqpacket', '-l', seqpacket, ...daemonArgv('--varlink-socket', unused)], env);
  await waitFor(() => run.stderr().includes('Listening on'));
  const wire = WireClient.connect(seqpacket);
  t.teardown(() => wire.close());
  await wire.hello();
  await waitFor(() => run.stdout().includes('"msg":"serving"'));
  t.regex(run.stdout(), /"inherited":true,"varlink":null/);
  t.false(existsSync(unused));
  wire.close();
  run.child.kill('SIGTERM');
  await within(run.exited, 30_000, 'daemon exit');
});

async function waitFor(condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

