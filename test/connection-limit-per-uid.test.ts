/**
 * One non-root user cannot take every connection: beyond --max-connections-per-uid its
 * next connection gets RESOURCE_EXHAUSTED and is closed, while root and other users are
 * still served.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { needsRoot } from './helpers/ci.js';
import { DaemonProcess } from '../testkit/daemon.js';
import { REPO_ROOT } from '../testkit/repo.js';
import { WireClient } from '../testkit/wire-client.js';

/** Connects `count` times as `uid`, says hello on each, prints one outcome per connection. */
const HOLDER = `
import { native } from '${join(REPO_ROOT, 'dist/native/index.js')}';
import { wire } from '${join(REPO_ROOT, 'dist/proto/contract.js')}';
import Long from '${join(REPO_ROOT, 'node_modules/long/index.js')}';
const [socket, count] = [process.argv[2], Number(process.argv[3])];
const outcomes = [];
const fds = [];
for (let i = 0; i < count; i++) {
  const fd = native.connectSeqpacket(socket, false);
  fds.push(fd);
  try {
    native.send(fd, Buffer.from(wire.Request.encode({ id: Long.fromNumber(i + 1, true), hello: { protocolVersion: 1 } }).finish()), -1);
  } catch (error) {
    // A refusal may have closed the connection before the hello: its answer is still there.
    if (error.code !== 'EPIPE') throw error;
  }
  const buffer = Buffer.alloc(65536);
  let got;
  // recv never blocks (MSG_DONTWAIT): poll, sleeping 1 ms between tries. A refusal that
  // crossed our hello reports ECONNRESET once; the refusal itself is still there to read.
  for (;;) {
    try {
      got = native.recv(fd, buffer);
    } catch (error) {
      if (error.code !== 'ECONNRESET') throw error;
      continue;
    }
    if (got !== null) break;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
  }
  const response = wire.Response.decode(buffer.subarray(0, got.bytes));
  outcomes.push(response.body === 'hello' ? 'served' : wire.ErrorCode[response.error.code]);
}
console.log(JSON.stringify(outcomes));
`;

test('a non-root uid beyond its connection limit is refused; root and other uids are not', async (t) => {
  if (!needsRoot(t)) return;
  const daemon = await DaemonProcess.start({ worldAccessible: true, extraArgs: ['--max-connections-per-uid', '3'] }, t);
  const script = join(daemon.dir, 'holder.mjs');
  writeFileSync(script, HOLDER, { mode: 0o644 });
  const holdAs = (uid: number, count: number): string[] => {
    const run = spawnSync('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--', process.execPath, script, daemon.socketPath, String(count)], { encoding: 'utf8' });
    t.is(run.status, 0, run.stderr);
    return JSON.parse(run.stdout) as string[];
  };
  t.deepEqual(holdAs(65534, 5), ['served', 'served', 'served', 'ERROR_CODE_RESOURCE_EXHAUSTED', 'ERROR_CODE_RESOURCE_EXHAUSTED']);
  // Another user, and root, while the first user's connections are gone again.
  t.deepEqual(holdAs(65533, 3), ['served', 'served', 'served']);
  const root = WireClient.connect(daemon.socketPath);
  t.teardown(() => root.close());
  t.is((await root.request({ hello: { protocolVersion: 1 } })).response.body, 'hello');
  t.is(daemon.logs.filter((line) => line.msg === 'connection refused: limit reached').length, 2);
});
