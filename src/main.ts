/**
 * diskseqd's entry point: parse the command line, load the policy, subscribe to uevents,
 * build the registry from sysfs, start serving; reload the policy on SIGHUP; shut down in
 * order on SIGTERM/SIGINT.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkPolicy, logPolicyWarnings } from './check-policy.js';
import { monotonicMs } from './clock.js';
import type { CodeCache, CodeCacheUse } from './code-cache.js';
import { defaultUnreceivedFdsTotal, parseCommandLine, USAGE, type Config } from './config.js';
import { FairTurns } from './fair-turns.js';
import { DeviceWork } from './device-work.js';
import { createLogger, type Logger } from './log.js';
import { Opener } from './opener.js';
import { PartitionProvenance } from './partition-provenance.js';
import { formatPolicyError, Policy, PolicyError } from './policy/index.js';
import { PrivateNodes } from './private-nodes.js';
import { Quotas, type QuotaLimits } from './quotas.js';
import { MemoryTrimmer, TRIM_DELAY_MS } from './memory-trim.js';
import { RequestTally } from './request-tally.js';
import { Server } from './server.js';
import type { Registry } from './registry.js';
import { Sysfs } from './sysfs.js';
import type { UeventListener } from './uevents.js';
import { IdleExit } from './systemd/idle-exit.js';
import { Notifier } from './systemd/notify.js';
import { inheritedListeners, socketPathOf } from './systemd/socket-activation.js';
import { startLiveRegistry } from './live-registry.js';
import { native } from '../native/index.js';
import { StatusView } from './status.js';
import { WatchHub } from './watch-hub.js';
import type { VarlinkListener } from './varlink/listener.js';
import type { createVarlink as CreateVarlink } from './varlink/start.js';

/** How long shutdown waits for in-flight requests before closing connections anyway. */
const SHUTDOWN_GRACE_MS = 5000;

const VERSION: string = JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'package.json'), 'utf8')).version;

/** The policy in force: the file if it exists (or was named), else the built-in default. */
function loadPolicy(config: Config): Policy {
  if (!config.policyFileGiven && !existsSync(config.policyFile)) return Policy.builtinDefault();
  return Policy.fromFile(config.policyFile);
}

/** The daemon's parts, wired together by assemble() and not started yet. */
interface Daemon {
  log: Logger;
  notifier: Notifier;
  /** The policy in force; SIGHUP replaces it, each request keeps the one it started with. */
  policy: { current: Policy };
  registry: Registry;
  uevents: UeventListener;
  /** Resolves when the first scan (run while serving) is complete. */
  scanned: Promise<void>;
  privateNodes: PrivateNodes;
  quotas: Quotas;
  work: DeviceWork;
  server: Server;
  varlink: VarlinkListener | undefined;
  socketPath: string;
  inherited: boolean;
  tally: RequestTally;
  /** What became of the code cache at this start (undefined: not loaded by src/start.ts). */
  codeCache: CodeCacheUse | undefined;
  /** Set once when --idle-exit is given. */
  idle?: IdleExit;
}

function run(config: Config, createVarlink: typeof CreateVarlink | undefined, codeCache: CodeCache | undefined): void {
  const daemon = assemble(config, createVarlink, codeCache);
  handleSignals(config, daemon);
  serve(daemon);
}

/**
 * Builds every part in the order they depend on each other: log, sockets systemd passed,
 * policy, registry (its first scan starts in the background), the open path, then the two
 * front-ends sharing one opener, registry, policy, quotas and audit log. Throws (exit 1)
 * on a bad policy, runtime directory or inherited socket.
 */
