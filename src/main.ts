/**
 * diskseqd's entry point: parse the command line, load the policy, subscribe to uevents,
 * build the registry from sysfs, start serving; reload the policy on SIGHUP; shut down in
 * order on SIGTERM/SIGINT.
 */
import { existsSync, readFileSync } from 'node:fs';
import { parseCommandLine, USAGE, type Config } from './config.js';
import { createLogger } from './log.js';
import { Opener } from './opener.js';
import { formatPolicyError, Policy, PolicyError } from './policy/index.js';
import { PrivateNodes } from './private-nodes.js';
import { Server } from './server.js';
import { Sysfs } from './sysfs.js';
import { IdleExit } from './systemd/idle-exit.js';
import { Notifier } from './systemd/notify.js';
import { inheritedListener, socketPathOf } from './systemd/socket-activation.js';
import { startLiveRegistry } from './live-registry.js';
import { WatchHub } from './watch-hub.js';

/** How long shutdown waits for in-flight requests before closing connections anyway. */
const SHUTDOWN_GRACE_MS = 5000;

const VERSION: string = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version;

/** The policy in force: the file if it exists (or was named), else the built-in default. */
function loadPolicy(config: Config): Policy {
  if (!config.policyFileGiven && !existsSync(config.policyFile)) return Policy.builtinDefault();
  return Policy.fromFile(config.policyFile);
}

function run(config: Config): void {
  const log = createLogger(config.logLevel, { format: config.logFormat });
  // Whatever way the process ends, what waits for standard output is written (bounded in time).
  process.on('exit', () => log.flush());
  const inheritedFd = inheritedListener() ?? undefined; // throws on a wrong kind of fd: exit 1
  // An inherited socket is where systemd bound it, whatever --socket says.
  const socketPath = inheritedFd === undefined ? config.socketPath : socketPathOf(inheritedFd) ?? config.socketPath;
  const notifier = new Notifier({ log });
  let policy = loadPolicy(config);
  log.info({ policy: policy.source, rules: policy.ruleNames }, 'policy loaded');

  const sysfs = new Sysfs(config.sysfsRoot);
  // The first scan runs while the daemon serves (docs/design.md, "Registry": the first scan).
  const { registry, uevents, scanned } = startLiveRegistry(sysfs, log, { ueventBufferBytes: config.ueventBufferBytes, background: true });

  const privateNodes = new PrivateNodes();
  const opener = new Opener(registry, sysfs, () => policy, privateNodes, log, { maxWaitMs: config.maxWaitMs, maxWaiting: config.maxWaiting });
  let idle: IdleExit | undefined;
  const server: Server = new Server(
    { socketPath, inheritedFd, socketMode: 0o666, maxConnections: config.maxConnections,
      maxConnectionsPerUid: config.maxConnectionsPerUid, backlog: 128 },
    {
      opener, registry, log, serverVersion: VERSION, watchHub: new WatchHub(registry, config.maxWatchers),
      limits: {
        maxInFlight: config.maxInFlight, maxQueuedPackets: 1024,
        // Reading pauses while responses wait, so at most maxInFlight fds can wait (plus
        // none from List and Watch): the fd bound is a backstop, the stall timeout drops.
        maxQueuedBytes: config.maxQueuedBytes, maxQueuedFds: config.maxInFlight, stallTimeoutMs: config.stallTimeoutMs,
      },
    },
    () => idle?.update(server.connectionCount === 0 && !server.busy),
  );

  process.on('SIGHUP', () => {
    try {
      policy = Policy.fromFile(config.policyFile);
      log.info({ policy: policy.source, rules: policy.ruleNames }, 'policy reloaded');
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
    idle?.close();
    void server.shutdown(SHUTDOWN_GRACE_MS).then(() => {
      uevents.close();
      privateNodes.close();
      log.info('stopped');
      log.flush();
      process.exit(0);
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  if (config.idleExitMs !== undefined) {
    idle = new IdleExit(config.idleExitMs, () => {
      if (!server.stopAccepting()) {
        log.info('idle deadline reached with clients waiting in the backlog: serving them');
        return false;
      }
      log.info({ idleExitMs: config.idleExitMs }, 'idle: exiting');
      stop('idle');
      return true;
    });
  }

  // Serve only once every signal has its handler: a signal in between would take the
  // default action and leave requests unanswered and the socket file behind. For the same
  // reason READY=1 comes last: systemd may send SIGTERM as soon as it reads it.
  server.start();
  log.info({ socket: socketPath, inherited: inheritedFd !== undefined, version: VERSION }, 'serving');
  const status = () => `${registry.size} disks, ${server.connectionCount} connections, ${server.requestsServed} requests served` +
    (log.dropped > 0 ? `, ${log.dropped} log lines dropped` : '');
  notifier.ready(status());
  notifier.startWatchdog();
  notifier.trackStatus(status);
  void scanned.then(() => notifier.status(status()));
}

function describeError(error: unknown): string {
  return error instanceof PolicyError ? formatPolicyError(error) : (error as Error).message;
}

function checkPolicy(file: string): number {
  try {
    const policy = Policy.fromFile(file);
    process.stdout.write(`${file}: valid (${policy.ruleNames.length} rules)\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`${describeError(error)}\n`);
    return 1;
  }
}

function main(argv: string[]): void {
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
      process.exit(checkPolicy(command.file));
    case 'run':
      try {
        run(command.config);
      } catch (error) {
        process.stderr.write(`diskseqd: ${describeError(error)}\n`);
        process.exit(1);
      }
  }
}

main(process.argv.slice(2));

