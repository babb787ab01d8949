/**
 * The Varlink errors the front-end answers with, and how a diskseqd refusal (BrokerError)
 * becomes one (docs/storage-provider.md, "Errors"): NOT_FOUND and STALE are
 * io.systemd.StorageProvider.NoSuchVolume, PERMISSION_DENIED is
 * org.varlink.service.PermissionDenied (what a polkit denial gives with systemd's own
 * provider), and every other code an error of diskseqd's own, org.diskseqd.<Code>, whose
 * parameters carry the code, the message and the errno.
 */
import type { BrokerError } from '../errors.js';
import { ErrorCode, errorCodeName } from '../../proto/contract.js';
import { VarlinkError } from './message.js';

const PROVIDER = 'io.systemd.StorageProvider';
const SERVICE = 'org.varlink.service';
/** The prefix of diskseqd's own errors. */
export const DISKSEQD_ERRORS = 'org.diskseqd';

export const noSuchVolume = () => new VarlinkError(`${PROVIDER}.NoSuchVolume`);
export const noSuchTemplate = () => new VarlinkError(`${PROVIDER}.NoSuchTemplate`);
export const typeNotSupported = () => new VarlinkError(`${PROVIDER}.TypeNotSupported`);
export const createNotSupported = () => new VarlinkError(`${PROVIDER}.CreateNotSupported`);
export const readOnlyVolume = () => new VarlinkError(`${PROVIDER}.ReadOnlyVolume`);
export const permissionDenied = () => new VarlinkError(`${SERVICE}.PermissionDenied`);
export const expectedMore = () => new VarlinkError(`${SERVICE}.ExpectedMore`);
export const invalidParameter = (parameter: string) => new VarlinkError(`${SERVICE}.InvalidParameter`, { parameter });
export const methodNotFound = (method: string) => new VarlinkError(`${SERVICE}.MethodNotFound`, { method });
export const interfaceNotFound = (name: string) => new VarlinkError(`${SERVICE}.InterfaceNotFound`, { interface: name });

/** The Varlink error for a refusal of the opener or the registry. */
export function fromBrokerError(error: BrokerError): VarlinkError {
  switch (error.code) {
    case ErrorCode.ERROR_CODE_NOT_FOUND:
    case ErrorCode.ERROR_CODE_STALE:
      return new VarlinkError(noSuchVolume().error, {}, errorCodeName(error.code));
    case ErrorCode.ERROR_CODE_PERMISSION_DENIED:
      return new VarlinkError(permissionDenied().error, {}, 'PERMISSION_DENIED');
    default: {
      const code = errorCodeName(error.code);
      const pascal = code.toLowerCase().replace(/(^|_)([a-z])/g, (_, __, c: string) => c.toUpperCase());
      return new VarlinkError(`${DISKSEQD_ERRORS}.${pascal}`, { code, message: error.message, osErrno: error.osErrno }, code);
    }
  }
}

/**
 * The diskseqd code an error reply stands for, for the audit line (whose `code` is always
 * an ErrorCode name, whichever front-end answered).
 */
export function auditCode(error: VarlinkError): string {
  if (error.code !== undefined) return error.code;
  const name = error.error.slice(error.error.lastIndexOf('.') + 1);
  switch (name) {
    case 'NoSuchVolume': return 'NOT_FOUND';
    case 'PermissionDenied': return 'PERMISSION_DENIED';
    case 'InvalidParameter': case 'ExpectedMore': return 'INVALID_ARGUMENT';
    case 'ReadOnlyVolume': return 'PERMISSION_DENIED';
    default: return 'UNSUPPORTED';
  }
}