function assemble(config: Config, createVarlink: typeof CreateVarlink | undefined, codeCache: CodeCache | undefined): Daemon {
  const log = createLogger(config.logLevel, { format: config.logFormat });
  // Whatever way the process ends, what waits for standard output is written (bounded in time).
  process.on('exit', () => log.flush());
  if (codeCache?.why !== undefined) log.warn({ use: codeCache.use, why: codeCache.why }, 'code cache ignored; the daemon is compiled anew');
  const inherited = inheritedListeners(); // throws on a wrong kind of fd: exit 1
  const inheritedFd = inherited?.seqpacket;
  // An inherited socket is where systemd bound it, whatever --socket says.
  const socketPath = inheritedFd === undefined ? config.socketPath : socketPathOf(inheritedFd) ?? config.socketPath;
  const notifier = new Notifier({ log });
  const policy = { current: loadPolicy(config) };
  log.info({ policy: policy.current.source, rules: policy.current.ruleNames }, 'policy loaded');
  logPolicyWarnings(log, policy.current);

  const sysfs = new Sysfs(config.sysfsRoot);
  // Before the first scan: what earlier instances learned about loop partitions (throws,
  // exit 1, when the directory is not the daemon's alone).
  const provenance = PartitionProvenance.inDirectory(config.runtimeDir, log);
  // The first scan runs while the daemon serves (docs/design.md, "Registry": the first scan).
  const { registry, uevents, overruns, scanned } = startLiveRegistry(sysfs, log, {
    ueventBufferBytes: config.ueventBufferBytes, provenance, background: true,
  });

  const privateNodes = new PrivateNodes();
  const quotas = new Quotas(quotaLimits(config));
  native.configureJobPool(config.maxDeviceThreads, config.deviceThreadIdleMs, config.deviceThreadSpinUs);
  const work = new DeviceWork({ stallMs: config.deviceStallMs, timeoutMs: config.deviceTimeoutMs, maxPerUid: config.maxDeviceJobsPerUid }, log);
  const opener = new Opener(registry, sysfs, () => policy.current, privateNodes, log, { maxWaitMs: config.maxWaitMs, waits: quotas.waits }, work);
  const turns = new FairTurns();
  const tally = new RequestTally();
  // Both front-ends count connections, waits and snapshots in the same quotas.
  const connectionLimits = {
    maxInFlight: config.maxInFlight, maxQueuedPackets: 1024,
    // Reading pauses while responses wait, so at most maxInFlight fds can wait (plus
    // none from List and Watch): the fd bound is a backstop, the stall timeout drops.
    maxQueuedBytes: config.maxQueuedBytes, maxQueuedFds: config.maxInFlight, stallTimeoutMs: config.stallTimeoutMs,
  };
  // The code cache is written at the first quiet moment after a request has ended: the code
  // that served it is compiled by then (src/code-cache.ts).
  const trimmer = new MemoryTrimmer(TRIM_DELAY_MS, () => {
    if (tally.total > 0 && codeCache?.wanted) saveCodeCache(codeCache, config.cacheDir, log);
    native.trimMalloc();
  });
  const idleNow = () => {
    trimmer.touch();
    daemon.idle?.update(server.connectionCount + (varlink?.connectionCount ?? 0) === 0 && !server.busy && !varlink?.busy);
  };
  const watchHub = new WatchHub(registry, turns);
  const statusView = new StatusView({
    serverVersion: VERSION, registry, overruns, policy: () => policy.current, watchers: () => watchHub.count,
    connectionsByUid: () => server.connectionsByUid, requests: () => tally.byOutcome,
  });
  const server: Server = new Server(
    { socketPath, inheritedFd, socketMode: 0o666, backlog: 128 },
    {
      opener, registry, log, serverVersion: VERSION, watchHub, quotas, turns, tally, status: (peer) => statusView.report(peer),
      limits: connectionLimits,
    },
    idleNow,
  );
  // The second front-end (docs/design.md, "Second front-end: Varlink"): same opener,
  // registry, policy, limits and audit log.
  if (createVarlink === undefined && inherited?.varlink !== undefined) {
    log.info('--no-varlink: closing the Varlink socket systemd passed');
    native.close(inherited.varlink);
  }
  const varlink = createVarlink?.(config, inherited, { opener, registry, log, serverVersion: VERSION, quotas, turns, tally, connectionLimits }, idleNow);
  const daemon: Daemon = {
    log, notifier, policy, registry, uevents, scanned, privateNodes, quotas, work, server, varlink,
    socketPath, inherited: inheritedFd !== undefined, tally, codeCache: codeCache?.use,
  };
  return daemon;
}

