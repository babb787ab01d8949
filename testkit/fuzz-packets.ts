/**
 * Packet generators for the fuzz: valid Requests built with the generated protobuf code
 * (including valid-but-odd ones), mutations of them, random bytes, empty and oversized
 * packets, and packets that carry an fd. Each packet is classified the way the daemon
 * must treat it, by decoding it locally with the same generated code the daemon uses:
 * a Request the daemon must answer, or a violation that must cost the connection.
 *
 * Everything is driven by a seeded PRNG so a failing run can be replayed from its seed.
 */
import { readdirSync, readFileSync } from 'node:fs';
import Long from 'long';
import { diskseqd } from '../proto/gen/diskseqd.js';
import { malformation } from '../src/wire-check.js';

const wire = diskseqd.v1;

/** Largest request the daemon accepts (docs/design.md, "Wire contract"). */
export const MAX_REQUEST_BYTES = 4096;

/** The attribute keys an `expect` may name (docs/design.md, "Wire contract"). */
export const ATTRIBUTE_KEYS = [
  'size', 'ro', 'removable', 'partition', 'start', 'loop/backing_file', 'loop/offset', 'loop/sizelimit',
  'loop/autoclear', 'loop/partscan', 'dm/name', 'dm/uuid', 'wwid', 'device/serial', 'device/model',
  'device/vendor', 'queue/logical_block_size',
];

/** xorshift128+: small, fast, seedable; good enough to pick mutations. */
export class Rng {
  private s0: bigint;
  private s1: bigint;
  constructor(readonly seed: number) {
    this.s0 = BigInt(seed >>> 0) * 0x9e3779b97f4a7c15n & 0xffffffffffffffffn | 1n;
    this.s1 = BigInt((seed * 7919) >>> 0) * 0xbf58476d1ce4e5b9n & 0xffffffffffffffffn | 2n;
  }
  private nextU64(): bigint {
    let x = this.s0;
    const y = this.s1;
    this.s0 = y;
    x ^= (x << 23n) & 0xffffffffffffffffn;
    this.s1 = x ^ y ^ (x >> 17n) ^ (y >> 26n);
    return (this.s1 + y) & 0xffffffffffffffffn;
  }
  /** A float in [0, 1). */
  float(): number {
    return Number(this.nextU64() >> 11n) / 2 ** 53;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }
  /** True with probability p. */
  chance(p: number): boolean {
    return this.float() < p;
  }
  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  /** A uint64 spread over all magnitudes. */
  u64(): bigint {
    return this.nextU64() >> BigInt(this.int(64));
  }
  /** n random bytes. */
  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}

/** What the fuzz knows about the machine, to build requests and keep them off others' devices. */
export interface FuzzTarget {
  /** diskseq of the loop device the test attached (opens of it are allowed). */
  ownDiskseq: bigint;
  /**
   * Opens of any other diskseq must be at or above this (far above every device that exists
   * or will appear during the run), or 0: a fuzzed open never touches a device the test
   * did not create.
   */
  foreignFloor: bigint;
}

/**
 * The highest diskseq of any block device now (sysfs). Fuzzed opens of other diskseqs stay
 * far above it, so they never touch a device the test did not create.
 */
export function highestDiskseqNow(): bigint {
  let highest = 0n;
  for (const name of readdirSync('/sys/class/block')) {
    try {
      const value = BigInt(readFileSync(`/sys/class/block/${name}/diskseq`, 'utf8').trim());
      if (value > highest) highest = value;
    } catch {
      // Partitions have no diskseq file; devices can vanish while we read.
    }
  }
  return highest;
}

const u64 = (v: bigint): Long => Long.fromString(v.toString(), true);

/** A valid Request, sometimes with odd values the daemon must answer with an Error. */
export function validRequest(rng: Rng, target: FuzzTarget): diskseqd.v1.IRequest {
  const id = u64(rng.chance(0.2) ? rng.u64() : BigInt(rng.int(1 << 30)));
  const roll = rng.int(100);
  if (roll < 12) {
    const odd = rng.chance(0.3);
    return { id, hello: { protocolVersion: odd ? rng.pick([0, 2, 3, 255, 0xffffffff]) : 1, clientName: rng.chance(0.5) ? 'fuzz' : 'x'.repeat(rng.int(300)) } };
  }
  // A list, and the start of a watch, read every attribute of every device: kept rare so
  // the run stays short.
  if (roll < 13) return { id, list: { includePartitions: rng.chance(0.5) } };
  if (roll < 14) return { id, watch: {} };
  if (roll < 18) return { id }; // no body
  return { id, open: openRequest(rng, target) };
}

