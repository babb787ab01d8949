// Logs under systemd (docs/design.md, "Logging"): when the daemon's stdout is the journal
// stream that JOURNAL_STREAM names, every line starts with its syslog priority, so that
// `journalctl -p warning` shows exactly the warnings and errors; when the variable was
// inherited with another stdout, no line does. Checked on the bytes a stream socket of
// our own receives, and read back from a real systemd-journald (in a journal namespace of
// the test's own, so no other journal is touched) with journalctl.
import test, { type ExecutionContext } from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, fstatSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { native } from '../native/index.js';
import { needsRoot } from './helpers/ci.js';
import { writePolicy } from './helpers/policy-e2e-support.js';
import { onExit, sleep, tempDir, within } from '../testkit/cleanup.js';
import { createLoop } from '../testkit/loop.js';
import { daemonArgv } from '../testkit/repo.js';
import { sendRawPacket, WireClient } from '../testkit/wire-client.js';

const JOURNALD = '/lib/systemd/systemd-journald';
const PRIORITY: Record<string, number> = { fatal: 2, error: 3, warn: 4, info: 6, debug: 7, trace: 7 };

/** `st_dev:st_ino` of a connected socket, as systemd writes JOURNAL_STREAM. */
function streamId(socket: Socket): string {
  const st = fstatSync((socket as unknown as { _handle: { fd: number } })._handle.fd, { bigint: true });
  return `${st.dev}:${st.ino}`;
}

function connected(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(path, () => resolve(socket));
    socket.once('error', reject);
  });
}

/**
 * Runs the daemon with `stdout` as its standard output and JOURNAL_STREAM=`journalStream`,
 * makes it write an audit line (an open), a warning (a protocol violation) and an error
 * (a SIGHUP with a broken policy file), then stops it. Resolves once it exited.
 */