/** SIGHUP reloads the policy; SIGTERM, SIGINT and --idle-exit shut down in order. */
function handleSignals(config: Config, daemon: Daemon): void {
  const { log, notifier, policy, server, varlink } = daemon;
  process.on('SIGHUP', () => {
    try {
      policy.current = Policy.fromFile(config.policyFile);
      log.info({ policy: policy.current.source, rules: policy.current.ruleNames }, 'policy reloaded');
      logPolicyWarnings(log, policy.current);
    } catch (error) {
      log.error({ error: describeError(error) }, 'policy reload failed; the old policy stays in force');
    }
  });
  let stopping = false;
  const stop = (signal: NodeJS.Signals | 'idle') => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    notifier.stopping();
    daemon.idle?.close();
    varlink?.stopAccepting();
    // Requests for hung devices are answered now, not waited for; stuck threads are never
    // joined (process.exit does not wait for them: docs/design.md, "Hung devices").
    daemon.work.shutdown();
    void Promise.all([server.shutdown(SHUTDOWN_GRACE_MS), varlink?.drain(SHUTDOWN_GRACE_MS)]).then(() => {
      daemon.uevents.close();
      daemon.privateNodes.close();
      log.info('stopped');
      log.flush();
      process.exit(0);
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  if (config.idleExitMs !== undefined) {
    daemon.idle = new IdleExit(config.idleExitMs, () => {
      if (varlink?.busy || (varlink?.connectionCount ?? 0) > 0 || !server.stopAccepting()) {
        log.info('idle deadline reached with clients waiting in the backlog: serving them');
        return false;
      }
      log.info({ idleExitMs: config.idleExitMs }, 'idle: exiting');
      stop('idle');
      return true;
    });
  }
}

/**
 * Starts both front-ends and tells systemd. Called only once every signal has its handler:
 * a signal in between would take the default action and leave requests unanswered and the
 * socket file behind. For the same reason READY=1 comes last, once the first scan has
 * indexed the bound disks: systemd may send SIGTERM as soon as it reads it.
 */
function serve(daemon: Daemon): void {
  const { log, notifier, registry, server, varlink } = daemon;
  server.start();
  const varlinkPath = varlink?.start() ? varlink.socketPath : null;
  log.info({ socket: daemon.socketPath, inherited: daemon.inherited, varlink: varlinkPath, version: VERSION, limits: daemon.quotas.limits, codeCache: daemon.codeCache }, 'serving');
  const status = () => `${registry.size} disks, ${server.connectionCount + (varlink?.connectionCount ?? 0)} connections, ` +
    `${daemon.tally.total} requests served` +
    (log.dropped > 0 ? `, ${log.dropped} log lines dropped` : '');
  // READY=1 once every bound disk is indexed: from then on no lookup waits for the first
  // scan. Also off the path of the first requests: the first notification loads unix-dgram
  // (6-8 ms), which the connection that activated the daemon would otherwise wait for.
  // A SIGTERM before then sends STOPPING=1 and no READY=1 (Notifier).
  void registry.indexed().then(() => {
    notifier.ready(status());
    notifier.startWatchdog();
    notifier.trackStatus(status);
  });
  void daemon.scanned.then(() => notifier.status(status()));
}

/** The shared bounds of the command line (docs/design.md, "Limits"). */
function quotaLimits(config: Config): QuotaLimits {
  return {
    rootSharePercent: config.rootSharePercent,
    connections: { total: config.maxConnections, perUid: config.maxConnectionsPerUid },
    waits: { total: config.maxWaiting, perUid: config.maxWaitingPerUid },
    watchers: { total: config.maxWatchers, perUid: config.maxWatchersPerUid },
    snapshots: { total: config.maxSnapshots, perUid: config.maxSnapshotsPerUid },
    unreceivedFds: {
      total: config.maxUnreceivedFdsTotal ?? defaultUnreceivedFdsTotal(native.openFileLimit()),
      perUid: config.maxUnreceivedFdsPerUid, perConnection: config.maxUnreceivedFds,
    },
  };
}

function describeError(error: unknown): string {
  return error instanceof PolicyError ? formatPolicyError(error) : (error as Error).message;
}

/** Writes the code cache (once); a failure costs only the next start's compile. */
function saveCodeCache(cache: CodeCache, dir: string, log: Logger): void {
  const started = monotonicMs();
  try {
    cache.save(dir);
    log.info({ ms: Math.round((monotonicMs() - started) * 10) / 10 }, 'code cache saved');
  } catch (error) {
    log.warn({ error: (error as Error).message }, 'cannot save the code cache; the next start compiles the daemon anew');
  }
}

/**
 * The daemon's command line (argv without node and the script). `codeCache`: how
 * src/start.ts loaded this code, when it did.
 */
export function main(argv: string[], codeCache?: CodeCache): void {
  let command;
  try {
    command = parseCommandLine(argv);
  } catch (error) {
    process.stderr.write(`diskseqd: ${(error as Error).message}\nTry 'diskseqd --help'.\n`);
    process.exit(2);
  }
  switch (command.kind) {
    case 'help':
      process.stdout.write(USAGE);
      return;
    case 'version':
      process.stdout.write(`diskseqd ${VERSION}\n`);
      return;
    case 'check-policy':
      process.exit(checkPolicy(command.file, command.dryRun, command.sysfsRoot));
    case 'run': {
      // Before anything touches /dev or the socket: a non-root daemon would fail later
      // with an EPERM about /dev/.diskseqd that names the symptom, not the cause.
      if (process.geteuid?.() !== 0) {
        process.stderr.write(`diskseqd: must run as root (it opens block devices and makes device nodes); running as uid ${process.geteuid?.()}\n`);
        process.exit(1);
      }
      const fail = (error: unknown): never => {
        process.stderr.write(`diskseqd: ${describeError(error)}\n`);
        process.exit(1);
      };
      // The Varlink front-end is loaded only when it may serve (--no-varlink costs nothing).
      const config = command.config;
      const front = config.varlinkSocketPath === undefined ? Promise.resolve(undefined)
        : import('./varlink/start.js').then((m) => m.createVarlink);
      void front.then((createVarlink) => {
        try {
          run(config, createVarlink, codeCache);
        } catch (error) {
          fail(error);
        }
      }, fail);
    }
  }
}

