/**
 * A Varlink client that runs as another user without reading the checkout as that user:
 * started as root, it loads every module it needs, drops to the uid/gid given (no
 * supplementary groups) and only then connects, so the daemon sees that user in
 * SO_PEERCRED. It makes the calls given, and prints one JSON line: its credentials, and
 * per call the error or the reply with what it checked on the fd (diskseq, access mode).
 *
 * Usage: node varlink-peer-main.js '<VarlinkPeerScript JSON>'
 */
import { native } from '../../native/index.js';
import { VarlinkClient } from '../../testkit/varlink-client.js';
import { accessModeOf } from './varlink.js';

/** What the peer is asked to do. */
export interface VarlinkPeerScript {
  socket: string;
  uid: number;
  gid: number;
  calls: { method: string; parameters?: Record<string, unknown>; more?: boolean }[];
}

/** One call's outcome. */
export interface VarlinkPeerResult {
  error?: string;
  parameters: Record<string, unknown>[];
  /** For a reply with an fd: its BLKGETDISKSEQ and access mode. */
  fdDiskseq?: string | null;
  fdAccess?: string;
}

async function main(): Promise<void> {
  const script = JSON.parse(process.argv[2]!) as VarlinkPeerScript;
  process.setgroups!([]);
  process.setgid!(script.gid);
  process.setuid!(script.uid);
  const client = VarlinkClient.connect(script.socket);
  const results: VarlinkPeerResult[] = [];
  try {
    for (const call of script.calls) {
      const replies = await client.call(call.method, call.parameters, { more: call.more });
      const last = replies[replies.length - 1]!;
      const result: VarlinkPeerResult = { error: last.error, parameters: replies.map((r) => r.parameters) };
      const fd = last.fds[0];
      if (fd !== undefined) {
        result.fdDiskseq = native.probeFdSync(fd).diskseq?.toString() ?? null;
        result.fdAccess = accessModeOf(fd);
      }
      for (const r of replies) for (const passed of r.fds) native.close(passed);
      results.push(result);
    }
  } finally {
    client.close();
  }
  console.log(JSON.stringify({ uid: process.getuid!(), gid: process.getgid!(), results }));
}

main().catch((error: unknown) => {
  console.log(JSON.stringify({ failure: (error as Error).stack ?? String(error) }));
  process.exitCode = 1;
});
