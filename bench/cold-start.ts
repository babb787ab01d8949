/**
 * Startup, as users wait for it: the daemon started through its bin's shebang, exactly as
 * the package installs it. Per run, interleaved with the floors (medians of RUNS, default 10):
 *
 * - `node -e 0`: exec -> exit, Node's own start;
 * - floor: a bare Node process that loads unix-dgram and sends READY=1 (exec -> READY=1);
 * - `diskseqd --version`: exec -> exit, Node plus loading all of the daemon's code;
 * - the daemon: exec -> accepting (a client that connects as early as it can gets its
 *   HelloReply), exec -> READY=1, exec -> the first Opened of a loop device of the bench's
 *   own (requested on that first connection), and the first scan's own times from its
 *   'sysfs scanned' line. Every start has a new runtime directory, as after a reboot. Twice:
 *   with the code cache an earlier start left in the cache directory (every start but the
 *   first after an upgrade of the daemon or Node; one start made it before the runs), and
 *   with a new cache directory, as the first start after an upgrade (src/code-cache.ts);
 *   each run checks from the daemon's 'serving' line that it used the cache, or had none;
 * - socket activation: systemd-socket-activate holds the socket; a client connects and
 *   asks for an open; the connection execs the daemon, which finds the code cache:
 *   connect -> Opened.
 *
 * Run at the host's own device count and again with BENCH_MANY_LOOPS (default 5000) more
 * unbound loop devices made with LOOP_CTL_ADD (bench/many-loop-devices.ts; removed after,
 * whatever happens). BENCH_COMPARE_DAEMON=/path/to/another/bin/diskseqd.cjs adds that
 * daemon's exec -> accepting and exec -> READY=1 to the same interleaved runs (e.g. an older
 * checkout, for a before/after in one run).
 *
 * Every command runs in this process's environment less what a systemd unit would not have
 * (UNITLESS_ENV): socket-activation variables, NODE_OPTIONS, and NODE_EXTRA_CA_CERTS, which
 * makes every Node start parse that certificate file first — on these machines, where the
 * login environment sets it to the system bundle, `node -e 0` took ~100 ms with it against
 * ~42 ms without, which had made every ratio to it look far better than it was.
 *
 * Run: npm run build && node dist/bench/cold-start.js [RUNS]   (root; prints a table)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, watch } from 'node:fs';
import { createRequire } from 'node:module';
import { loadavg, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { native } from '../native/index.js';
import { CODE_CACHE_FILE, type CodeCacheUse } from '../src/code-cache.js';
import { createLoop, type LoopFixture } from '../testkit/loop.js';
import { DAEMON_SCRIPT } from '../testkit/repo.js';
import { WireClient } from '../testkit/wire-client.js';
import { createManyLoopDevices } from './many-loop-devices.js';

interface DgramSocket {
  bind(path: string): void;
  close(): void;
  on(event: 'message', listener: (buf: Buffer) => void): void;
}
const require = createRequire(import.meta.url);
const unixDgram = require('unix-dgram') as { createSocket(type: 'unix_dgram'): DgramSocket };

const FLOOR_SCRIPT = `
process.on('SIGTERM', () => process.exit(0));
const d = require(${JSON.stringify(require.resolve('unix-dgram'))});
const s = d.createSocket('unix_dgram');
const b = Buffer.from('READY=1');
s.send(b, 0, b.length, process.env.NOTIFY_SOCKET, () => s.close());
setInterval(() => {}, 1000);`;

/** The two kinds of daemon start: with the code cache an earlier start left, and the first after an upgrade. */
const CACHED = 'daemon, code cache of an earlier start';
const FIRST = 'daemon, first start after an upgrade (no code cache)';

/** A start's --runtime-dir and --cache-dir. */
interface StartDirs {
  runtime: string;
  cache: string;
}

/** One series' samples in milliseconds. */
type Samples = Record<string, number[]>;

/** What one configuration (a device count) gave: medians per series, and the host's block devices. */
export interface StartupResult {
  blockDevices: number;
  medians: Record<string, number>;
}

