/**
 * Varlink messages (varlink.org, and systemd's sd-varlink where it is stricter): parsing
 * one call, encoding replies and errors. A call is a JSON object with `method` (a string
 * "interface.Method"), `parameters` (an object, null or absent) and the booleans `more`,
 * `oneway` and `upgrade`, at most one of them true. Anything else — bytes that are not
 * UTF-8 JSON, a non-object, an unknown key, a flag that is not a boolean — is a protocol
 * violation that costs the connection, as sd-varlink treats it.
 */
import { isPlainObject } from './idl.js';

/**
 * The longest message a client may send, its NUL not counted. The longest valid call —
 * an Acquire or ListVolumes with a long name or glob — is a few hundred bytes; sd-varlink
 * allows 16 MiB. 16 KiB keeps what a thousand connections can make the daemon buffer
 * at 16 MiB. A longer message costs the client its connection.
 */
export const MAX_MESSAGE_BYTES = 16 * 1024;

/** A message the front-end cannot take at all: the connection is dropped. */
export class ProtocolViolation extends Error {
  override name = 'ProtocolViolation';
}

/**
 * An error reply: a qualified error name and its parameters, and — when it translates a
 * diskseqd refusal — that refusal's ErrorCode name, for the audit line.
 */
export class VarlinkError extends Error {
  constructor(readonly error: string, readonly parameters: Record<string, unknown> = {}, readonly code?: string) {
    super(error);
    this.name = 'VarlinkError';
  }
}

/** One parsed call. */
export interface VarlinkCall {
  /** As sent, e.g. "io.systemd.StorageProvider.Acquire". */
  method: string;
  /** The part before the last dot ('' when there is none), and the part after it. */
  interfaceName: string;
  memberName: string;
  parameters: Record<string, unknown>;
  more: boolean;
  oneway: boolean;
  upgrade: boolean;
}

const KEYS = new Set(['method', 'parameters', 'more', 'oneway', 'upgrade']);
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Parses one message (without its NUL); throws ProtocolViolation. */
export function parseCall(bytes: Buffer): VarlinkCall {
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(bytes));
  } catch (error) {
    throw new ProtocolViolation(`not a JSON message: ${(error as Error).message}`);
  }
  if (!isPlainObject(value)) throw new ProtocolViolation('message is not a JSON object');
  for (const key of Object.keys(value)) if (!KEYS.has(key)) throw new ProtocolViolation(`unknown key ${JSON.stringify(key)} in a call`);
  const { method, parameters } = value;
  if (typeof method !== 'string') throw new ProtocolViolation('call without a method string');
  if (parameters !== undefined && parameters !== null && !isPlainObject(parameters)) {
    throw new ProtocolViolation('parameters is neither an object nor null');
  }
  const flags = ['more', 'oneway', 'upgrade'].map((key) => {
    const flag = value[key];
    if (flag !== undefined && typeof flag !== 'boolean') throw new ProtocolViolation(`${key} is not a boolean`);
    return flag === true;
  });
  if (flags.filter(Boolean).length > 1) throw new ProtocolViolation('more, oneway and upgrade exclude each other');
  const dot = method.lastIndexOf('.');
  return {
    method,
    interfaceName: dot < 0 ? '' : method.slice(0, dot),
    memberName: method.slice(dot + 1),
    parameters: (parameters ?? {}) as Record<string, unknown>,
    more: flags[0]!,
    oneway: flags[1]!,
    upgrade: flags[2]!,
  };
}

/** A reply, NUL-terminated; `continues` for every reply of a stream but its last. */
export function encodeReply(parameters: Record<string, unknown>, continues = false): Buffer {
  return frame(continues ? { parameters, continues: true } : { parameters });
}

/** An error reply, NUL-terminated. */
export function encodeError(error: VarlinkError): Buffer {
  return frame({ error: error.error, parameters: error.parameters });
}

function frame(message: object): Buffer {
  return Buffer.from(`${JSON.stringify(message)}\0`);
}
