/**
 * The daemon's logger (docs/design.md, "Logging"): one line per record on standard output,
 * JSON (or text on a terminal) with the level as a name, the syslog priority in front of
 * each line when standard output is the journal, written without ever blocking the daemon
 * (src/log-sink.ts). The audit line of each decision is an `info` record with msg "audit".
 *
 * The interface is the part of pino's the daemon used: leveled calls taking optional
 * fields and a message, and child loggers that carry bindings (a connection's peer).
 */
import { fstatSync } from 'node:fs';
import {
  jsonFormat, LEVEL_VALUE, priorityPrefix, textFormat, type Fields, type LineFormat, type LogFormat, type LogLevel, type RecordLevel,
} from './log-format.js';
import { FdSink, isTerminal, type LineSink } from './log-sink.js';
import type { AuditRecord } from './audit-line.js';

export { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from './log-format.js';

/** One leveled call: `log.info('text')` or `log.info({ fields }, 'text')`. */
export interface LogFn {
  (msg: string): void;
  (fields: Fields, msg?: string): void;
}

/** A logger, or a child of one with more bindings. */
export interface Logger {
  readonly level: LogLevel;
  fatal: LogFn;
  error: LogFn;
  warn: LogFn;
  info: LogFn;
  debug: LogFn;
  trace: LogFn;
  /** A request's audit line: an info record with msg "audit" and the record's fields (src/audit-line.ts). */
  audit(record: AuditRecord): void;
  /** A logger whose every line also carries `bindings` (after the parent's). */
  child(bindings: Fields): Logger;
  isLevelEnabled(level: LogLevel): boolean;
  /** Lines dropped because standard output did not keep up (see src/log-sink.ts). */
  readonly dropped: number;
  /** Writes what waits for standard output, bounded in time; before a clean exit. */
  flush(timeoutMs?: number): void;
}

/** How to make a logger; every field has the daemon's default. */
export interface LoggerOptions {
  /** json or text; default: text on a terminal, json otherwise. */
  format?: LogFormat;
  /** Where lines go (default: standard output through an FdSink). */
  sink?: LineSink;
  /** Prefix lines with `<N>`; default: whether standard output is the journal (journalStream()). */
  journal?: boolean;
  /** Bound of the standard output backlog in bytes (default DEFAULT_BACKLOG_BYTES). */
  backlogBytes?: number;
  /** For tests: the clock. */
  now?: () => number;
}

/**
 * Whether fd (standard output) is connected to the journal: systemd sets JOURNAL_STREAM to
 * `st_dev:st_ino` of the stream it gave the service. Children inherit the variable with
 * other stdouts, so it counts only when it matches fd's own fstat.
 */
export function journalStream(env: NodeJS.ProcessEnv = process.env, fd = 1): boolean {
  const value = env.JOURNAL_STREAM;
  const match = value === undefined ? null : /^([0-9]+):([0-9]+)$/.exec(value);
  if (match === null) return false;
  try {
    const stat = fstatSync(fd, { bigint: true });
    return stat.dev === BigInt(match[1]!) && stat.ino === BigInt(match[2]!);
  } catch {
    return false;
  }
}

/** The format used when --log-format is not given: text on a terminal, else json. */
export function defaultLogFormat(fd = 1): LogFormat {
  return isTerminal(fd) ? 'text' : 'json';
}

/** A logger at `level` writing to standard output (or `options.sink`). */
export function createLogger(level: LogLevel | string, options: LoggerOptions = {}): Logger {
  const threshold = LEVEL_VALUE[level as LogLevel];
  if (threshold === undefined) throw new Error(`unknown log level ${JSON.stringify(level)}`);
  const silent = threshold === Infinity;
  const format = (options.format ?? (silent ? 'json' : defaultLogFormat())) === 'text' ? textFormat : jsonFormat;
  const journal = options.journal ?? (!silent && journalStream());
  const now = options.now ?? Date.now;
  const base = format.prepare({ pid: process.pid }, '');
  // The line the sink writes where lines were dropped, once the reader keeps up again.
  const droppedLine = (count: number): string => {
    const line = format.line('warn', now(), base, { dropped: count }, `${count} log lines dropped: standard output did not keep up`);
    return journal ? priorityPrefix('warn') + line : line;
  };
  // A silent logger never touches standard output (tests and benches make many).
  const sink = options.sink ?? (silent ? nullSink : new FdSink(1, options.backlogBytes, droppedLine));
  return new LeveledLogger({ level: level as LogLevel, threshold, sink, format, journal, now }, base);
}

interface Core {
  readonly level: LogLevel;
  readonly threshold: number;
  readonly sink: LineSink;
  readonly format: LineFormat;
  readonly journal: boolean;
  readonly now: () => number;
}

const nullSink: LineSink = { write: () => undefined, flush: () => 0, dropped: 0, backlogBytes: 0 };

class LeveledLogger implements Logger {
  readonly fatal: LogFn = this.method('fatal');
  readonly error: LogFn = this.method('error');
  readonly warn: LogFn = this.method('warn');
  readonly info: LogFn = this.method('info');
  readonly debug: LogFn = this.method('debug');
  readonly trace: LogFn = this.method('trace');

  constructor(private readonly core: Core, private readonly prepared: string) {}

  get level(): LogLevel {
    return this.core.level;
  }

  get dropped(): number {
    return this.core.sink.dropped;
  }

  audit(record: AuditRecord): void {
    const { core } = this;
    if (LEVEL_VALUE.info < core.threshold) return;
    this.write('info', core.format.audit(core.now(), this.prepared, record), true);
  }

  /** One line to the sink, behind the journal's priority prefix when stdout is the journal. */
  private write(level: RecordLevel, line: string, important: boolean): void {
    const { core } = this;
    core.sink.write(core.journal ? priorityPrefix(level) + line : line, important);
  }

  child(bindings: Fields): Logger {
    return new LeveledLogger(this.core, this.core.format.prepare(bindings, this.prepared));
  }

  isLevelEnabled(level: LogLevel): boolean {
    return LEVEL_VALUE[level] >= this.core.threshold;
  }

  flush(timeoutMs?: number): void {
    this.core.sink.flush(timeoutMs);
  }

  private method(level: RecordLevel): LogFn {
    const value = LEVEL_VALUE[level];
    // Audit lines and warnings may use the whole backlog (src/log-sink.ts).
    const important = value >= LEVEL_VALUE.warn;
    return ((first: Fields | string, second?: string): void => {
      if (value < this.core.threshold) return;
      const fields = typeof first === 'string' ? undefined : first;
      const msg = typeof first === 'string' ? first : second ?? '';
      const { core } = this;
      this.write(level, core.format.line(level, core.now(), this.prepared, fields, msg), important || msg === 'audit');
    }) as LogFn;
  }
}
