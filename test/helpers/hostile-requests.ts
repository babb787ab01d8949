/**
 * Request/response helpers over a RawClient for the hostile tests: encode a Request with
 * the generated code, read the answer, and the one check every hostile test ends with —
 * the daemon still opens a device correctly.
 */
import { closeSync } from 'node:fs';
import Long from 'long';
import { native } from '../../native/index.js';
import { diskseqd } from '../../proto/gen/diskseqd.js';
import { encodeRequest } from '../../testkit/fuzz-packets.js';
import { readMarker } from '../../testkit/image.js';
import type { LoopFixture } from '../../testkit/loop.js';
import { RawClient } from '../../testkit/raw-client.js';

const wire = diskseqd.v1;

/** One decoded response and the fds that came with it (owned by the caller). */
export interface Answer {
  response: diskseqd.v1.Response;
  fds: number[];
}

/** Builds a Long uint64 for request fields. */
export function u64(value: bigint | number | string): Long {
  return Long.fromString(value.toString(), true);
}

/** The symbolic name of a response's error code ('NOT_FOUND'), or its body kind when not an Error. */
export function outcomeOf(response: diskseqd.v1.Response): string {
  if (response.body !== 'error') return response.body ?? '(no body)';
  return (wire.ErrorCode[response.error?.code ?? 0] ?? String(response.error?.code)).replace(/^ERROR_CODE_/, '');
}

/**
 * Reads the next packet as a Response; throws when the connection ended or nothing came
 * within `timeoutMs`.
 */
export async function readAnswer(client: RawClient, timeoutMs = 5000): Promise<Answer> {
  const item = await client.next(timeoutMs);
  if (item === 'timeout') throw new Error(`no response within ${timeoutMs} ms`);
  if (item.kind !== 'packet') throw new Error(`connection ended (${item.kind === 'error' ? item.code : 'eof'}) instead of a response`);
  try {
    return { response: wire.Response.decode(item.data), fds: item.fds };
  } catch (error) {
    for (const fd of item.fds) closeSync(fd);
    throw error;
  }
}

/** Sends one Request and reads one response packet. */
export async function ask(client: RawClient, request: diskseqd.v1.IRequest, timeoutMs = 5000): Promise<Answer> {
  const outcome = await client.send(encodeRequest(request));
  if (!outcome.sent) throw new Error(`send failed: ${outcome.code}`);
  return readAnswer(client, timeoutMs);
}

/**
 * Opens `loop` read-only through the daemon on a fresh connection and checks the fd: one
 * fd, BLKGETDISKSEQ = the loop's diskseq, and it reads the marker of the loop's image.
 * Returns what was wrong, or undefined when the open was correct.
 */
export async function checkValidOpen(socketPath: string, loop: LoopFixture): Promise<string | undefined> {
  const client = new RawClient(socketPath);
  try {
    const { response, fds } = await ask(client, { id: u64(424242), open: { diskseq: u64(loop.diskseq) } });
    try {
      if (response.body !== 'opened') return `expected Opened, got ${outcomeOf(response)}: ${JSON.stringify(response.toJSON())}`;
      if (Long.fromValue(response.id).toString() !== '424242') return `wrong id ${response.id}`;
      if (fds.length !== 1) return `Opened came with ${fds.length} fds`;
      const probe = native.probeFdSync(fds[0]!);
      if (probe.diskseq !== loop.diskseq) return `fd has diskseq ${probe.diskseq}, expected ${loop.diskseq}`;
      const marker = readMarker(fds[0]!, loop.image.diskMarkerOffset);
      if (marker !== loop.image.diskMarker) return `fd reads ${JSON.stringify(marker)}, not the loop's marker ${loop.image.diskMarker}`;
      return undefined;
    } finally {
      for (const fd of fds) closeSync(fd);
    }
  } finally {
    client.close();
  }
}