const now = (): number => Number(process.hrtime.bigint()) / 1e6;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length === 0 ? NaN : sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** What this process's environment may have and a systemd unit's would not (see the module comment). */
const UNITLESS_ENV = [
  'LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES', 'WATCHDOG_USEC', 'WATCHDOG_PID', 'JOURNAL_STREAM', 'NODE_OPTIONS', 'NODE_EXTRA_CA_CERTS',
];

function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  for (const key of UNITLESS_ENV) delete env[key];
  return env;
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}

/** exec -> exit of a command, in ms. */
async function execToExit(command: string, args: string[]): Promise<number> {
  const t0 = now();
  const child = spawn(command, args, { stdio: 'ignore', env: cleanEnv() });
  await exited(child);
  if (child.exitCode !== 0) throw new Error(`${command} ${args.join(' ')} exited ${child.exitCode}`);
  return now() - t0;
}

/** Resolves with the time a READY=1 datagram arrives on the notify socket (set per run). */
class ReadyListener {
  private waiting: ((at: number) => void) | undefined;
  private readonly socket = unixDgram.createSocket('unix_dgram');

  constructor(readonly path: string) {
    this.socket.on('message', (buf) => {
      if (buf.toString().split('\n').includes('READY=1')) this.waiting?.(now());
    });
    this.socket.bind(path);
  }

  next(): Promise<number> {
    return new Promise((resolve) => {
      this.waiting = resolve;
    });
  }

  close(): void {
    this.socket.close();
  }
}

/**
 * Connects as soon as the socket exists: told by inotify (fs.watch on its directory), with
 * a slow poll as a fallback. Polling every millisecond would take the daemon's CPU on a
 * loaded two-core machine and slow what is measured.
 */
async function connectEarly(socketPath: string, child: ChildProcess, deadlineMs = 30_000): Promise<WireClient> {
  const deadline = now() + deadlineMs;
  const name = basename(socketPath);
  let wake: (() => void) | undefined;
  const watcher = watch(dirname(socketPath), (_event, file) => {
    if (file === name) wake?.();
  });
  try {
    for (;;) {
      try {
        return WireClient.connect(socketPath);
      } catch {
        if (child.exitCode !== null || now() > deadline) throw new Error(`daemon did not listen on ${socketPath}`);
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 20);
        });
      }
    }
  } finally {
    watcher.close();
  }
}

/** One direct start: exec -> accepting, -> READY=1, -> first Opened; and the scan's times. */
async function daemonStart(script: string, socketPath: string, dirs: StartDirs, ready: ReadyListener, loop: LoopFixture | undefined, samples: Samples, label: string, codeCache?: CodeCacheUse): Promise<void> {
  const t0 = now();
  const readyAt = ready.next();
  // An older daemon may not know them. Private runtime and cache directories, and never the machine's
  // default Varlink path.
  const newArgs = script === DAEMON_SCRIPT ? ['--log-format', 'json', '--runtime-dir', dirs.runtime, '--cache-dir', dirs.cache, '--no-varlink'] : [];
  const child = spawn(script, ['--socket', socketPath, '--log-level', 'info', ...newArgs], {
    stdio: ['ignore', 'pipe', 'inherit'], env: cleanEnv({ NOTIFY_SOCKET: ready.path }),
  });
  let log = '';
  child.stdout!.on('data', (c: Buffer) => {
    log += c.toString();
  });
  try {
    const client = await connectEarly(socketPath, child);
    try {
      const hello = client.hello().then(() => now());
      const opened = loop === undefined ? undefined : client.open({ diskseq: loop.diskseq }).then((o) => {
        const at = now();
        if (!o.ok) throw new Error(`first open failed: ${o.code} ${o.message}`);
        native.close(o.fd);
        return at;
      });
      (samples[`${label}: exec -> accepting (HelloReply)`] ??= []).push((await hello) - t0);
      if (opened) (samples[`${label}: exec -> first Opened`] ??= []).push((await opened) - t0);
      (samples[`${label}: exec -> READY=1`] ??= []).push((await readyAt) - t0);
    } finally {
      client.close();
    }
    if (codeCache !== undefined) {
      const serving = JSON.parse(log.split('\n').find((l) => l.includes('"msg":"serving"')) ?? '{}') as { codeCache?: string };
      if (serving.codeCache !== codeCache) throw new Error(`${label}: the daemon's code cache was ${serving.codeCache}, not ${codeCache}`);
    }
    for (let i = 0; i < 2000 && !log.includes('"sysfs scanned"'); i++) await new Promise((r) => setTimeout(r, 5));
    const scanned = /"msg":"sysfs scanned"/.test(log) ? JSON.parse(log.split('\n').find((l) => l.includes('"sysfs scanned"'))!) : undefined;
    if (scanned) {
      (samples[`${label}: first scan, bound disks indexed (daemon's own figure)`] ??= []).push(scanned.indexedMs);
      (samples[`${label}: first scan, complete (daemon's own figure)`] ??= []).push(scanned.ms);
    }
  } finally {
    child.kill('SIGTERM');
    await exited(child);
  }
}

