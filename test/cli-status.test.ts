/**
 * `diskseq-open --status` without a daemon of its own: the command line (--status,
 * --status --json, what it refuses), the client library's status() against a scripted fake
 * daemon — every StatusReply field converted, and UNSUPPORTED from a daemon whose
 * HelloReply.features lack "status" — and the human-readable text.
 */
import test from 'ava';
import Long from 'long';
import { connect, DiskseqError, statusToJSON, type DaemonStatus } from '../client/index.js';
import { parseCliArgs, UsageError } from '../client/cli-args.js';
import { formatDuration, formatStatus } from '../client/cli-status.js';
import { ErrorCode } from '../proto/contract.js';
import { FakeDaemon } from './helpers/fake-daemon.js';

test('--status parses, with --json and --socket; anything else is a usage error', (t) => {
  t.deepEqual(parseCliArgs(['--status']), { kind: 'status', json: false, socketPath: undefined });
  t.deepEqual(parseCliArgs(['--status', '--json', '--socket', '/x.sock']), { kind: 'status', json: true, socketPath: '/x.sock' });
  t.throws(() => parseCliArgs(['--status', '42']), { instanceOf: UsageError, message: '--status takes no arguments (got "42")' });
  t.throws(() => parseCliArgs(['--status', '--list']), { instanceOf: UsageError, message: '--list and --status cannot be combined' });
  t.throws(() => parseCliArgs(['--status', '--rw']), { instanceOf: UsageError, message: '--rw cannot be used with --status' });
  t.throws(() => parseCliArgs(['--watch', '--json']), { instanceOf: UsageError, message: '--json is only valid with --list or --status' });
});

test('status(): every StatusReply field, and the pipelined Hello', async (t) => {
  const daemon = new FakeDaemon();
  t.teardown(() => daemon.close());
  const client = await connect({ socketPath: daemon.socketPath });
  t.teardown(() => client.close());
  const pending = client.status();
  const [hello, status] = await daemon.nextRequests(2);
  t.truthy(hello!.request.hello);
  t.truthy(status!.request.status);
  daemon.respond(hello!, { hello: { protocolVersion: 1, serverVersion: '9.9', features: ['open', 'status'] } });
  const u64 = (n: number | string) => Long.fromString(String(n), true);
  daemon.respond(status!, {
    status: {
      serverVersion: '9.9', uptimeMs: u64(90_061_000), disks: 3, partitions: 4, connections: 5,
      connectionsByUid: { 0: 2, 1000: 3 },
      requests: [{ op: 'open', code: 'OK', count: u64(7) }, { op: 'open', code: 'NOT_FOUND', count: u64(2) }, { op: 'hello', code: 'OK', count: u64(1) }],
      waiting: 2, waitingOpens: [{ diskseq: u64('18446744073709551615'), partition: 2, uid: 1000, waitedMs: 1500 }],
      watchers: 1, ueventOverruns: u64(2), lastOverrunUnixMs: u64(1_700_000_000_000), lastScanUnixMs: u64(1_700_000_000_500),
      lastScanUs: 3200, full: true,
    },
  });
  const got = await pending;
  t.deepEqual(got, {
    serverVersion: '9.9', uptimeMs: 90_061_000, disks: 3, partitions: 4, connections: 5,
    connectionsByUid: new Map([[0, 2], [1000, 3]]),
    requests: [{ op: 'open', code: 'OK', count: 7 }, { op: 'open', code: 'NOT_FOUND', count: 2 }, { op: 'hello', code: 'OK', count: 1 }],
    waiting: 2, waitingOpens: [{ diskseq: 18446744073709551615n, partition: 2, uid: 1000, waitedMs: 1500 }],
    watchers: 1, ueventOverruns: 2, lastOverrunAt: new Date(1_700_000_000_000), lastScanAt: new Date(1_700_000_000_500),
    lastScanUs: 3200, full: true,
  } satisfies DaemonStatus);
  const json = statusToJSON(got);
  t.deepEqual(json.connectionsByUid, { 0: 2, 1000: 3 });
  t.deepEqual(json.waitingOpens, [{ diskseq: '18446744073709551615', partition: 2, uid: 1000, waitedMs: 1500 }]);
  t.is(json.lastOverrunAt, '2023-11-14T22:13:20.000Z');
  t.notThrows(() => JSON.stringify(json));

  t.is(formatStatus(got, '/run/d.sock'), [
    'daemon:      diskseqd 9.9 on /run/d.sock, up 1d 1h 1m 1s',
    'devices:     3 disks, 4 partitions indexed',
    'connections: 5 open (uid 0: 2, uid 1000: 3)',
    'requests:    10 answered',
    '  open:      OK 7, NOT_FOUND 2',
    '  hello:     OK 1',
    'waiting:     2 opens waiting for a device: 18446744073709551615p2 (uid 1000, 1.5s), 1 more',
    'watchers:    1',
    'uevents:     2 overruns, the last at 2023-11-14T22:13:20.000Z, each answered by a full rescan; ' +
      'last full scan of sysfs at 2023-11-14T22:13:20.500Z (after the last overrun), 3.2 ms',
    '',
  ].join('\n'));
});

test('status(): a daemon without the "status" feature is UNSUPPORTED', async (t) => {
  const daemon = new FakeDaemon();
  t.teardown(() => daemon.close());
  const client = await connect({ socketPath: daemon.socketPath });
  t.teardown(() => client.close());
  const pending = client.status();
  const [hello, status] = await daemon.nextRequests(2);
  daemon.respond(hello!, { hello: { protocolVersion: 1, serverVersion: '0.0.9', features: ['open', 'list', 'watch', 'wait'] } });
  // What such a daemon answers: the unknown body decodes as none.
  daemon.respond(status!, { error: { code: ErrorCode.ERROR_CODE_INVALID_ARGUMENT, message: 'request has no body' } });
  const error = await t.throwsAsync(pending, { instanceOf: DiskseqError });
  t.is(error!.code, 'UNSUPPORTED');
  t.is(error!.message, 'diskseqd 0.0.9 does not serve status requests');
});

test('durations read like a clock', (t) => {
  t.is(formatDuration(0), '0ms');
  t.is(formatDuration(999), '999ms');
  t.is(formatDuration(4_250), '4.3s');
  t.is(formatDuration(125_000), '2m 5s');
  t.is(formatDuration(3 * 3600_000 + 7_000), '3h 0m 7s');
});
