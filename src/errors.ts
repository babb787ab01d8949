/**
 * The one error type of the daemon's request path: a protocol ErrorCode, a message for
 * the client, and the errno that caused it (0 when none). Thrown by the opener and
 * registry, turned into an `Error` response by the connection, logged once there.
 */
import { ErrorCode } from './wire.js';

export class BrokerError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly osErrno = 0,
  ) {
    super(message);
    this.name = 'BrokerError';
  }
}

/** Shorthands for the codes the request path produces. */
export const notFound = (message: string, osErrno = 0) => new BrokerError(ErrorCode.ERROR_CODE_NOT_FOUND, message, osErrno);
export const invalidArgument = (message: string) => new BrokerError(ErrorCode.ERROR_CODE_INVALID_ARGUMENT, message);
export const permissionDenied = (message: string, osErrno = 0) =>
  new BrokerError(ErrorCode.ERROR_CODE_PERMISSION_DENIED, message, osErrno);

/** True for an Error carrying a Node/addon-style errno code such as 'ENOENT'. */
export function hasErrnoCode(error: unknown, ...codes: string[]): boolean {
  return error instanceof Error && codes.includes((error as NodeJS.ErrnoException).code ?? '');
}

/** The positive errno of a Node/addon error, or 0. */
export function errnoOf(error: unknown): number {
  const errno = (error as NodeJS.ErrnoException | undefined)?.errno;
  return typeof errno === 'number' ? Math.abs(errno) : 0;
}
