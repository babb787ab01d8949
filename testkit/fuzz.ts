/**
 * The fuzz engine, shared by test/fuzz-protocol.test.ts and bench/fuzz.ts: several workers,
 * each on its own connection, send batches of packets and check what comes back.
 *
 * A batch is some Requests followed, usually, by one packet that must end the connection
 * (a violation or an empty packet). Every Request of a batch is answered before the
 * terminal packet is sent, so each packet is known to have been processed by the daemon
 * and each answer can be checked: the right id, a reply or Error that fits the request,
 * exactly one fd with Opened, the predicted code where the request decides it. The
 * terminal packet must then end the connection with nothing else sent; the worker
 * reconnects. Failures are collected, not thrown, so one run reports all it found.
 */
import { closeSync, openSync } from 'node:fs';
import Long from 'long';
import { diskseqd } from '../proto/gen/diskseqd.js';
import {
  ATTRIBUTE_KEYS, classify, encodeRequest, isSafe, MUTATIONS, mutate, oversized, Rng, validRequest,
  type Expectation, type FuzzTarget,
} from './fuzz-packets.js';
import { RawClient } from './raw-client.js';

const wire = diskseqd.v1;
const Code = wire.ErrorCode;

/** How a fuzz run is shaped. */
export interface FuzzOptions {
  socketPath: string;
  target: FuzzTarget;
  /** Packets to send in total. */
  packets: number;
  /** Concurrent connections. */
  workers: number;
  seed: number;
  /** How long one worker waits for an answer or the end of a connection. */
  answerTimeoutMs?: number;
  /**
   * Share of generated connection-ending packets (violations, empty packets) that are kept
   * (default 0.25); the rest are replaced. Random and mutated bytes fail to decode about
   * half the time, and each such packet costs a reconnect while exercising one code path;
   * decodable mutations reach the request validation behind it.
   */
  terminalKeep?: number;
}

/** What a fuzz run did and found. */
export interface FuzzStats {
  packets: number;
  requests: number;
  /** Violations sent (each must cost its connection and be logged once). */
  violations: number;
  empties: number;
  withFd: number;
  connections: number;
  responses: number;
  opened: number;
  codes: Record<string, number>;
  categories: Record<string, number>;
  failureCount: number;
  /** The first failures found (at most 20). */
  failures: string[];
  elapsedMs: number;
}

interface Packet {
  data: Buffer;
  /** 'null': /dev/null attached; 'self': the connection's own socket fd attached. */
  attach: 'none' | 'null' | 'self';
  category: string;
  exp: Expectation;
}

interface Pending {
  request: diskseqd.v1.Request;
  done: boolean;
}

/** Runs the fuzz; resolves with its statistics (failures included, never thrown). */
export async function runFuzz(options: FuzzOptions): Promise<FuzzStats> {
  const stats: FuzzStats = {
    packets: 0, requests: 0, violations: 0, empties: 0, withFd: 0, connections: 0, responses: 0, opened: 0,
    codes: {}, categories: {}, failureCount: 0, failures: [], elapsedMs: 0,
  };
  const devNull = openSync('/dev/null', 'r');
  const started = performance.now();
  try {
    const budget = { left: options.packets };
    await Promise.all(Array.from({ length: options.workers }, (_, w) =>
      worker(new Rng(options.seed + w * 1_000_003), options, budget, stats, devNull)));
  } finally {
    closeSync(devNull);
  }
  stats.elapsedMs = performance.now() - started;
  return stats;
}

function fail(stats: FuzzStats, message: string): void {
  stats.failureCount++;
  if (stats.failures.length < 20) stats.failures.push(message);
}

function nextPacket(rng: Rng, target: FuzzTarget, terminalKeep: number): Packet {
  for (;;) {
    const roll = rng.int(100);
    let data: Buffer;
    let category: string;
    let attach: Packet['attach'] = 'none';
    if (roll < 30) {
      data = encodeRequest(validRequest(rng, target));
      category = 'valid';
    } else if (roll < 78) {
      const kind = rng.pick(MUTATIONS);
      data = mutate(rng, encodeRequest(validRequest(rng, target)), kind);
      if (rng.chance(0.2)) data = mutate(rng, data, rng.pick(MUTATIONS));
      category = `mutated:${kind}`;
    } else if (roll < 88) {
      data = rng.bytes(rng.chance(0.8) ? 1 + rng.int(64) : 1 + rng.int(4096));
      category = 'random';
    } else if (roll < 93) {
      data = oversized(rng, target);
      category = 'oversized';
    } else if (roll < 95) {
      data = Buffer.alloc(0);
      category = 'empty';
    } else {
      data = rng.chance(0.5) ? encodeRequest(validRequest(rng, target)) : rng.bytes(rng.int(64));
      attach = rng.chance(0.7) ? 'null' : 'self';
      category = `fd:${attach}`;
    }
    const exp = classify(data, attach !== 'none');
    if (exp.kind === 'request' && !isSafe(exp.request, target)) continue;
    if (exp.kind !== 'request' && !rng.chance(terminalKeep)) continue;
    return { data, attach, category, exp };
  }
}

