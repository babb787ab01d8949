/**
 * Logging: pino, JSON lines on stdout (journald takes them as they are). The audit line of
 * each decision is an `info` record with msg "audit"; everything else uses the usual levels.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

/** The log levels --log-level accepts. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** A logger writing synchronously to stdout, so nothing is lost when the daemon exits. */
export function createLogger(level: string): Logger {
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: 1, sync: true }));
}