function openRequest(rng: Rng, target: FuzzTarget): diskseqd.v1.IOpenRequest {
  // A diskseq above every one the daemon has seen makes it wait for a (rate-limited)
  // rescan before answering NOT_FOUND; kept to a few percent so batches rarely wait.
  const which = rng.int(100);
  const diskseq = which < 85 ? target.ownDiskseq
    : which < 95 ? 0n
      : which < 98 ? target.foreignFloor + rng.u64() % (0xffffffffffffffffn - target.foreignFloor)
        : 0xffffffffffffffffn;
  const expect: Record<string, string> = {};
  if (rng.chance(0.3)) {
    for (let i = rng.int(4); i >= 0; i--) {
      const key = rng.chance(0.8) ? rng.pick(ATTRIBUTE_KEYS) : rng.pick(['../../etc/shadow', 'uevent', '', 'dev', 'size/../ro', '\u0000', 'x'.repeat(200)]);
      expect[key] = rng.pick(['0', '1', '2048', '', 'junk\n']);
    }
  }
  return {
    diskseq: u64(diskseq),
    partition: rng.chance(0.8) ? 0 : rng.pick([1, 2, 127, 65535, 0x7fffffff, 0xffffffff]),
    access: rng.chance(0.85) ? rng.int(3) : rng.pick([3, 7, 1000, -1, 0x7fffffff]),
    exclusive: rng.chance(0.2),
    direct: rng.chance(0.2),
    nonblock: rng.chance(0.2),
    sync: rng.chance(0.1),
    dsync: rng.chance(0.1),
    waitMs: rng.chance(0.1) ? 1 + rng.int(MAX_FUZZ_WAIT_MS) : 0,
    expect,
  };
}

