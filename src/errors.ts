/**
 * The one error type of the daemon's request path and its catalogue: a named constructor
 * per ErrorCode, so every refusal reads as what it is. Thrown by the opener, the registry
 * and the connection; turned into an `Error` response by the connection and logged once
 * there (in the request's audit line). proto/diskseqd.proto says what each code means to a
 * client.
 */
import { native } from '../native/index.js';
import { ErrorCode } from '../proto/contract.js';

/** A refusal: a protocol ErrorCode, a message for the client, the errno behind it (0: none). */
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

/** The disk instance (or its partition) does not exist, or no longer does. */
export const notFound = (message: string, osErrno = 0) => new BrokerError(ErrorCode.ERROR_CODE_NOT_FOUND, message, osErrno);
/** The device kept verifying as something else than the disk instance asked for. */
export const stale = (message: string, osErrno = 0) => new BrokerError(ErrorCode.ERROR_CODE_STALE, message, osErrno);
/** The policy refuses this peer, or the kernel refused the open. */
export const permissionDenied = (message: string, osErrno = 0) => new BrokerError(ErrorCode.ERROR_CODE_PERMISSION_DENIED, message, osErrno);
/** An exclusive holder (or a mount) is in the way. */
export const busy = (message: string, osErrno = 0) => new BrokerError(ErrorCode.ERROR_CODE_BUSY, message, osErrno);
/** A request field the protocol allows but the daemon cannot accept. */
export const invalidArgument = (message: string) => new BrokerError(ErrorCode.ERROR_CODE_INVALID_ARGUMENT, message);
/** The device did not appear within wait_ms. */
export const timeout = (message: string) => new BrokerError(ErrorCode.ERROR_CODE_TIMEOUT, message);
/**
 * The device did not answer: its open (or an earlier request's, which holds the disk) is
 * stuck in the kernel past --device-timeout-ms. TIMEOUT like an expired wait_ms, told apart
 * by os_errno ETIMEDOUT and the message (docs/design.md, "Hung devices").
 */
export const deviceTimeout = (message: string) => new BrokerError(ErrorCode.ERROR_CODE_TIMEOUT, message, native.constants.ETIMEDOUT);
/** An `expect` attribute did not hold. */
export const expectationFailed = (message: string) => new BrokerError(ErrorCode.ERROR_CODE_EXPECTATION_FAILED, message);
/** A bound of the daemon (connections, waiters, watchers) is reached. */
export const resourceExhausted = (message: string) => new BrokerError(ErrorCode.ERROR_CODE_RESOURCE_EXHAUSTED, message);
/** The request needs something this daemon does not speak. */
export const unsupported = (message: string) => new BrokerError(ErrorCode.ERROR_CODE_UNSUPPORTED, message);
/** Something failed that the client cannot act on; the details are in the daemon's log. */
export const internal = (message: string, osErrno = 0) => new BrokerError(ErrorCode.ERROR_CODE_INTERNAL, message, osErrno);

/** True for an Error carrying a Node/addon-style errno code such as 'ENOENT'. */
export function hasErrnoCode(error: unknown, ...codes: string[]): boolean {
  return error instanceof Error && codes.includes((error as NodeJS.ErrnoException).code ?? '');
}

/** The positive errno of a Node/addon error, or 0. */
export function errnoOf(error: unknown): number {
  const errno = (error as NodeJS.ErrnoException | undefined)?.errno;
  return typeof errno === 'number' ? Math.abs(errno) : 0;
}
