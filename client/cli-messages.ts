/**
 * What diskseq-open says when something fails, and the exit statuses it fails with: one
 * line on stderr, naming the ErrorCode of a refusal (and the errno behind it).
 */
import { constants as osConstants } from 'node:os';
import { ConnectionError, DiskseqError, type DiskseqErrorCode } from './errors.js';

/** The program's name in every message. */
export const PROGRAM = 'diskseq-open';

/**
 * diskseq-open itself failed in a form that runs COMMAND (DEVICE... -- COMMAND, --preload),
 * so COMMAND was not run: a usage error, diskseqd unreachable, a refusal. 125, as env,
 * chroot, nice and timeout use it, so that it does not collide with COMMAND's own statuses.
 */
export const EXIT_FAILED = 125;
/** COMMAND exists but could not be executed (as a shell reports it). */
export const EXIT_CANNOT_EXECUTE = 126;
/** COMMAND was not found (as a shell reports it). */
export const EXIT_COMMAND_NOT_FOUND = 127;
/** Any failure of a form without COMMAND (--list, --watch), usage errors included. */
export const EXIT_QUERY_FAILED = 1;

/** Prints one line to stderr and returns `status`. */
export function fail(status: number, message: string): number {
  process.stderr.write(`${PROGRAM}: ${message.replace(/\s*\n\s*/g, ' ')}\n`);
  return status;
}

const CODE_TEXT: Record<DiskseqErrorCode, string> = {
  UNSPECIFIED: 'request failed',
  NOT_FOUND: 'not found',
  STALE: 'stale (the device changed while it was being opened)',
  PERMISSION_DENIED: 'permission denied',
  BUSY: 'device or resource busy',
  INVALID_ARGUMENT: 'invalid argument',
  TIMEOUT: 'timed out waiting for the device',
  EXPECTATION_FAILED: 'expectation failed',
  RESOURCE_EXHAUSTED: 'diskseqd is out of resources',
  UNSUPPORTED: 'not supported by this diskseqd',
  INTERNAL: 'internal error',
};

function errnoName(errno: number): string | undefined {
  return Object.entries(osConstants.errno).find(([, value]) => value === errno)?.[0];
}

/** One line for a failed request: `42p3: not found (NOT_FOUND): <daemon's message>`. */
export function describeError(subject: string, error: unknown): string {
  if (error instanceof DiskseqError) {
    const errno = error.osErrno !== 0 ? `, ${errnoName(error.osErrno) ?? `errno ${error.osErrno}`}` : '';
    return `${subject}${CODE_TEXT[error.code]} (${error.code}${errno}): ${error.message}`;
  }
  if (error instanceof ConnectionError || error instanceof Error) return `${subject}${error.message}`;
  return `${subject}${String(error)}`;
}
