/**
 * One non-root user cannot take every connection: beyond --max-connections-per-uid its
 * next connection gets RESOURCE_EXHAUSTED and is closed, while root and other users are
 * still served.
 */
import test from 'ava';
import { DaemonProcess } from '../testkit/daemon.js';
import { WireClient } from '../testkit/wire-client.js';
import { needsRoot } from './helpers/ci.js';
import { runPeerProgram } from './helpers/peer.js';

test('a non-root uid beyond its connection limit is refused; root and other uids are not', async (t) => {
  if (!needsRoot(t)) return;
  const daemon = await DaemonProcess.start({ worldAccessible: true, extraArgs: ['--max-connections-per-uid', '3'] }, t);
  /** Connects `count` times as uid = gid = `uid`, says hello on each; one outcome per connection. */
  const holdAs = (uid: number, count: number): Promise<string[]> =>
    runPeerProgram<string[]>({ uid, gid: uid }, 'peer-connection-holder.js', [daemon.socketPath, String(count)], { needs: [daemon.socketPath] });
  t.deepEqual(await holdAs(65534, 5), ['served', 'served', 'served', 'ERROR_CODE_RESOURCE_EXHAUSTED', 'ERROR_CODE_RESOURCE_EXHAUSTED']);
  // Another user, and root, while the first user's connections are gone again.
  t.deepEqual(await holdAs(65533, 3), ['served', 'served', 'served']);
  const root = WireClient.connect(daemon.socketPath);
  t.teardown(() => root.close());
  t.is((await root.request({ hello: { protocolVersion: 1 } })).response.body, 'hello');
  t.is(daemon.logs.filter((line) => line.msg === 'connection refused: limit reached').length, 2);
});
