/**
 * The audit line of a request on the protocol socket (docs/design.md, "Logging"): what it
 * holds, and its JSON written field by field. Every request writes one, on the JS thread
 * that serves all connections, so its cost bounds the open rate: JSON.stringify of the
 * fields object took ~1.7 µs per line here, this ~0.4 µs (a loop of 500,000 lines under the
 * daemon's node flags). It writes exactly the bytes JSON.stringify writes for
 * auditFields(record), which test/audit-line.test.ts checks, odd strings included.
 */
import type { Fields } from './log-format.js';

/** An open's parameters as the line shows them (the request's validated OpenParams). */
export interface AuditOpen {
  readonly diskseq: bigint;
  readonly partition: number;
  readonly access: string;
  readonly exclusive: boolean;
  readonly direct: boolean;
  readonly nonblock: boolean;
  readonly sync: boolean;
  readonly dsync: boolean;
  readonly waitMs: number;
  readonly expect: ReadonlyMap<string, string>;
}

/** One request's audit record; the line has its fields in this order, undefined ones left out. */
export interface AuditRecord {
  op: string;
  /** The request id, in decimal. */
  id: string;
  /** An open's parameters: the line's `request` object. */
  open: AuditOpen | undefined;
  /** The `request` object of any other kind of request (undefined: none). */
  request: Fields | undefined;
  device: { readonly name: string; readonly major: number; readonly minor: number } | undefined;
  rule: string | undefined;
  retried: boolean | undefined;
  decision: string;
  code: string;
  /** Microseconds from the request's arrival to its answer. */
  us: number;
}

/** An open's `request` object: diskseq as a decimal string, `expect` only when given. */
export function openSummary(open: AuditOpen): Fields {
  return {
    diskseq: open.diskseq.toString(), partition: open.partition, access: open.access, exclusive: open.exclusive,
    direct: open.direct, nonblock: open.nonblock, sync: open.sync, dsync: open.dsync, wait_ms: open.waitMs,
    expect: open.expect.size > 0 ? Object.fromEntries(open.expect) : undefined,
  };
}

/** The record as log fields, in the line's order: for the text format, and what the JSON must equal. */
export function auditFields(record: AuditRecord): Fields {
  return {
    op: record.op, id: record.id, request: record.open !== undefined ? openSummary(record.open) : record.request,
    device: record.device, rule: record.rule, retried: record.retried, decision: record.decision, code: record.code,
    us: record.us,
  };
}

const quote = JSON.stringify;

/** A number as JSON.stringify writes it (null for NaN and the infinities). */
function num(value: number): string {
  return Number.isFinite(value) ? String(value) : 'null';
}

/** `"op":…,"us":N`: what JSON.stringify(auditFields(record)) holds between its braces. */
export function auditJsonBody(record: AuditRecord): string {
  let body = `"op":${quote(record.op)},"id":${quote(record.id)}`;
  const { open } = record;
  if (open !== undefined) {
    body += `,"request":{"diskseq":"${open.diskseq}","partition":${num(open.partition)},"access":${quote(open.access)}`
      + `,"exclusive":${open.exclusive},"direct":${open.direct},"nonblock":${open.nonblock},"sync":${open.sync}`
      + `,"dsync":${open.dsync},"wait_ms":${num(open.waitMs)}`;
    // Object.fromEntries, as openSummary: JSON.stringify then orders the keys as it does there.
    if (open.expect.size > 0) body += `,"expect":${quote(Object.fromEntries(open.expect))}`;
    body += '}';
  } else if (record.request !== undefined) {
    body += `,"request":${quote(record.request)}`;
  }
  const { device } = record;
  if (device !== undefined) body += `,"device":{"name":${quote(device.name)},"major":${num(device.major)},"minor":${num(device.minor)}}`;
  if (record.rule !== undefined) body += `,"rule":${quote(record.rule)}`;
  if (record.retried !== undefined) body += `,"retried":${record.retried}`;
  return `${body},"decision":${quote(record.decision)},"code":${quote(record.code)},"us":${num(record.us)}`;
}
