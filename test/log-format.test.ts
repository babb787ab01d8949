// The logger's exact bytes: JSON with level names in pino's key order, the one-line text
// format, the syslog priority prefix journald reads (`journalctl -p`), errors and bigints
// rendered, child bindings, level filtering; and the JOURNAL_STREAM check against
// fstat(1) — a variable inherited with another stdout must not count.
import test from 'ava';
import { closeSync, fstatSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, journalStream, type Logger } from '../src/log.js';
import type { LineSink } from '../src/log-sink.js';

const TIME = Date.UTC(2025, 0, 2, 3, 4, 5, 678);
const ISO = '2025-01-02T03:04:05.678Z';

/** A logger writing into an array, and the array. */
function capture(level: string, format: 'json' | 'text', journal: boolean): { log: Logger; lines: string[]; important: boolean[] } {
  const lines: string[] = [];
  const important: boolean[] = [];
  const sink: LineSink = {
    write: (line, isImportant) => {
      lines.push(line);
      important.push(isImportant);
    },
    flush: () => 0,
    dropped: 0,
    backlogBytes: 0,
  };
  return { log: createLogger(level, { format, journal, sink, now: () => TIME }), lines, important };
}

test('json: level as a name, keys in order level, time, pid, bindings, fields, msg', (t) => {
  const { log, lines } = capture('info', 'json', false);
  log.child({ peer: { uid: 0, gid: 0, pid: 7 } }).info({ op: 'open', id: '1', device: undefined, code: 'OK', us: 12 }, 'audit');
  log.warn('plain message');
  t.deepEqual(lines, [
    `{"level":"info","time":"${ISO}","pid":${process.pid},"peer":{"uid":0,"gid":0,"pid":7},"op":"open","id":"1","code":"OK","us":12,"msg":"audit"}\n`,
    `{"level":"warn","time":"${ISO}","pid":${process.pid},"msg":"plain message"}\n`,
  ]);
  for (const line of lines) t.notThrows(() => JSON.parse(line));
});

test('journal: every line starts with its syslog priority (fatal 2, error 3, warn 4, info 6, debug and trace 7)', (t) => {
  const { log, lines } = capture('trace', 'json', true);
  log.fatal('f');
  log.error('e');
  log.warn('w');
  log.info('i');
  log.debug('d');
  log.trace('t');
  t.deepEqual(lines.map((l) => l.slice(0, 3)), ['<2>', '<3>', '<4>', '<6>', '<7>', '<7>']);
  t.true(lines.every((l) => l.slice(3).startsWith('{"level":"')), 'the JSON follows the prefix directly');
  const plain = capture('info', 'json', false);
  plain.log.info('i');
  t.true(plain.lines[0]!.startsWith('{'), 'no prefix when stdout is not the journal');
});

test('text: one readable line, nested fields flattened, strings quoted only when needed', (t) => {
  const { log, lines } = capture('info', 'text', true);
  log.child({ peer: { uid: 65534, gid: 65534, pid: 9 } }).info({ op: 'open', request: { diskseq: '42', expect: { 'loop/backing_file': '/tmp/a b.img' } }, decision: 'deny', us: 5 }, 'audit');
  t.deepEqual(lines, [
    `<6>${ISO} INFO  audit pid=${process.pid} peer.uid=65534 peer.gid=65534 peer.pid=9 op=open request.diskseq=42 ` +
      `request.expect.loop/backing_file="/tmp/a b.img" decision=deny us=5\n`,
  ]);
  t.false(lines[0]!.slice(0, -1).includes('\n'), 'one line');
});

test('errors are rendered with type, message, code, errno, syscall, stack and cause; bigints as strings; cycles do not throw', (t) => {
  const { log, lines } = capture('info', 'json', false);
  const cause = new Error('inner');
  const error = Object.assign(new Error('open failed', { cause }), { code: 'ENOENT', errno: 2, syscall: 'open' });
  log.error({ err: error }, 'internal error');
  const record = JSON.parse(lines[0]!);
  t.like(record.err, { type: 'Error', message: 'open failed', code: 'ENOENT', errno: 2, syscall: 'open', cause: { message: 'inner' } });
  t.true(String(record.err.stack).includes('open failed'));
  log.info({ diskseq: 42n }, 'big');
  t.is(JSON.parse(lines[1]!).diskseq, '42');
  const cyclic: Record<string, unknown> = { name: 'x' };
  cyclic.self = cyclic;
  t.notThrows(() => log.info({ cyclic }, 'cycle'));
  t.is(JSON.parse(lines[2]!).cyclic.self, '[Circular]');
  const text = capture('info', 'text', false);
  text.log.error({ err: error }, 'internal error');
  t.regex(text.lines[0]!, /internal error pid=\d+ err\.type=Error err\.message="open failed" err\.code=ENOENT err\.errno=2 err\.syscall=open err\.cause\.type=Error/);
  t.false(text.lines[0]!.includes('at '), 'no stack in the one-line format');
});

test('levels below the threshold write nothing; audit lines and warnings are the important ones', (t) => {
  const { log, lines } = capture('warn', 'json', false);
  log.info({ op: 'open' }, 'audit');
  log.debug('d');
  t.is(lines.length, 0);
  t.false(log.isLevelEnabled('info'));
  t.true(log.isLevelEnabled('error'));
  const all = capture('info', 'json', false);
  all.log.info({ op: 'open' }, 'audit');
  all.log.info('serving');
  all.log.warn('w');
  t.deepEqual(all.important, [true, false, true]);
  t.throws(() => createLogger('loud'), { message: /unknown log level/ });
});

test('JOURNAL_STREAM counts only when it names fd 1\'s own device and inode', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'diskseqd-journal-stream-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'a'), '');
  writeFileSync(join(dir, 'b'), '');
  const a = openSync(join(dir, 'a'), 'w');
  const b = openSync(join(dir, 'b'), 'w');
  t.teardown(() => {
    closeSync(a);
    closeSync(b);
  });
  const st = fstatSync(a, { bigint: true });
  const matching = `${st.dev}:${st.ino}`;
  t.true(journalStream({ JOURNAL_STREAM: matching }, a));
  // A child that inherited the variable but writes elsewhere (here: another file).
  t.false(journalStream({ JOURNAL_STREAM: matching }, b));
  t.false(journalStream({ JOURNAL_STREAM: `${st.dev}:${st.ino + 1n}` }, a));
  t.false(journalStream({ JOURNAL_STREAM: `${st.dev + 1n}:${st.ino}` }, a));
  t.false(journalStream({}, a));
  t.false(journalStream({ JOURNAL_STREAM: '' }, a));
  t.false(journalStream({ JOURNAL_STREAM: `${matching}x` }, a));
  t.false(journalStream({ JOURNAL_STREAM: matching }, 987), 'a closed fd is not the journal');
});
