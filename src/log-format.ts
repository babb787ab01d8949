/**
 * How one log record becomes one line (docs/design.md, "Logging"): JSON for machines and
 * journald, a readable one-line text for terminals, each optionally behind the syslog
 * priority prefix `<N>` of sd-daemon(3) when standard output is the journal.
 *
 * A record is the level, the time, the pid, the bindings of the logger (the peer of a
 * connection), the fields of the call and the message, in that order, as pino wrote them.
 * Errors become { type, message, code, errno, syscall, stack }; bigints become strings;
 * nothing a caller passes can make formatting throw.
 */
import { auditFields, auditJsonBody, type AuditRecord } from './audit-line.js';

/** The levels, quietest last; `silent` writes nothing. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
/** A level a record can have. */
export type RecordLevel = Exclude<LogLevel, 'silent'>;

/** Severity order (pino's numbers, kept only inside the daemon). */
export const LEVEL_VALUE: Readonly<Record<LogLevel, number>> = {
  trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity,
};

/**
 * syslog(3) priority per level, as journald files it: `journalctl -p warning` shows warn,
 * error and fatal lines; audit lines are info (6).
 */
export const SYSLOG_PRIORITY: Readonly<Record<RecordLevel, number>> = {
  fatal: 2, error: 3, warn: 4, info: 6, debug: 7, trace: 7,
};

/** The two output formats of --log-format. */
export const LOG_FORMATS = ['json', 'text'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Fields of one call: anything JSON-like, Errors included. */
export type Fields = Record<string, unknown>;

/** Turns a record into one line ending in '\n'. `bindings` are pre-rendered by prepare(). */
export interface LineFormat {
  /** Renders a logger's bindings once, when the (child) logger is made. */
  prepare(bindings: Fields, parent: string): string;
  line(level: RecordLevel, time: number, prepared: string, fields: Fields | undefined, msg: string): string;
  /** The same as line('info', …, auditFields(record), 'audit'), made faster where it can be. */
  audit(time: number, prepared: string, record: AuditRecord): string;
}

/** The last time rendered, and its ISO 8601 text: lines come many per millisecond under load. */
let isoAt = Number.NaN;
let isoText = '';

function isoTime(time: number): string {
  if (time !== isoAt) {
    isoText = new Date(time).toISOString();
    isoAt = time;
  }
  return isoText;
}

/** JSON lines, keys in pino's order, "level" as a name. */
export const jsonFormat: LineFormat = {
  prepare(bindings, parent) {
    const body = jsonBody(bindings);
    return body === '' ? parent : `${parent},${body}`;
  },
  line(level, time, prepared, fields, msg) {
    const body = fields === undefined ? '' : jsonBody(fields);
    return `{"level":"${level}","time":"${isoTime(time)}"${prepared}${body === '' ? '' : ','}${body},"msg":${JSON.stringify(msg)}}\n`;
  },
  audit(time, prepared, record) {
    return `{"level":"info","time":"${isoTime(time)}"${prepared},${auditJsonBody(record)},"msg":"audit"}\n`;
  },
};

/**
 * One readable line: `2025-01-02T03:04:05.678Z INFO  audit op=open peer.uid=0 ...`; nested
 * objects flattened with dots, strings quoted only when they need it.
 */
export const textFormat: LineFormat = {
  prepare(bindings, parent) {
    const body = textBody(bindings);
    return body === '' ? parent : `${parent} ${body}`;
  },
  line(level, time, prepared, fields, msg) {
    const body = fields === undefined ? '' : textBody(fields);
    return `${isoTime(time)} ${level.toUpperCase().padEnd(5)} ${msg}${prepared}${body === '' ? '' : ' '}${body}\n`;
  },
  audit(time, prepared, record) {
    return this.line('info', time, prepared, auditFields(record), 'audit');
  },
};

/** The `<N>` prefix journald reads a line's priority from (sd-daemon(3)). */
export function priorityPrefix(level: RecordLevel): string {
  return `<${SYSLOG_PRIORITY[level]}>`;
}

/** `"a":1,"b":"x"` for the defined fields of an object ('' when there are none). */
function jsonBody(fields: Fields): string {
  let text: string;
  try {
    text = JSON.stringify(fields, fields.err !== undefined || fields.error !== undefined ? replacer : undefined);
  } catch {
    try {
      text = JSON.stringify(fields, safeReplacer());
    } catch (error) {
      text = JSON.stringify({ logError: `fields could not be rendered: ${(error as Error).message}` });
    }
  }
  return text.length <= 2 ? '' : text.slice(1, -1);
}

/** Errors as plain objects (JSON.stringify renders an Error as {}); bigints as strings. */
function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return serializeError(value);
  if (typeof value === 'bigint') return value.toString();
  return value;
}

/** A replacer that also breaks cycles, for the rare record the fast path cannot render. */
function safeReplacer(): (key: string, value: unknown) => unknown {
  const seen = new WeakSet<object>();
  return (key, value) => {
    const plain = replacer(key, value);
    if (typeof plain === 'object' && plain !== null) {
      if (seen.has(plain)) return '[Circular]';
      seen.add(plain);
    }
    return plain;
  };
}

/** An Error as pino's standard serializer renders it, `cause` included. */
export function serializeError(error: Error): Fields {
  const { code, errno, syscall } = error as NodeJS.ErrnoException;
  const out: Fields = { type: error.name, message: error.message };
  if (code !== undefined) out.code = code;
  if (errno !== undefined) out.errno = errno;
  if (syscall !== undefined) out.syscall = syscall;
  out.stack = error.stack;
  if (error.cause instanceof Error) out.cause = serializeError(error.cause);
  else if (error.cause !== undefined) out.cause = error.cause;
  return out;
}

const BARE = /^[A-Za-z0-9_.:/@+-]+$/;

/** `k=v k2.sub=v2` for the defined fields of an object. */
function textBody(fields: Fields): string {
  const parts: string[] = [];
  flatten('', fields, parts, 0);
  return parts.join(' ');
}

function flatten(prefix: string, value: unknown, parts: string[], depth: number): void {
  if (value === undefined) return;
  if (value instanceof Error) value = withoutStacks(serializeError(value)); // one line: JSON keeps the stacks
  if (typeof value === 'object' && value !== null && !Array.isArray(value) && depth < 4) {
    for (const [key, inner] of Object.entries(value)) flatten(prefix === '' ? key : `${prefix}.${key}`, inner, parts, depth + 1);
    return;
  }
  parts.push(`${prefix}=${textValue(value)}`);
}

function withoutStacks(error: Fields): Fields {
  delete error.stack;
  if (typeof error.cause === 'object' && error.cause !== null) withoutStacks(error.cause as Fields);
  return error;
}

function textValue(value: unknown): string {
  if (typeof value === 'string') return BARE.test(value) ? value : JSON.stringify(value);
  if (typeof value === 'bigint') return value.toString();
  try {
    return JSON.stringify(value, replacer) ?? String(value);
  } catch {
    return JSON.stringify(String(value));
  }
}