/**
 * Leaves a code cache in `dirs.cache`, as the first start after an upgrade does: a start with the
 * measured starts' options that serves what they ask (a hello, and an open of `loop`), then
 * waits for the cache file before it stops.
 */
async function makeCodeCache(socketPath: string, dirs: StartDirs, ready: ReadyListener, loop: LoopFixture | undefined): Promise<void> {
  const args = ['--socket', socketPath, '--runtime-dir', dirs.runtime, '--cache-dir', dirs.cache, '--no-varlink', '--log-level', 'info', '--log-format', 'json'];
  const child = spawn(DAEMON_SCRIPT, args, { stdio: 'ignore', env: cleanEnv({ NOTIFY_SOCKET: ready.path }) });
  try {
    const client = await connectEarly(socketPath, child);
    try {
      await client.hello();
      if (loop !== undefined) {
        const opened = await client.open({ diskseq: loop.diskseq });
        if (!opened.ok) throw new Error(`open while making the code cache failed: ${opened.code} ${opened.message}`);
        native.close(opened.fd);
      }
    } finally {
      client.close();
    }
    const file = join(dirs.cache, CODE_CACHE_FILE);
    for (let i = 0; i < 200 && !existsSync(file); i++) await new Promise((r) => setTimeout(r, 25));
    if (!existsSync(file)) throw new Error(`the daemon wrote no ${file} within 5 s of a request`);
  } finally {
    child.kill('SIGTERM');
    await exited(child);
  }
}

/** One socket activation: connect + open request -> Opened, the connection exec'ing the daemon. */
async function activatedStart(socketPath: string, dirs: StartDirs, loop: LoopFixture, samples: Samples): Promise<void> {
  const activator = spawn('systemd-socket-activate', ['--seqpacket', '-l', socketPath, DAEMON_SCRIPT, '--socket', socketPath, '--runtime-dir', dirs.runtime, '--cache-dir', dirs.cache, '--no-varlink', '--log-level', 'warn'], {
    stdio: ['ignore', 'ignore', 'pipe'], env: cleanEnv(),
  });
  let stderr = '';
  activator.stderr!.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  try {
    while (!stderr.includes('Listening on')) {
      if (activator.exitCode !== null) throw new Error(`systemd-socket-activate exited: ${stderr}`);
      await new Promise((r) => setTimeout(r, 2));
    }
    const t0 = now();
    const client = WireClient.connect(socketPath);
    try {
      const outcome = await client.open({ diskseq: loop.diskseq });
      const elapsed = now() - t0;
      if (!outcome.ok) throw new Error(`open after activation failed: ${outcome.code} ${outcome.message}`);
      native.close(outcome.fd);
      (samples['socket activation (code cache of an earlier start): connect -> first Opened'] ??= []).push(elapsed);
    } finally {
      client.close();
    }
  } finally {
    activator.kill('SIGTERM');
    await exited(activator);
  }
}