async function worker(rng: Rng, options: FuzzOptions, budget: { left: number }, stats: FuzzStats, devNull: number): Promise<void> {
  const timeout = options.answerTimeoutMs ?? 10_000;
  let client: RawClient | undefined;
  // Ids of watches on this connection that reached SYNCED: their live events may follow.
  let streams = new Set<string>();
  try {
    while (budget.left > 0) {
      if (client === undefined) {
        client = new RawClient(options.socketPath);
        streams = new Set();
        stats.connections++;
      }
      const batch = new Map<string, Pending>();
      const size = 1 + rng.int(24);
      let terminal: Packet | undefined;
      const toSend: Packet[] = [];
      while (toSend.length < size && budget.left > 0) {
        const packet = nextPacket(rng, options.target, options.terminalKeep ?? 0.25);
        if (packet.exp.kind === 'request') {
          const id = Long.fromValue(packet.exp.request.id).toUnsigned().toString();
          // Ids are unique within a batch, and never those of a watch still streaming on
          // this connection, so that every answer can be matched to its request.
          if (batch.has(id) || streams.has(id)) continue;
          batch.set(id, { request: packet.exp.request, done: false });
        }
        budget.left--;
        stats.packets++;
        stats.categories[packet.category] = (stats.categories[packet.category] ?? 0) + 1;
        if (packet.exp.kind !== 'request') {
          terminal = packet;
          break;
        }
        toSend.push(packet);
      }
      let alive = true;
      for (const packet of toSend) {
        stats.requests++;
        const outcome = await client.send(packet.data);
        if (!outcome.sent) {
          fail(stats, `send of a valid request (${packet.category}) failed with ${outcome.code}: the daemon dropped a connection that broke no rule`);
          alive = false;
          break;
        }
      }
      if (alive) alive = await collect(client, batch, streams, options.target, stats, timeout);
      if (alive && terminal !== undefined) await endWith(client, terminal, streams, stats, devNull, timeout);
      if (!alive || terminal !== undefined) {
        client.close();
        client = undefined;
      }
    }
  } finally {
    client?.close();
  }
}

/** Reads until every request of the batch is answered; false when the connection is unusable. */
async function collect(client: RawClient, batch: Map<string, Pending>, streams: Set<string>, target: FuzzTarget, stats: FuzzStats, timeout: number): Promise<boolean> {
  let open = batch.size;
  while (open > 0) {
    const item = await client.next(timeout);
    if (item === 'timeout' || item.kind !== 'packet') {
      const what = item === 'timeout' ? `no answer within ${timeout} ms` : `connection ended (${item.kind === 'error' ? item.code : 'eof'})`;
      const missing = [...batch.values()].filter((p) => !p.done).map((p) => JSON.stringify(p.request.toJSON())).slice(0, 3);
      fail(stats, `${what} with ${open} valid request(s) unanswered, e.g. ${missing.join('; ')}`);
      return false;
    }
    stats.responses++;
    for (const fd of item.fds) closeSync(fd);
    let response: diskseqd.v1.Response;
    try {
      response = wire.Response.decode(item.data);
    } catch (error) {
      fail(stats, `undecodable response (${item.data.length} bytes): ${(error as Error).message}`);
      return false;
    }
    const id = Long.fromValue(response.id).toUnsigned().toString();
    const pending = batch.get(id);
    if (pending === undefined && streams.has(id) && response.body === 'event') continue;
    if (pending === undefined) {
      fail(stats, `response for unknown id ${id}: ${JSON.stringify(response.toJSON())}`);
      continue;
    }
    if (pending.done) {
      // A watch keeps streaming live events after SYNCED; anything else is a duplicate.
      if (!(pending.request.body === 'watch' && response.body === 'event')) fail(stats, `second answer to id ${id}: ${JSON.stringify(response.toJSON())}`);
      continue;
    }
    const problem = check(pending.request, response, item.fds.length, target, stats);
    if (problem !== undefined) fail(stats, `${problem}; request ${JSON.stringify(pending.request.toJSON())}, response ${JSON.stringify(response.toJSON())}`);
    if (isFinal(response)) {
      if (response.body === 'event') streams.add(id);
      pending.done = true;
      open--;
    }
  }
  return true;
}

