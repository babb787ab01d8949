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

/** How long shutdown waits for in-flight requests before closing connections anyway. */
const SHUTDOWN_GRACE_MS = 5000;

const VERSION: string = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version;

function run(config: Config): void {
  const log = createLogger(config.logLevel);
  const sysfs = new Sysfs(config.sysfsRoot);
  const registry = new Registry(sysfs, log);
  registry.scan();
  const policy = Policy.builtinDefault();
  const opener = new Opener(registry, sysfs, () => policy, log);
  const server = new Server(
    { socketPath: config.socketPath, socketMode: 0o666, maxConnections: config.maxConnections, backlog: 128 },
    {
      opener, registry, log, serverVersion: VERSION,
      limits: {
        maxInFlight: config.maxInFlight, maxQueuedPackets: 1024,
        maxQueuedBytes: config.maxQueuedBytes, maxQueuedFds: config.maxQueuedFds,
      },
    },
  );
  server.start();
  log.info({ socket: config.socketPath, disks: registry.size, version: VERSION }, 'serving');

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    void server.shutdown(SHUTDOWN_GRACE_MS).then(() => {
      log.info('stopped');
      process.exit(0);
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
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
