/**
 * The Varlink fuzz engine (test/varlink-fuzz.test.ts): several workers, each on its own
 * connection, send batches of messages — valid calls, calls with wrong or unknown
 * parameters, unknown methods and interfaces, oneway calls, Acquires of the test's own
 * disk (each must bring one fd of that disk) and of names that are no disk instance here —
 * pipelined, sometimes cut into random pieces, and end a batch now and then with a
 * violation (bytes that are no call, a message over the bound, an fd sent along), which
 * must cost exactly that connection. Every reply is checked against what its call allows.
 * Acquire names are only ever the test's own disk or names that cannot resolve to a disk
 * (above every diskseq on the machine, or not numeric): no other device is ever opened.
 */
import { openSync } from 'node:fs';
import { native } from '../native/index.js';
import { Rng } from './fuzz-packets.js';
import { sleep } from './cleanup.js';
import { VarlinkClient, type VarlinkReply } from './varlink-client.js';

/** What the fuzz aims at. */
export interface VarlinkFuzzTarget {
  path: string;
  /** The test's own loop device: Acquire of it must succeed. */
  ownDiskseq: bigint;
  /** No disk has a diskseq at or above this. */
  foreignFloor: bigint;
  /** A readable file whose fds the violators send. */
  fdSource: string;
  /** The daemon's longest message. */
  maxMessageBytes: number;
}

/** What a run did and found. */
export interface VarlinkFuzzStats {
  messages: number;
  /** Calls the daemon took (each gets one audit line), oneway ones included. */
  calls: number;
  oneway: number;
  violations: number;
  withFd: number;
  split: number;
  connections: number;
  acquired: number;
  errors: Record<string, number>;
  failures: string[];
  failureCount: number;
  elapsedMs: number;
}

const P = 'io.systemd.StorageProvider';
const S = 'org.varlink.service';
/** Error replies some call of the fuzz may get. */
const ALLOWED_ERRORS = new Set([
  `${P}.NoSuchVolume`, `${P}.NoSuchTemplate`, `${P}.TypeNotSupported`, `${P}.CreateNotSupported`,
  `${S}.InvalidParameter`, `${S}.MethodNotFound`, `${S}.InterfaceNotFound`, `${S}.ExpectedMore`,
]);

interface FuzzCall {
  text: string;
  oneway: boolean;
  ownAcquire: boolean;
}

/** Runs the fuzz; failures are collected, not thrown. */
export async function runVarlinkFuzz(target: VarlinkFuzzTarget, messages: number, workers: number, seed: number): Promise<VarlinkFuzzStats> {
  const stats: VarlinkFuzzStats = {
    messages: 0, calls: 0, oneway: 0, violations: 0, withFd: 0, split: 0, connections: 0, acquired: 0, errors: {}, failures: [], failureCount: 0, elapsedMs: 0,
  };
  const fail = (why: string): void => {
    stats.failureCount++;
    if (stats.failures.length < 20) stats.failures.push(why);
  };
  const started = Date.now();
  await Promise.all(Array.from({ length: workers }, (_, w) => worker(target, new Rng(seed + w * 7919), () => stats.messages < messages, stats, fail)));
  stats.elapsedMs = Date.now() - started;
  return stats;
}

async function worker(target: VarlinkFuzzTarget, rng: Rng, more: () => boolean, stats: VarlinkFuzzStats, fail: (why: string) => void): Promise<void> {
  while (more()) {
    const client = VarlinkClient.connect(target.path);
    stats.connections++;
    try {
      for (let batches = 0; more() && batches < 40; batches++) {
        const calls = Array.from({ length: 1 + rng.int(4) }, () => generateCall(rng, target));
        const violation = rng.chance(0.08) ? generateViolation(rng, target) : undefined;
        stats.messages += calls.length + (violation ? 1 : 0);
        const answered = calls.filter((c) => !c.oneway);
        const pending = client.expectReplies(answered.length);
        const bytes = Buffer.from(calls.map((c) => c.text).join(''));
        if (rng.chance(0.2)) {
          stats.split++;
          for (let at = 0; at < bytes.length;) {
            const piece = 1 + rng.int(Math.max(1, bytes.length - at));
            client.sendRaw(bytes.subarray(at, at + piece));
            at += piece;
            await sleep(0);
          }
        } else {
          client.sendRaw(bytes);
        }
        stats.calls += calls.length;
        stats.oneway += calls.length - answered.length;
        let replies: VarlinkReply[][];
        try {
          replies = await withTimeout(pending, 10_000);
        } catch (error) {
          fail(`a batch of valid calls was not answered: ${(error as Error).message}; ${calls.map((c) => c.text).join(' ')}`);
          return;
        }
        answered.forEach((call, i) => check(call, replies[i]!, target, stats, fail));
        if (violation !== undefined) {
          stats.violations++;
          if (violation.fd) stats.withFd++;
          client.sendRaw(violation.bytes, violation.fd ? openSync(target.fdSource, 'r') : -1);
          try {
            await withTimeout(client.whenClosed(), 10_000);
          } catch {
            fail(`a violation did not end the connection: ${violation.bytes.subarray(0, 80).toString()}`);
          }
          break;
        }
      }
    } finally {
      client.close();
    }
  }
}

