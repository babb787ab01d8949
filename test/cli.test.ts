// The diskseq-open CLI end to end: it opens through the daemon, hands the fd to the
// command, and on any failure prints one clear line and never runs the command.
import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';
import { CLI_SCRIPT } from '../testkit/repo.js';
import { createLoop } from '../testkit/loop.js';

const CLI = CLI_SCRIPT;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs diskseq-open with `args` (DISKSEQD_SOCKET unset unless given). */
function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const base = { ...process.env };
    delete base.DISKSEQD_SOCKET;
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...base, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('latin1')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A scratch dir for files a command may (or must not) create. */
function scratch(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'diskseqd-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('diskseq-open <X>p1 -- sh -c "head -c 16 {}" prints partition 1\'s marker', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({ partitionsMiB: [2, 2], partscan: true }, t);
  const { daemon } = await startBroker(t);
  const [p1, p2] = loop.image.partitions;

  const run = await cli(['--socket', daemon.socketPath, `${loop.diskseq}p1`, '--', 'sh', '-c', 'head -c 16 {}']);
  t.is(run.code, 0, run.stderr);
  t.is(run.stdout, p1!.marker.slice(0, 16));

  // The other DEVICE forms, each through DISKSEQD_SOCKET.
  const env = { DISKSEQD_SOCKET: daemon.socketPath };
  const forms: [string, string][] = [
    [`${loop.diskseq}-part2`, p2!.marker],
    [`/dev/disk/by-diskseq/${loop.diskseq}-part1`, p1!.marker],
    [`/dev/disk/by-diskseq/${loop.diskseq}`, loop.image.diskMarker],
    [`${loop.diskseq}`, loop.image.diskMarker],
  ];
  for (const [device, marker] of forms) {
    const r = await cli([device, '--', 'sh', '-c', 'head -c 16 {}'], env);
    t.is(r.code, 0, `${device}: ${r.stderr}`);
    t.is(r.stdout, marker.slice(0, 16), device);
  }
});

test('diskseq-open --fd N puts the fd at N and the command\'s exit status is passed through', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const { daemon } = await startBroker(t);
  const run = await cli(['--socket', daemon.socketPath, '--fd', '7', String(loop.diskseq), '--', 'sh', '-c', 'head -c 16 <&7; exit 42']);
  t.is(run.code, 42);
  t.is(run.stdout, loop.image.diskMarker.slice(0, 16));
});

test('diskseq-open --list --json lists the test\'s devices with their diskseqs', async (t) => {
  if (!needsRoot(t)) return;
  const a = createLoop({}, t);
  const b = createLoop({ partitionsMiB: [2], partscan: true }, t);
  const { daemon } = await startBroker(t);
  const run = await cli(['--socket', daemon.socketPath, '--list', '--json']);
  t.is(run.code, 0, run.stderr);
  let parsed: unknown;
  t.notThrows(() => (parsed = JSON.parse(run.stdout)), 'stdout is one JSON document');
  const devices = collectDevices(parsed);
  for (const loop of [a, b]) {
    const entry = devices.find((d) => d.name === loop.name);
    t.truthy(entry, `${loop.name} is listed`);
    t.is(String(entry?.diskseq), loop.diskseq.toString(), `${loop.name} has diskseq ${loop.diskseq}`);
  }
});

test('a missing device: one clear line naming NOT_FOUND, exit 125, the command never runs', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const gone = loop.diskseq;
  loop.reattach();
  const { daemon } = await startBroker(t);
  const dir = scratch(t);
  const witness = join(dir, 'ran');

  const run = await cli(['--socket', daemon.socketPath, String(gone), '--', 'sh', '-c', `touch ${witness}`]);
  t.is(run.code, 125);
  t.false(existsSync(witness), 'the command was not run');
  const lines = run.stderr.trim().split('\n');
  t.is(lines.length, 1, `one line, got: ${run.stderr}`);
  t.regex(lines[0]!, new RegExp(`^diskseq-open: ${gone}: not found \\(NOT_FOUND\\): `));
  t.is(run.stdout, '');

  // No daemon at all: the same rules.
  const noDaemon = await cli(['--socket', join(dir, 'absent.sock'), String(loop.diskseq), '--', 'sh', '-c', `touch ${witness}`]);
  t.is(noDaemon.code, 125);
  t.false(existsSync(witness));
  t.is(noDaemon.stderr.trim().split('\n').length, 1, `one line, got: ${noDaemon.stderr}`);
});

/** Every object with a string `name` anywhere in a JSON value (the list's exact shape is the CLI's). */
function collectDevices(value: unknown, out: { name: string; diskseq?: unknown }[] = []): { name: string; diskseq?: unknown }[] {
  if (Array.isArray(value)) for (const v of value) collectDevices(v, out);
  else if (value && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    if (typeof record.name === 'string') out.push(record as { name: string; diskseq?: unknown });
    for (const v of Object.values(record)) collectDevices(v, out);
  }
  return out;
}
