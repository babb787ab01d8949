/**
 * Per-test wiring for the Varlink front-end: a daemon serving Varlink on a private path,
 * and connected VarlinkClients, all torn down with the test; plus what a test checks on
 * an fd it got (its diskseq, its access mode).
 */
import type { ExecutionContext } from 'ava';
import { readFileSync } from 'node:fs';
import { native } from '../../native/index.js';
import { DaemonProcess, type DaemonOptions } from '../../testkit/daemon.js';
import { VarlinkClient, type VarlinkReply } from '../../testkit/varlink-client.js';

export const PROVIDER = 'io.systemd.StorageProvider';

/** A daemon serving Varlink, and a way to connect clients to it. */
export interface VarlinkBroker {
  daemon: DaemonProcess;
  /** The Varlink socket. */
  path: string;
  client: VarlinkClient;
  connect(): VarlinkClient;
}

/** Starts a daemon with Varlink on a private path and connects one client. */
export async function startVarlinkBroker(t: ExecutionContext, options: DaemonOptions = {}): Promise<VarlinkBroker> {
  const daemon = await DaemonProcess.start({ ...options, varlink: true }, t);
  const path = daemon.varlinkPath!;
  const connect = (): VarlinkClient => {
    const client = VarlinkClient.connect(path);
    t.teardown(() => client.close());
    return client;
  };
  return { daemon, path, client: connect(), connect };
}

/** The O_ACCMODE of one of this process's fds: 'ro', 'wo' or 'rw'. */
export function accessModeOf(fd: number): 'ro' | 'wo' | 'rw' {
  const flags = parseInt(/^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!, 8);
  return (['ro', 'wo', 'rw'] as const)[flags & 3]!;
}

/** Asserts a reply is the named error (and, when given, has these parameters). */
export function expectError(t: ExecutionContext, reply: VarlinkReply, error: string, parameters?: Record<string, unknown>, what = ''): void {
  t.is(reply.error, error, `${what}: ${JSON.stringify(reply)}`);
  if (parameters !== undefined) t.deepEqual(reply.parameters, parameters, what);
  t.is(reply.fds.length, 0, `${what}: an error carries no fd`);
}

/** fds expectAcquired handed out and nobody closed yet (closed at teardown). */
const acquired = new Set<number>();

/** Closes an fd expectAcquired returned, before teardown (never twice: fd numbers are reused). */
export function closeAcquired(fd: number): void {
  if (acquired.delete(fd)) native.close(fd);
}

/**
 * Asserts an Acquire reply delivered exactly one fd for diskseq (whole disk or not), with
 * the reply's readOnly; returns the fd, closed at teardown unless closeAcquired() was.
 */
export function expectAcquired(t: ExecutionContext, reply: VarlinkReply, diskseq: bigint, readOnly: boolean, what = ''): number {
  t.is(reply.error, undefined, `${what}: ${JSON.stringify(reply)}`);
  t.is(reply.fds.length, 1, `${what}: one fd with the reply`);
  const fd = reply.fds[0]!;
  if (fd !== undefined) {
    acquired.add(fd);
    t.teardown(() => closeAcquired(fd));
  }
  t.deepEqual(reply.parameters, { fileDescriptorIndex: 0, type: 'blk', readOnly }, what);
  if (fd === undefined) throw new Error(`${what}: no fd`);
  t.is(native.probeFdSync(fd).diskseq, diskseq, `${what}: the fd is that disk instance`);
  t.is(accessModeOf(fd), readOnly ? 'ro' : 'rw', `${what}: opened as the reply says`);
  return fd;
}