async function logSomething(t: ExecutionContext, stdout: Socket, journalStream: string): Promise<void> {
  const dir = tempDir(t, 'diskseqd-journal-');
  const policy = writePolicy(join(dir, 'policy.json'), { rules: [] });
  const socketPath = join(dir, 'd.sock');
  const loop = createLoop({}, t);
  const [node, ...argv] = daemonArgv('--socket', socketPath, '--policy', policy, '--log-level', 'info');
  const env: NodeJS.ProcessEnv = { ...process.env, JOURNAL_STREAM: journalStream };
  for (const key of ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES', 'NOTIFY_SOCKET', 'WATCHDOG_PID', 'WATCHDOG_USEC']) delete env[key];
  const daemon = spawn(node!, argv, { stdio: ['ignore', stdout, 'pipe'], env });
  const kill = onExit(() => daemon.kill('SIGKILL'));
  t.teardown(kill);
  let stderr = '';
  daemon.stderr!.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  const exited = new Promise<number | null>((resolve) => daemon.once('exit', (code) => resolve(code)));
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
  const client = WireClient.connect(socketPath);
  const opened = await client.open({ diskseq: loop.diskseq });
  if (opened.ok) native.close(opened.fd);
  client.close();
  t.true(opened.ok, 'root opens the loop device');
  const violation = await sendRawPacket(socketPath, Buffer.from([0xff, 0xff, 0xff]));
  t.true(violation.dropped, 'a garbage packet costs the connection (a warning)');
  writePolicy(policy, '{ not json');
  daemon.kill('SIGHUP'); // a broken file: an error line, the old policy stays
  await sleep(300);
  daemon.kill('SIGTERM');
  t.is(await within(exited, 20_000, 'the daemon to exit'), 0, stderr);
}

/** The JSON records of lines as the daemon wrote them, each with the prefix it had. */
function parse(text: string): { prefix: string; level: string; msg: string }[] {
  return text.split('\n').filter((l) => l !== '').map((line) => {
    const match = /^(<\d>)?(\{.*\})$/.exec(line);
    if (match === null) throw new Error(`not a JSON line: ${line}`);
    const record = JSON.parse(match[2]!) as { level: string; msg: string };
    return { prefix: match[1] ?? '', level: record.level, msg: record.msg };
  });
}

test('stdout is the journal stream JOURNAL_STREAM names: every line carries its priority; inherited with another stdout: none does', async (t) => {
  if (!needsRoot(t)) return;
  const dir = tempDir(t, 'diskseqd-fake-journal-');
  const received = new Map<Socket, string>();
  const server = createServer((s) => {
    received.set(s, '');
    s.on('data', (c: Buffer) => received.set(s, received.get(s)! + c.toString()));
  });
  await new Promise<void>((resolve) => server.listen(join(dir, 'stdout'), resolve));
  t.teardown(() => server.close());

  const own = await connected(join(dir, 'stdout'));
  await logSomething(t, own, streamId(own));
  own.destroy();
  const other = await connected(join(dir, 'stdout'));
  const unrelated = await connected(join(dir, 'stdout')); // what a parent's journal stream would be
  await logSomething(t, other, streamId(unrelated));
  other.destroy();
  unrelated.destroy();
  await sleep(100);

  const [withPrefix, withoutPrefix] = [...received.values()].filter((text) => text !== '').map(parse);
  t.truthy(withPrefix && withoutPrefix);
  for (const records of [withPrefix!, withoutPrefix!]) {
    t.deepEqual(new Set(records.map((r) => r.level)), new Set(['info', 'warn', 'error']), 'audit (info), warning and error lines');
    t.true(records.some((r) => r.msg === 'audit' && r.level === 'info'));
  }
  for (const r of withPrefix!) t.is(r.prefix, `<${PRIORITY[r.level]}>`, `${r.level} line "${r.msg}"`);
  t.true(withoutPrefix!.every((r) => r.prefix === ''), 'an inherited JOURNAL_STREAM that is not our stdout adds nothing');
});

test('a real systemd-journald files each line at its priority: journalctl -p warning shows exactly the warnings and errors', async (t) => {
  if (!needsRoot(t)) return;
  if (!existsSync(JOURNALD)) {
    if (process.env.CI === 'true') t.fail(`${JOURNALD} is missing: install the systemd package`);
    else t.log(`SKIPPED (not a pass): ${JOURNALD} is missing`);
    return;
  }
  // A journal namespace of this test's own: its own sockets and files, nobody else's journal.
  const namespace = `diskseqdtest${process.pid}x${Math.floor(Math.random() * 1e6)}`;
  const machineId = readFileSync('/etc/machine-id', 'utf8').trim();
  const journald = spawn(JOURNALD, [namespace], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, SYSTEMD_LOG_TARGET: 'console' } });
  let journaldErr = '';
  journald.stderr!.on('data', (c: Buffer) => {
    journaldErr += c.toString();
  });
  const removeAll = onExit(() => {
    journald.kill('SIGKILL');
    for (const dir of [`/run/systemd/journal.${namespace}`, `/var/log/journal/${machineId}.${namespace}`, `/run/log/journal/${machineId}.${namespace}`]) {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  t.teardown(async () => {
    journald.kill('SIGTERM');
    await Promise.race([new Promise((r) => journald.once('exit', r)), sleep(5000)]);
    removeAll();
  });
  const stdoutSocket = `/run/systemd/journal.${namespace}/stdout`;
  await within((async () => {
    while (!existsSync(stdoutSocket)) await sleep(20);
  })(), 20_000, `systemd-journald to listen (stderr: ${journaldErr})`);

  // The stream protocol's header, as systemd sends it for a service with SyslogLevelPrefix=yes.
  const identifier = `diskseqd-${namespace}`;
  const stream = await connected(stdoutSocket);
  stream.write(`${identifier}\n\n6\n1\n0\n0\n0\n`);
  await logSomething(t, stream, streamId(stream));
  stream.destroy();

  const read = (...args: string[]): { priority: number; level: string; msg: string }[] => {
    const run = spawnSync('journalctl', [`--namespace=${namespace}`, '-o', 'json', `SYSLOG_IDENTIFIER=${identifier}`, ...args], { encoding: 'utf8' });
    if (run.status !== 0) throw new Error(`journalctl failed: ${run.stderr}`);
    return run.stdout.split('\n').filter((l) => l !== '').map((l) => {
      const entry = JSON.parse(l) as { PRIORITY: string; MESSAGE: string };
      const record = JSON.parse(entry.MESSAGE) as { level: string; msg: string };
      return { priority: Number(entry.PRIORITY), level: record.level, msg: record.msg };
    });
  };
  let all = read();
  for (let i = 0; i < 100 && !all.some((e) => e.msg === 'stopped'); i++) {
    await sleep(50);
    all = read();
  }
  t.true(all.some((e) => e.msg === 'stopped'), `every line reached the journal: ${JSON.stringify(all)}`);
  for (const e of all) t.is(e.priority, PRIORITY[e.level], `${e.level} line "${e.msg}" filed at priority ${e.priority}`);
  t.true(all.some((e) => e.msg === 'audit' && e.priority === 6), 'the audit line is info');
  const warnings = read('-p', 'warning');
  t.deepEqual(warnings, all.filter((e) => e.level === 'warn' || e.level === 'error' || e.level === 'fatal'));
  t.deepEqual(new Set(warnings.map((e) => e.level)), new Set(['warn', 'error']));
});
