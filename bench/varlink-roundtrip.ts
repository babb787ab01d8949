/**
 * The Acquire round trip over Varlink (io.systemd.StorageProvider.Acquire, readOnly true,
 * one call at a time) — request sent -> reply and fd in hand, the fd checked and closed
 * after timing — to set beside the protobuf open round trip measured in the same run on
 * the same daemon and loop device.
 */
import { performance } from 'node:perf_hooks';
import { native } from '../native/index.js';
import type { VarlinkClient } from '../testkit/varlink-client.js';
import { summarise, type Series } from './open-roundtrip.js';

/** n sequential Acquires of `diskseq` (whole disk, read-only). */
export async function varlinkRoundTrip(client: VarlinkClient, diskseq: bigint, n: number): Promise<Series> {
  const samples: number[] = [];
  const parameters = { name: `${diskseq}`, readOnly: true };
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const reply = await client.call1('io.systemd.StorageProvider.Acquire', parameters);
    const elapsed = (performance.now() - t0) * 1000;
    const fd = reply.fds[0];
    if (reply.error !== undefined || fd === undefined) throw new Error(`Acquire failed: ${reply.error} ${JSON.stringify(reply.parameters)}`);
    if (native.probeFdSync(fd).diskseq !== diskseq) throw new Error('Acquire brought another disk');
    native.close(fd);
    samples.push(elapsed);
  }
  return summarise('Varlink Acquire round trip, 1 client, sequential', samples);
}