function isFinal(response: diskseqd.v1.Response): boolean {
  if (response.body === 'devices') return response.devices?.more !== true;
  if (response.body === 'event') return response.event?.kind === wire.EventKind.EVENT_KIND_SYNCED;
  return true;
}

/** What is wrong with `response` as an answer to `request`, or undefined. */
function check(request: diskseqd.v1.Request, response: diskseqd.v1.Response, fds: number, target: FuzzTarget, stats: FuzzStats): string | undefined {
  if (response.body === 'opened') stats.opened++;
  if (response.body === 'error') {
    const name = Code[response.error?.code ?? 0] ?? `code ${response.error?.code}`;
    stats.codes[name] = (stats.codes[name] ?? 0) + 1;
  }
  if (fds !== (response.body === 'opened' ? 1 : 0)) return `${response.body} came with ${fds} fds`;
  const predicted = predictCodes(request, target);
  if (predicted !== undefined) {
    if (response.body !== 'error' || !predicted.includes(response.error?.code ?? -1)) return `expected Error ${predicted.map((c) => Code[c]).join(' or ')}`;
    return undefined;
  }
  const fits: Record<string, string[]> = { hello: ['hello'], open: ['opened', 'error'], list: ['devices', 'error'], watch: ['event', 'error'], status: ['status'] };
  if (!(fits[request.body ?? '']?.includes(response.body ?? '') ?? false)) return `a ${response.body} does not answer a ${request.body}`;
  if (response.body === 'opened') {
    const got = BigInt(Long.fromValue(response.opened?.device?.diskseq ?? 0).toUnsigned().toString());
    if (got !== target.ownDiskseq) return `Opened reports diskseq ${got}`;
  }
  return undefined;
}

/** The Error codes the request itself decides, if any (docs/design.md, "Wire contract"). */
function predictCodes(request: diskseqd.v1.Request, target: FuzzTarget): number[] | undefined {
  switch (request.body) {
    case undefined:
      return [Code.ERROR_CODE_INVALID_ARGUMENT];
    case 'hello':
      return request.hello?.protocolVersion === 1 ? undefined : [Code.ERROR_CODE_UNSUPPORTED];
    case 'open': {
      const open = request.open!;
      const diskseq = BigInt(Long.fromValue(open.diskseq ?? 0).toUnsigned().toString());
      if (diskseq === 0n) return [Code.ERROR_CODE_INVALID_ARGUMENT];
      if (![0, 1, 2].includes(open.access ?? 0)) return [Code.ERROR_CODE_INVALID_ARGUMENT];
      if (Object.keys(open.expect ?? {}).some((k) => !ATTRIBUTE_KEYS.includes(k))) return [Code.ERROR_CODE_INVALID_ARGUMENT];
      // What does not exist: NOT_FOUND at once, or TIMEOUT when the request waited for it.
      const absent = (open.waitMs ?? 0) > 0 ? [Code.ERROR_CODE_NOT_FOUND, Code.ERROR_CODE_TIMEOUT] : [Code.ERROR_CODE_NOT_FOUND];
      if (diskseq !== target.ownDiskseq) return absent;
      if ((open.partition ?? 0) !== 0) return absent;
      return undefined;
    }
    default:
      return undefined;
  }
}

/** Sends the packet that must end the connection and checks that it does, with nothing sent back. */
async function endWith(client: RawClient, packet: Packet, streams: Set<string>, stats: FuzzStats, devNull: number, timeout: number): Promise<void> {
  const fd = packet.attach === 'null' ? devNull : packet.attach === 'self' ? client.fd : -1;
  if (packet.exp.kind === 'violation') stats.violations++;
  else stats.empties++;
  if (fd >= 0) stats.withFd++;
  const outcome = await client.send(packet.data, fd);
  if (!outcome.sent) {
    fail(stats, `send of a ${packet.category} packet failed with ${outcome.code} before the daemon saw a violation`);
    return;
  }
  let item = await client.next(timeout);
  while (item !== 'timeout' && item.kind === 'packet' && isStreamEvent(item.data, streams)) item = await client.next(timeout);
  if (item === 'timeout') fail(stats, `${packet.category} packet (${packet.exp.kind === 'violation' ? packet.exp.why : 'empty'}) did not end the connection within ${timeout} ms`);
  else if (item.kind === 'packet') {
    for (const received of item.fds) closeSync(received);
    fail(stats, `${packet.category} packet was answered instead of ending the connection: ${item.data.length} bytes`);
  }
}

/** Whether a packet is a live event of a watch already answered on this connection. */
function isStreamEvent(data: Buffer, streams: Set<string>): boolean {
  try {
    const response = wire.Response.decode(data);
    return response.body === 'event' && streams.has(Long.fromValue(response.id).toUnsigned().toString());
  } catch {
    return false;
  }
}
