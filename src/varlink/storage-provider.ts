/**
 * io.systemd.StorageProvider on diskseqd (docs/storage-provider.md): a translation and
 * nothing more. Acquire is an open-and-verify through the same Opener.open as an
 * OpenRequest, with the peer's credentials taken at accept; ListVolumes is a List through
 * the same registry listing and device descriptions, in the same batches. Answers follow
 * systemd's own block provider (storage-block) wherever it has one.
 */
import { describeInTurns, listDevices } from '../device-info.js';
import type { FairTurns } from '../fair-turns.js';
import { BrokerError } from '../errors.js';
import type { OpenParams, OpenTrace, Opener, VerifiedOpen } from '../opener.js';
import { compileGlob, GlobSyntaxError } from '../policy/glob.js';
import type { Peer } from '../policy/index.js';
import type { Registry } from '../registry.js';
import type { AccessMode, DeviceInfo } from '../../proto/contract.js';
import { ErrorCode } from '../../proto/contract.js';
import {
  createNotSupported, fromBrokerError, invalidParameter, noSuchTemplate, noSuchVolume, permissionDenied, readOnlyVolume, typeNotSupported,
} from './errors.js';
import { isSafeName, parseVolumeName, volumeName, type Volume } from './volume-name.js';

/** What an Acquire did, for its audit line. */
export interface AcquireAudit extends OpenTrace {
  name?: string;
  diskseq?: string;
  partition?: number;
  access?: AccessMode;
  /** readOnly was null or false and read-write was refused: what happened next. */
  fallback?: 'read-only' | 'read-only-probe';
}

/** A successful Acquire: the reply's parameters and the fd that goes with it. */
export interface Acquired {
  reply: Record<string, unknown>;
  fd: number;
  /** How the fd is closed if it is never sent (charged to its disk: docs/design.md, "Hung devices"). */
  dispose: (fd: number) => void;
}

const EROFS = 30;

export class StorageProvider {
  constructor(private readonly opener: Opener, private readonly registry: Registry, private readonly turns: FairTurns) {}

  /**
   * Acquire, in storage-block's order: the name must be a string of safe characters
   * (else InvalidParameter) and a volume name (else NoSuchVolume); createMode new is
   * CreateNotSupported and a template NoSuchTemplate, both before any lookup; requestAs
   * other than blk is TypeNotSupported; then the open. `parameters` fit the IDL already.
   */
  async acquire(parameters: Record<string, unknown>, peer: Peer, audit: AcquireAudit, signal: AbortSignal): Promise<Acquired> {
    const name = parameters.name as string;
    audit.name = name;
    if (!isSafeName(name)) throw invalidParameter('name');
    const volume = parseVolumeName(name);
    if (volume === undefined) throw noSuchVolume();
    audit.diskseq = volume.diskseq.toString();
    audit.partition = volume.partition;
    if (parameters.createMode === 'new') throw createNotSupported();
    const template = parameters.template as string | null | undefined;
    if (typeof template === 'string' && template !== '') {
      if (!isSafeName(template)) throw invalidParameter('template');
      throw noSuchTemplate();
    }
    if (parameters.requestAs !== undefined && parameters.requestAs !== null && parameters.requestAs !== 'blk') throw typeNotSupported();
    if (typeof parameters.createSizeBytes === 'number' && parameters.createSizeBytes < 0) throw invalidParameter('createSizeBytes');
    // createSizeBytes and allowInteractiveAuthentication are accepted and have no effect.

    const wanted = parameters.readOnly as boolean | null | undefined;
    const readOnlyDevice = wanted !== true && this.deviceIsReadOnly(volume); // a read-only open needs no check
    if (wanted === false && readOnlyDevice) throw readOnlyVolume();
    if (wanted === true || (wanted !== false && readOnlyDevice)) return this.open(volume, 'read-only', peer, audit, signal);

    let opened: VerifiedOpen;
    try {
      opened = await this.openVerified(volume, 'read-write', peer, audit, signal);
    } catch (error) {
      if (!(error instanceof BrokerError) || error.code !== ErrorCode.ERROR_CODE_PERMISSION_DENIED) throw translate(error);
      if (wanted === undefined || wanted === null) {
        audit.fallback = 'read-only';
        return this.open(volume, 'read-only', peer, audit, signal);
      }
      throw await this.whyNotWritable(error, volume, peer, audit, signal);
    }
    if (!opened.device.readOnly) return acquired(opened, false);
    // The device turned read-only after the check above: this fd may not be written.
    opened.dispose(opened.fd);
    if (wanted === false) throw readOnlyVolume();
    audit.fallback = 'read-only';
    return this.open(volume, 'read-only', peer, audit, signal);
  }

