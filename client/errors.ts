/**
 * The errors the client library rejects with.
 *
 * - DiskseqError: the daemon (or the library's own check of what the daemon sent) refused
 *   a request; `code` is the protocol's ErrorCode without its prefix. Arguments the daemon
 *   would refuse are refused in this process, before anything is sent, with the code the
 *   daemon would give: 'INVALID_ARGUMENT'.
 * - ConnectionError: the connection could not be made or is gone; `code` is the errno
 *   name of the failed call (ENOENT, ECONNREFUSED, EACCES ...) or 'CONNECTION_CLOSED'.
 * - AbortError: the caller's AbortSignal fired (name 'AbortError', code 'ABORT_ERR', like
 *   Node's own).
 */
import { ERROR_CODE_NAMES, ErrorCode, errorCodeName, type ErrorCodeName } from '../proto/contract.js';
import type { diskseqd } from '../proto/gen/diskseqd.js';

/** The ErrorCode names of the wire contract, as DiskseqError.code carries them (e.g. 'NOT_FOUND'). */
export type DiskseqErrorCode = ErrorCodeName;

const KNOWN_CODES: ReadonlySet<string> = new Set(ERROR_CODE_NAMES);

/** A refused request: an `Error` response from the daemon, or a failed client-side check. */
export class DiskseqError extends Error {
  override readonly name = 'DiskseqError';
  /** The ErrorCode name, e.g. 'NOT_FOUND'. An unknown wire value maps to 'UNSPECIFIED'. */
  readonly code: DiskseqErrorCode;
  /** The numeric ErrorCode as it was (or would be) on the wire. */
  readonly wireCode: number;
  /** The errno behind the failure (Error.os_errno), 0 when there is none. */
  readonly osErrno: number;

  constructor(code: DiskseqErrorCode, message: string, options: { osErrno?: number; wireCode?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.wireCode = options.wireCode ?? (ErrorCode[`ERROR_CODE_${code}` as keyof typeof ErrorCode] as number);
    this.osErrno = options.osErrno ?? 0;
  }
}

/** Turns an `Error` response into a DiskseqError (the message is the daemon's). */
export function errorFromWire(error: diskseqd.v1.IError): DiskseqError {
  const wireCode = error.code ?? 0;
  const name = errorCodeName(wireCode);
  const code = (KNOWN_CODES.has(name) ? name : 'UNSPECIFIED') as DiskseqErrorCode;
  const message = error.message ? error.message : `diskseqd refused the request (${name})`;
  return new DiskseqError(code, message, { osErrno: error.osErrno ?? 0, wireCode });
}

/**
 * An argument the daemon would refuse (diskseq 0, a negative or fractional number, an
 * unknown access mode, a request too large for one packet), refused before anything is
 * sent: the same DiskseqError 'INVALID_ARGUMENT' a daemon's refusal would give.
 */
export function invalidArgument(message: string): DiskseqError {
  return new DiskseqError('INVALID_ARGUMENT', message);
}

/**
 * The daemon sent something the contract does not allow (an undecodable or truncated
 * packet, an fd where none belongs, `Opened` without exactly one fd). Code INTERNAL.
 */
export function protocolError(message: string): DiskseqError {
  return new DiskseqError('INTERNAL', `protocol error from diskseqd: ${message}`);
}

/** The connection to the daemon could not be made, or is closed. */
export class ConnectionError extends Error {
  override readonly name = 'ConnectionError';
  /** errno name of the failed call ('ENOENT', 'ECONNREFUSED', ...), or 'CONNECTION_CLOSED'. */
  readonly code: string;
  /** Positive errno when a system call failed, else 0. */
  readonly errno: number;
  /** The socket path of the connection. */
  readonly socketPath: string;

  constructor(message: string, options: { code: string; errno?: number; socketPath: string; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = options.code;
    this.errno = options.errno ?? 0;
    this.socketPath = options.socketPath;
  }
}

/** The caller's AbortSignal fired before the request completed. */
export class AbortError extends Error {
  override readonly name = 'AbortError';
  readonly code = 'ABORT_ERR';

  constructor(reason?: unknown) {
    super('the operation was aborted', reason === undefined ? undefined : { cause: reason });
  }
}