/** All series, interleaved, `runs` times. */
export async function startupRuns(runs: number, loop: LoopFixture | undefined): Promise<StartupResult> {
  const dir = mkdtempSync(join(tmpdir(), 'diskseqd-cold-start-'));
  const ready = new ReadyListener(join(dir, 'notify.sock'));
  const samples: Samples = {};
  const compare = process.env.BENCH_COMPARE_DAEMON;
  const activate = loop !== undefined && existsSync('/usr/bin/systemd-socket-activate');
  // Every start but the first after an upgrade finds the cache an earlier one left
  // (src/code-cache.ts); each start has a runtime directory of its own, as after a reboot.
  const cacheDir = join(dir, 'cache');
  const cached = (name: string): StartDirs => ({ runtime: join(dir, `${name}.run`), cache: cacheDir });
  const fresh = (name: string): StartDirs => ({ runtime: join(dir, `${name}.run`), cache: join(dir, `${name}.cache`) });
  try {
    await makeCodeCache(join(dir, 'cache.sock'), cached('maker'), ready, loop);
    for (let i = 0; i < runs; i++) {
      (samples['node -e 0: exec -> exit'] ??= []).push(await execToExit(process.execPath, ['-e', '0']));
      const floorT0 = now();
      const floorReady = ready.next();
      const floor = spawn(process.execPath, ['-e', FLOOR_SCRIPT], { stdio: 'ignore', env: cleanEnv({ NOTIFY_SOCKET: ready.path }) });
      (samples['floor (Node + unix-dgram + READY=1): exec -> READY=1'] ??= []).push((await floorReady) - floorT0);
      floor.kill('SIGTERM');
      await exited(floor);
      (samples['diskseqd --version: exec -> exit (loads all its code)'] ??= []).push(await execToExit(DAEMON_SCRIPT, ['--version']));
      await daemonStart(DAEMON_SCRIPT, join(dir, `d${i}.sock`), cached(`d${i}`), ready, loop, samples, CACHED, 'used');
      await daemonStart(DAEMON_SCRIPT, join(dir, `f${i}.sock`), fresh(`f${i}`), ready, loop, samples, FIRST, 'absent');
      if (compare) await daemonStart(compare, join(dir, `c${i}.sock`), fresh(`c${i}`), ready, loop, samples, `compared (${compare})`);
      if (activate) await activatedStart(join(dir, `a${i}.sock`), cached(`a${i}`), loop!, samples);
    }
  } finally {
    ready.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const medians: Record<string, number> = {};
  for (const [name, values] of Object.entries(samples)) medians[name] = median(values);
  return { blockDevices: readdirSync('/sys/class/block').length, medians };
}

/** Prints one configuration's table, with the ratios the goals are stated in. */
export function printStartup(result: StartupResult, runs: number): void {
  const m = result.medians;
  const node = m['node -e 0: exec -> exit']!;
  const floor = m['floor (Node + unix-dgram + READY=1): exec -> READY=1']!;
  console.log(`\nstartup with ${result.blockDevices} block devices in /sys/class/block (medians of ${runs}, ms; load average ${loadavg().map((l) => l.toFixed(2)).join(' ')})`);
  for (const [name, value] of Object.entries(m)) {
    const ratios = name.includes('first scan') ? '' : `   ${(value / node).toFixed(2)}x node -e 0   ${(value / floor).toFixed(2)}x floor`;
    console.log(`  ${name.padEnd(72)} ${value.toFixed(1).padStart(8)}${ratios}`);
  }
  for (const label of [CACHED, FIRST]) {
    const ratio = m[`${label}: exec -> accepting (HelloReply)`]! / node;
    console.log(`  goal: exec -> accepting <= 1.5x node -e 0, ${label}: ${ratio.toFixed(2)}x ${ratio <= 1.5 ? '(met)' : '(NOT met)'}`);
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the startup benchmark needs root (loop devices)');
  const runs = Number(process.argv[2] ?? process.env.BENCH_STARTUP_RUNS ?? 10);
  const many = Number(process.env.BENCH_MANY_LOOPS ?? 5000);
  const loop = createLoop({});
  try {
    printStartup(await startupRuns(runs, loop), runs);
    if (many > 0) {
      const devices = await createManyLoopDevices(many);
      try {
        console.log(`\n(${devices.created} unbound loop devices added with LOOP_CTL_ADD)`);
        printStartup(await startupRuns(runs, loop), runs);
      } finally {
        await devices.remove();
        console.log(`(removed them again: ${readdirSync('/sys/class/block').length} block devices now)`);
      }
    }
  } finally {
    loop.cleanup();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
