/**
 * Per-test wiring: a daemon on a private socket plus connected wire clients, all torn
 * down with the test; and assertions on open outcomes that keep fd ownership tidy.
 * (Waiting with a bound: within, in testkit/cleanup.ts.)
 */
import type { ExecutionContext } from 'ava';
import { native } from '../../native/index.js';
import { DaemonProcess, type DaemonOptions } from '../../testkit/daemon.js';
import { WireClient, type DeviceInfo, type OpenOutcome } from '../../testkit/wire-client.js';

/** A running daemon and a way to connect more clients to it. */
export interface Broker {
  daemon: DaemonProcess;
  /** A client connected at start. */
  client: WireClient;
  /** Connects another client (closed at teardown). */
  connect(): WireClient;
}

/** Starts a daemon and connects one client; both are stopped at the end of the test. */
export async function startBroker(t: ExecutionContext, options: DaemonOptions = {}): Promise<Broker> {
  const daemon = await DaemonProcess.start(options, t);
  const connect = (): WireClient => {
    const client = WireClient.connect(daemon.socketPath);
    t.teardown(() => client.close());
    return client;
  };
  return { daemon, client: connect(), connect };
}

/**
 * Asserts that an open succeeded and returns the fd, which is closed at teardown unless
 * the caller closes it first through the returned close().
 */
export function expectOpened(t: ExecutionContext, outcome: OpenOutcome, what = 'open'): { fd: number; device: DeviceInfo; close(): void } {
  if (!outcome.ok) {
    const why = `${what}: expected an fd, got ${outcome.code} (${outcome.message}, errno ${outcome.osErrno})`;
    t.fail(why);
    throw new Error(why);
  }
  let open = true;
  const close = (): void => {
    if (!open) return;
    open = false;
    native.close(outcome.fd);
  };
  t.teardown(close);
  t.pass(`${what}: got fd`);
  return { fd: outcome.fd, device: outcome.device, close };
}

/** Asserts that an open failed with `code`; closes the fd if one was (wrongly) delivered. */
export function expectRefused(t: ExecutionContext, outcome: OpenOutcome, code: string, what = 'open'): void {
  if (outcome.ok) {
    native.close(outcome.fd);
    t.fail(`${what}: expected ${code}, but the daemon delivered an fd for ${outcome.device.name} (diskseq ${outcome.device.diskseq})`);
    return;
  }
  t.is(outcome.code, code, `${what}: ${outcome.message}`);
}