function check(call: FuzzCall, replies: VarlinkReply[], target: VarlinkFuzzTarget, stats: VarlinkFuzzStats, fail: (why: string) => void): void {
  const last = replies[replies.length - 1]!;
  for (const reply of replies) {
    if (reply.error !== undefined) {
      stats.errors[reply.error] = (stats.errors[reply.error] ?? 0) + 1;
      if (!ALLOWED_ERRORS.has(reply.error)) fail(`unexpected error ${reply.error} ${JSON.stringify(reply.parameters)} for ${call.text}`);
    }
    if (reply !== last && reply.error !== undefined) fail(`an error in the middle of a stream for ${call.text}`);
  }
  const fds = replies.flatMap((r) => r.fds);
  if (call.ownAcquire && last.error === undefined) {
    stats.acquired++;
    if (fds.length !== 1) fail(`own Acquire brought ${fds.length} fds`);
    else if (native.probeFdSync(fds[0]!).diskseq !== target.ownDiskseq) fail('own Acquire brought another disk');
  } else if (call.ownAcquire && !/InvalidParameter|CreateNotSupported|NoSuchTemplate|TypeNotSupported/.test(last.error!)) {
    fail(`own Acquire refused: ${last.error} for ${call.text}`);
  } else if (fds.length > 0) {
    fail(`${fds.length} fds with ${call.text}`);
  }
  for (const fd of fds) native.close(fd);
}

/** One call (NUL-terminated), valid or wrong in its parameters, never a protocol violation. */
function generateCall(rng: Rng, target: VarlinkFuzzTarget): FuzzCall {
  const own = `${target.ownDiskseq}`;
  const oneway = rng.chance(0.08);
  const pick = <T>(items: T[]): T => items[rng.int(items.length)]!;
  const junk = (): unknown => pick([null, true, 0, -1, 1.5, 'x', '', [], {}, [1], { a: 1 }, 'loop0', '*']);
  const foreignName = (): string => pick([
    `${target.foreignFloor + BigInt(rng.int(1_000_000))}`, `${target.foreignFloor + BigInt(rng.int(1000))}-part${1 + rng.int(9)}`,
    `${own}-part${2 + rng.int(60)}`, 'loop0', '/dev/loop0', `${own}p1`, `0${own}`, `${own}-part0`, 'x'.repeat(rng.int(200)), `${own}\t`, '',
  ]);
  let method: string;
  let parameters: Record<string, unknown> | null | undefined;
  let more = false;
  let ownAcquire = false;
  switch (rng.int(9)) {
    case 0:
      method = `${S}.GetInfo`;
      parameters = pick([undefined, null, {}]);
      break;
    case 1:
      method = `${S}.GetInterfaceDescription`;
      parameters = { interface: pick([P, S, 'com.example.X', '', junk()]) };
      break;
    case 2:
    case 3:
      method = `${P}.Acquire`;
      ownAcquire = true;
      parameters = { name: own, readOnly: pick([true, true, null, undefined]) };
      if (rng.chance(0.3)) parameters[pick(['createMode', 'template', 'requestAs', 'createSizeBytes', 'allowInteractiveAuthentication'])] =
        pick(['any', 'open', 'new', 'blk', 'reg', '', 'tpl', 4096, -5, false, junk()]);
      if (parameters.readOnly === undefined) delete parameters.readOnly;
      break;
    case 4:
      method = `${P}.Acquire`;
      parameters = { name: rng.chance(0.9) ? foreignName() : junk(), readOnly: true };
      break;
    case 5:
      method = `${P}.ListVolumes`;
      more = rng.chance(0.8);
      parameters = { matchName: pick([`${own}*`, own, 'loop*', '*[', `${target.foreignFloor}`, junk()]) };
      break;
    case 6:
      method = `${P}.ListTemplates`;
      more = rng.chance(0.5);
      parameters = {};
      break;
    case 7:
      method = pick([`${P}.Resize`, `${S}.Nope`, 'com.example.Thing.Do', 'NoDots', '', `${P}.`, '.Acquire']);
      parameters = {};
      break;
    default:
      method = `${P}.Acquire`;
      parameters = { name: foreignName(), [pick(['bogus', 'diskseq', 'id', 'readonly'])]: junk() };
  }
  if (oneway) more = false;
  if (ownAcquire && oneway) ownAcquire = false;
  const message: Record<string, unknown> = { method };
  if (parameters !== undefined) message.parameters = parameters;
  if (more) message.more = true;
  if (oneway) message.oneway = true;
  return { text: `${JSON.stringify(message)}\0`, oneway, ownAcquire };
}

/** A message that must end the connection. */
function generateViolation(rng: Rng, target: VarlinkFuzzTarget): { bytes: Buffer; fd: boolean } {
  const random = Buffer.from(Array.from({ length: 1 + rng.int(64) }, () => 1 + rng.int(255)));
  const choices: (() => { bytes: Buffer; fd: boolean })[] = [
    () => ({ bytes: Buffer.concat([random, Buffer.from([0])]), fd: false }),
    () => ({ bytes: Buffer.from('{"method":"org.varlink.service.GetInfo"\0'), fd: false }),
    () => ({ bytes: Buffer.from(`${JSON.stringify(rng.chance(0.5) ? [1, 'a'] : 'x')}\0`), fd: false }),
    () => ({ bytes: Buffer.from('{"method":"org.varlink.service.GetInfo","x":1}\0'), fd: false }),
    () => ({ bytes: Buffer.from('{"method":"org.varlink.service.GetInfo","more":true,"oneway":true}\0'), fd: false }),
    () => ({ bytes: Buffer.alloc(target.maxMessageBytes + 1 + rng.int(1000), 0x61), fd: false }),
    () => ({ bytes: Buffer.from('{"method":"org.varlink.service.GetInfo"}\0'), fd: true }),
  ];
  return choices[rng.int(choices.length)]!();
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}

