/**
 * The audit line's hand-written JSON (src/audit-line.ts) is byte for byte what the generic
 * path writes for the same fields: JSON.stringify of auditFields(record). Odd strings from
 * clients and policies included (quotes, control characters, lone surrogates, keys that
 * JSON.stringify orders first), and every optional field present or not.
 */
import test from 'ava';
import { auditFields, type AuditOpen, type AuditRecord } from '../src/audit-line.js';
import { jsonFormat, textFormat } from '../src/log-format.js';

const ODD = ['', 'plain', 'quote " and \\ backslash', 'tab\tnew\nline\r', '\u0000\u001f\u007f', 'é ü 中文 🙂', '\ud800 lone', 'end \udfff', '</script>'];

function openOf(i: number): AuditOpen {
  const expect = new Map<string, string>();
  if (i % 3 === 1) expect.set('loop/backing_file', ODD[i % ODD.length]!);
  if (i % 3 === 2) {
    // Integer-like keys come first in JSON.stringify's order, whatever the insertion order.
    expect.set('serial', 'x').set('10', ODD[(i + 1) % ODD.length]!).set('2', 'y').set('__proto__', 'z');
  }
  return {
    diskseq: i % 2 === 0 ? 2n ** 64n - 1n : BigInt(i), partition: i % 129, access: ['read-only', 'read-write', 'write-only'][i % 3]!,
    exclusive: i % 2 === 0, direct: i % 3 === 0, nonblock: i % 5 === 0, sync: i % 7 === 0, dsync: i % 11 === 0,
    waitMs: i * 37, expect,
  };
}

function records(): AuditRecord[] {
  const out: AuditRecord[] = [];
  for (let i = 0; i < 60; i++) {
    const odd = ODD[i % ODD.length]!;
    out.push({
      op: i % 10 === 9 ? 'hello' : 'open', id: String(i * 1_000_003),
      open: i % 10 === 9 ? undefined : openOf(i),
      request: i % 10 === 9 ? { protocol_version: 1, client_name: odd } : undefined,
      device: i % 4 === 0 ? undefined : { name: i % 4 === 3 ? odd : `loop${i}p1`, major: 259, minor: i },
      rule: i % 3 === 0 ? undefined : odd, retried: i % 5 === 0 ? true : undefined,
      decision: ['allow', 'deny', 'error'][i % 3]!, code: ['OK', 'PERMISSION_DENIED', 'NOT_FOUND'][i % 3]!,
      us: i % 13 === 0 ? Number.NaN : i * 17,
    });
  }
  // A request without a `request` object (watch, status).
  out.push({ op: 'watch', id: '0', open: undefined, request: undefined, device: undefined, rule: undefined, retried: undefined, decision: 'allow', code: 'OK', us: 0 });
  return out;
}

const PREPARED = jsonFormat.prepare({ pid: 4242 }, '') + jsonFormat.prepare({ peer: { uid: 65534, gid: 65534, pid: 1 } }, '');

test('the JSON audit line is what the generic line writes for the same fields', (t) => {
  const time = Date.UTC(2026, 11, 2, 3, 4, 5, 678);
  for (const record of records()) {
    const fast = jsonFormat.audit(time, PREPARED, record);
    t.is(fast, jsonFormat.line('info', time, PREPARED, auditFields(record), 'audit'));
    const parsed = JSON.parse(fast) as Record<string, unknown>;
    t.is(parsed.msg, 'audit');
    t.is(parsed.level, 'info');
  }
});

test('the audit line in the text format is the generic line of the same fields', (t) => {
  const time = Date.UTC(2026, 11, 2, 3, 4, 5, 678);
  const prepared = textFormat.prepare({ peer: { uid: 0, gid: 0, pid: 7 } }, '');
  for (const record of records()) {
    t.is(textFormat.audit(time, prepared, record), textFormat.line('info', time, prepared, auditFields(record), 'audit'));
  }
});

test('consecutive lines in one millisecond and in the next carry their own time', (t) => {
  const record = records()[1]!;
  const at = (time: number) => (JSON.parse(jsonFormat.audit(time, '', record)) as { time: string }).time;
  t.is(at(1_000), '1970-01-01T00:00:01.000Z');
  t.is(at(1_000), '1970-01-01T00:00:01.000Z');
  t.is(at(1_001), '1970-01-01T00:00:01.001Z');
  t.is(JSON.parse(jsonFormat.line('warn', 1_002, '', undefined, 'x')).time, '1970-01-01T00:00:01.002Z');
});
