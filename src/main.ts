/**
 * diskseqd's entry point: parse the command line, build the registry from sysfs, start
 * serving, and shut down in order on SIGTERM/SIGINT.
 */
import { readFileSync } from 'node:fs';
import { parseCommandLine, USAGE, type Config } from './config.js';
import { createLogger } from './log.js';
import { Opener } from './opener.js';
import { Policy } from './policy/index.js';
import { Registry } from './registry.js';
import { Server } from './server.js';
import { Sysfs } from './sysfs.js';
import { IdleExit } from './systemd/idle-exit.js';
import { Notifier } from './systemd/notify.js';
import { inheritedListener } from './systemd/socket-activation.js';

/** How long shutdown waits for in-flight requests before closing connections anyway. */
const SHUTDOWN_GRACE_MS = 5000;

const VERSION: string = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version;

function run(config: Config): void {
  const log = createLogger(config.logLevel);
  const inheritedFd = inheritedListener() ?? undefined; // throws on a wrong kind of fd: exit 1
  const notifier = new Notifier({ log });
  const sysfs = new Sysfs(config.sysfsRoot);
  const registry = new Registry(sysfs, log);
  registry.scan();
  const policy = Policy.builtinDefault();
  const opener = new Opener(registry, sysfs, () => policy, log);
  let idle: IdleExit | undefined;
  const server: Server = new Server(
    { socketPath: config.socketPath, inheritedFd, socketMode: 0o666, maxConnections: config.maxConnections, backlog: 128 },
    {
      opener, registry, log, serverVersion: VERSION,
      limits: {
        maxInFlight: config.maxInFlight, maxQueuedPackets: 1024,
        maxQueuedBytes: config.maxQueuedBytes, maxQueuedFds: config.maxQueuedFds,
      },
    },
    () => idle?.update(server.connectionCount === 0 && !server.busy),
  );
  server.start();
  log.info({ socket: config.socketPath, inherited: inheritedFd !== undefined, disks: registry.size, version: VERSION }, 'serving');

  let stopping = false;
  const stop = (signal: NodeJS.Signals | 'idle') => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    notifier.stopping();
    idle?.close();
    void server.shutdown(SHUTDOWN_GRACE_MS).then(() => {
      log.info('stopped');
      process.exit(0);
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  if (config.idleExitMs !== undefined) {
    idle = new IdleExit(config.idleExitMs, () => {
      log.info({ idleExitMs: config.idleExitMs }, 'idle: no longer accepting; exiting once the last client is done');
      server.stopAccepting();
      void idle!.drained().then(() => stop('idle'));
    });
  }
  // Last: systemd may send SIGTERM as soon as it reads READY=1, so the handlers come first.
  const status = () => `${registry.size} disks, ${server.connectionCount} connections`;
  notifier.ready(status());
  notifier.startWatchdog();
  notifier.trackStatus(status);
}

function main(argv: string[]): void {
  let command;
  try {
    command = parseCommandLine(argv);
  } catch (error) {
    process.stderr.write(`diskseqd: ${(error as Error).message}\nTry 'diskseqd --help'.\n`);
    process.exit(2);
  }
  if (command.kind === 'help') process.stdout.write(USAGE);
  else if (command.kind === 'version') process.stdout.write(`diskseqd ${VERSION}\n`);
  else {
    try {
      run(command.config);
    } catch (error) {
      process.stderr.write(`diskseqd: ${(error as Error).message}\n`);
      process.exit(1);
    }
  }
}

main(process.argv.slice(2));