/** Encodes a Request with the generated code. */
export function encodeRequest(request: diskseqd.v1.IRequest): Buffer {
  const bytes = wire.Request.encode(request).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A varint of `value`, padded with `overlong` extra zero-valued continuation bytes. */
export function varint(value: bigint, overlong = 0): Buffer {
  const out: number[] = [];
  do {
    out.push(Number(value & 0x7fn) | 0x80);
    value >>= 7n;
  } while (value > 0n);
  for (let i = 0; i < overlong; i++) out.push(0x80);
  out[out.length - 1]! &= 0x7f;
  return Buffer.from(out);
}

/** The mutations the fuzz applies, by name (for the statistics). */
export const MUTATIONS = ['bitflip', 'truncate', 'extend', 'tag', 'huge-varint', 'splice', 'duplicate', 'length'] as const;
/** One of MUTATIONS. */
export type Mutation = typeof MUTATIONS[number];

/** Applies one mutation to a valid encoding. */
export function mutate(rng: Rng, data: Buffer, kind: Mutation): Buffer {
  const at = (): number => rng.int(Math.max(1, data.length));
  switch (kind) {
    case 'bitflip': {
      const out = Buffer.from(data);
      for (let i = 1 + rng.int(4); i > 0 && out.length > 0; i--) out[at()]! ^= 1 << rng.int(8);
      return out;
    }
    case 'truncate':
      return data.subarray(0, at());
    case 'extend':
      return Buffer.concat([data, rng.bytes(1 + rng.int(40))]);
    case 'tag': {
      // A field with a random number and wire type, or a rewrite of a byte's low 3 bits.
      if (rng.chance(0.5) && data.length > 0) {
        const out = Buffer.from(data);
        const i = at();
        out[i] = (out[i]! & ~7) | rng.int(8);
        return out;
      }
      const field = BigInt(rng.pick([0, 1, 2, 3, 4, 5, 6, 15, 16, 19000, 536870911, rng.int(1 << 29)]));
      const wireType = BigInt(rng.int(8));
      const payload = wireType === 2n ? Buffer.concat([varint(BigInt(rng.int(64))), rng.bytes(rng.int(64))]) : rng.bytes(rng.int(10));
      return Buffer.concat([data, varint((field << 3n) | wireType), payload]);
    }
    case 'huge-varint': {
      // A 10-byte maximal varint, an overlong one, or an unterminated one, as a field value.
      const tag = rng.pick([0x08, 0x10, 0x1a, 0x22, 0x18]);
      const forms = [varint(0xffffffffffffffffn), varint(1n, 9), Buffer.alloc(11, 0xff), Buffer.alloc(10, 0x80)];
      return Buffer.concat([data, Buffer.from([tag]), rng.pick(forms)]);
    }
    case 'splice': {
      const i = at();
      return Buffer.concat([data.subarray(0, i), rng.bytes(rng.int(8)), data.subarray(i)]);
    }
    case 'duplicate':
      return Buffer.concat([data, data]);
    case 'length': {
      // Rewrite a byte that may be a length prefix to something larger than what follows.
      const out = Buffer.from(data);
      if (out.length > 0) out[at()] = rng.pick([0x7f, 0xff, 0x01, 0x00, out.length + 1]);
      return out;
    }
  }
}

/** How the daemon must treat a packet. */
export type Expectation =
  /** A Request: answered (Error or a reply), the connection stays. */
  | { kind: 'request'; request: diskseqd.v1.Request }
  /** Truncated at 4096, undecodable or carrying an fd: the connection is dropped, logged once. */
  | { kind: 'violation'; why: string }
  /** Zero bytes: indistinguishable from end-of-file on SEQPACKET; the connection ends. */
  | { kind: 'empty' };

/** Classifies `data` (sent with an fd when withFd) by decoding it as the daemon will. */
export function classify(data: Buffer, withFd: boolean): Expectation {
  if (data.length === 0 && !withFd) return { kind: 'empty' };
  if (withFd) return { kind: 'violation', why: 'fd attached' };
  if (data.length > MAX_REQUEST_BYTES) return { kind: 'violation', why: 'oversized' };
  // protobufjs decodes some packets protobuf forbids (field 0, group or reserved wire
  // types, a known field with the wrong wire type); the daemon drops those too.
  // test/wire-check.test.ts checks that rule on its own, against the .proto.
  const malformed = malformation(data);
  if (malformed !== undefined) return { kind: 'violation', why: `malformed: ${malformed}` };
  try {
    return { kind: 'request', request: wire.Request.decode(data) };
  } catch (error) {
    return { kind: 'violation', why: `undecodable: ${(error as Error).message}` };
  }
}

/** Longest wait_ms a fuzzed open may carry (unless it opens the test's own whole disk). */
export const MAX_FUZZ_WAIT_MS = 20;

/**
 * Whether a decoded request is safe to send: an open must name the test's own device, 0,
 * or a diskseq at or above the foreign floor; and it must not wait long (a wait for
 * something that never appears holds the request until wait_ms, up to --max-wait-ms).
 */
export function isSafe(request: diskseqd.v1.Request, target: FuzzTarget): boolean {
  if (request.body !== 'open' || request.open === null || request.open === undefined) return true;
  const diskseq = BigInt(Long.fromValue(request.open.diskseq ?? 0).toUnsigned().toString());
  const answersAtOnce = diskseq === target.ownDiskseq && (request.open.partition ?? 0) === 0;
  if (!answersAtOnce && (request.open.waitMs ?? 0) > MAX_FUZZ_WAIT_MS) return false;
  return diskseq === 0n || diskseq === target.ownDiskseq || diskseq >= target.foreignFloor;
}

/** A random oversized packet: a valid Request padded with an unknown field past 4096 bytes. */
export function oversized(rng: Rng, target: FuzzTarget): Buffer {
  const base = encodeRequest(validRequest(rng, target));
  const size = rng.pick([MAX_REQUEST_BYTES + 1, MAX_REQUEST_BYTES + 2 + rng.int(4000), 65536, 100_000]);
  for (let prefix = 1; prefix <= 3; prefix++) {
    const pad = size - base.length - 1 - prefix;
    if (pad < 0 || varint(BigInt(pad)).length !== prefix) continue;
    // Field 15, wire type 2: an unknown length-delimited field, valid protobuf.
    return Buffer.concat([base, Buffer.from([0x7a]), varint(BigInt(pad)), Buffer.alloc(pad, 0x41)]);
  }
  throw new Error(`cannot pad ${base.length} bytes to ${size}`);
}