  /**
   * ListVolumes: every indexed disk and partition whose name matches `matchName`, in
   * diskseq order, described as List describes them (a few per turn of the event loop).
   * With nothing to list, NoSuchVolume, as storage-block's sentinel.
   */
  async *listVolumes(parameters: Record<string, unknown>, signal: AbortSignal): AsyncGenerator<Record<string, unknown>> {
    const pattern = parameters.matchName as string | null | undefined;
    let matches: (name: string) => boolean = () => true;
    if (typeof pattern === 'string') {
      try {
        const glob = compileGlob(pattern);
        matches = (name) => glob.matches(name);
      } catch (error) {
        if (error instanceof GlobSyntaxError) throw invalidParameter('matchName');
        throw error;
      }
    }
    await this.registry.indexed(); // the first scan: every bound disk, as List has it
    this.registry.handlePendingUevents(); // answer with every change the kernel already announced
    const devices = listDevices(this.registry.disks(), true)
      .filter((d) => matches(volumeName(d.disk.diskseq, d.part?.partition ?? 0)));
    if (devices.length === 0) throw noSuchVolume();
    // Described in fair turns with every List and Watch snapshot (src/fair-turns.ts).
    const described: DeviceInfo[] = [];
    const complete = await describeInTurns(this.turns, this.registry.sysfs, devices, (device) => described.push(device) > 0, signal);
    if (!complete) return; // the connection closed
    for (const device of described) {
      yield { name: volumeName(device.diskseq, device.partition), type: 'blk', readOnly: device.readOnly, sizeBytes: Number(device.sizeBytes) };
    }
  }

  /** Closes an fd a client sent (never ours to keep), charged to its uid (src/device-work.ts). */
  closeSent(uid: number, fd: number): void {
    this.opener.work.closeSent(uid, fd);
  }

  /** ListTemplates: there are none (matchName is accepted and changes nothing). */
  listTemplates(): never {
    throw noSuchTemplate();
  }

  private async open(volume: Volume, access: AccessMode, peer: Peer, audit: AcquireAudit, signal: AbortSignal): Promise<Acquired> {
    try {
      return acquired(await this.openVerified(volume, access, peer, audit, signal), access === 'read-only');
    } catch (error) {
      throw translate(error);
    }
  }

  private openVerified(volume: Volume, access: AccessMode, peer: Peer, audit: AcquireAudit, signal: AbortSignal): Promise<VerifiedOpen> {
    audit.access = access;
    const params: OpenParams = {
      diskseq: volume.diskseq, partition: volume.partition, access, exclusive: false, direct: false, nonblock: false,
      sync: false, dsync: false, expect: new Map(), waitMs: 0,
    };
    return this.opener.open(params, peer, audit, signal);
  }

  /**
   * readOnly false and read-write refused: ReadOnlyVolume when the kernel refused writing
   * (EROFS) or the peer may have the volume read-only — found out by opening it read-only
   * through the opener, as this peer, and closing that fd again — else PermissionDenied.
   */
  private async whyNotWritable(refusal: BrokerError, volume: Volume, peer: Peer, audit: AcquireAudit, signal: AbortSignal): Promise<Error> {
    if (refusal.osErrno === EROFS) return readOnlyVolume();
    audit.fallback = 'read-only-probe';
    try {
      const probe = await this.openVerified(volume, 'read-only', peer, audit, signal);
      probe.dispose(probe.fd);
      return readOnlyVolume();
    } catch (error) {
      if (error instanceof BrokerError && error.code === ErrorCode.ERROR_CODE_PERMISSION_DENIED) return permissionDenied();
      return translate(error);
    }
  }

  /** storage-block's explicit check first: the indexed device's sysfs `ro` (advisory; the fd is checked too). */
  private deviceIsReadOnly(volume: Volume): boolean {
    const disk = this.registry.find(volume.diskseq);
    const node = volume.partition === 0 ? disk : disk?.partitions.get(volume.partition);
    if (node === undefined) return false;
    return this.registry.sysfs.deviceByName(node.name, volume.partition !== 0).attribute('ro') === '1';
  }
}

function acquired(opened: VerifiedOpen, readOnly: boolean): Acquired {
  return { reply: { fileDescriptorIndex: 0, type: 'blk', readOnly }, fd: opened.fd, dispose: opened.dispose };
}

/** A refusal as a Varlink error; anything else (a bug, a cancellation) as it is. */
function translate(error: unknown): Error {
  return error instanceof BrokerError ? fromBrokerError(error) : (error as Error);
}
