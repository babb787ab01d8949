/**
 * The two interfaces the Varlink front-end implements, as data (see idl.ts): systemd's
 * io.systemd.StorageProvider — its members, names and types exactly as systemd defines
 * them, the comments ours, saying what each means here — and org.varlink.service, which
 * every Varlink service answers. docs/storage-provider.md describes how diskseqd fills
 * them in.
 */
import type { IdlInterface } from './idl.js';

/** systemd's pluggable storage interface (systemd 261 and later). */
export const STORAGE_PROVIDER: IdlInterface = {
  name: 'io.systemd.StorageProvider',
  comment: 'Hands out storage volumes as file descriptors. diskseqd\'s volumes are disk instances, named by diskseq.',
  members: [
    {
      kind: 'enum', name: 'VolumeType', comment: 'What kind of inode a volume is opened as.',
      values: [
        { name: 'blk', comment: 'A block device (the only kind diskseqd has)' },
        { name: 'reg', comment: 'A regular file' },
        { name: 'dir', comment: 'A directory tree' },
      ],
    },
    {
      kind: 'enum', name: 'CreateMode', comment: 'Whether Acquire may, must or must not create the volume.',
      values: [
        { name: 'any', comment: 'Open it, creating it if it does not exist' },
        { name: 'new', comment: 'Create it; refuse if it exists' },
        { name: 'open', comment: 'Open it; refuse if it does not exist' },
      ],
    },
    {
      kind: 'method', name: 'Acquire', comment: 'Opens a volume and returns its file descriptor.',
      input: [
        { name: 'name', type: 'string', comment: 'The volume: N (whole disk of diskseq N) or N-partM (its partition M)' },
        { name: 'createMode', type: '?CreateMode', comment: 'new is refused: disk instances are made by the kernel, not by a provider' },
        { name: 'template', type: '?string', comment: 'Template for a created volume; there are none' },
        { name: 'readOnly', type: '?bool', comment: 'true: read-only; false: read-write or fail; null: read-write when allowed, else read-only' },
        { name: 'requestAs', type: '?VolumeType', comment: 'The kind of fd wanted; only blk is offered' },
        { name: 'createSizeBytes', type: '?int', comment: 'Size of a created volume; ignored, nothing is created' },
        { name: 'allowInteractiveAuthentication', type: '?bool', comment: 'Ignored: the policy file decides, there is no interactive authentication' },
      ],
      output: [
        { name: 'fileDescriptorIndex', type: 'int', comment: 'Index of the fd among those passed with this reply' },
        { name: 'type', type: 'VolumeType', comment: 'The kind of fd passed' },
        { name: 'readOnly', type: 'bool', comment: 'Whether the fd was opened read-only' },
        { name: 'baseUID', type: '?int', comment: 'For directory volumes only' },
        { name: 'baseGID', type: '?int', comment: 'For directory volumes only' },
      ],
    },
    {
      kind: 'method', name: 'ListVolumes', requiresMore: true, comment: 'Streams one reply per volume.',
      input: [{ name: 'matchName', type: '?string', comment: 'Shell glob the volume name must match' }],
      output: [
        { name: 'name', type: 'string', comment: 'The name to pass to Acquire' },
        { name: 'aliases', type: '?[]string', comment: 'Other names; diskseqd gives none' },
        { name: 'type', type: 'VolumeType', comment: 'Always blk' },
        { name: 'readOnly', type: '?bool', comment: 'Whether the device is read-only' },
        { name: 'sizeBytes', type: '?int', comment: 'Size in bytes' },
        { name: 'usedBytes', type: '?int', comment: 'Bytes in use, when known' },
      ],
    },
    {
      kind: 'method', name: 'ListTemplates', requiresMore: true, comment: 'Streams one reply per template.',
      input: [{ name: 'matchName', type: '?string', comment: 'Shell glob the template name must match' }],
      output: [
        { name: 'name', type: 'string', comment: 'The template name' },
        { name: 'type', type: 'VolumeType', comment: 'Kind of volume it creates' },
      ],
    },
    { kind: 'error', name: 'NoSuchVolume', comment: 'No volume has this name (for diskseqd: no such disk instance, or no longer).', fields: [] },
    { kind: 'error', name: 'VolumeExists', comment: 'A volume of this name exists already.', fields: [] },
    { kind: 'error', name: 'NoSuchTemplate', comment: 'No template has this name.', fields: [] },
    { kind: 'error', name: 'TypeNotSupported', comment: 'This provider offers no volumes of the requested type.', fields: [] },
    { kind: 'error', name: 'WrongType', comment: 'The volume is not of the requested type.', fields: [] },
    { kind: 'error', name: 'CreateNotSupported', comment: 'This provider cannot create volumes of this type.', fields: [] },
    { kind: 'error', name: 'CreateSizeRequired', comment: 'Creating this volume needs createSizeBytes.', fields: [] },
    { kind: 'error', name: 'ReadOnlyVolume', comment: 'Read-write access was required, and only read-only access is possible or allowed.', fields: [] },
    { kind: 'error', name: 'BadTemplate', comment: 'The template does not fit this volume type.', fields: [] },
  ],
};

/** The interface every Varlink service implements (varlink.org). */
export const VARLINK_SERVICE: IdlInterface = {
  name: 'org.varlink.service',
  comment: 'The Varlink service interface: what this service is, and what it speaks.',
  members: [
    {
      kind: 'method', name: 'GetInfo', comment: 'Describes the service.',
      input: [],
      output: [
        { name: 'vendor', type: 'string', comment: 'Who makes it' },
        { name: 'product', type: 'string', comment: 'What it is' },
        { name: 'version', type: 'string', comment: 'Its version' },
        { name: 'url', type: 'string', comment: 'Where to read more' },
        { name: 'interfaces', type: '[]string', comment: 'The interfaces it implements' },
      ],
    },
    {
      kind: 'method', name: 'GetInterfaceDescription', comment: 'The IDL text of one implemented interface.',
      input: [{ name: 'interface', type: 'string', comment: 'The interface\'s name' }],
      output: [{ name: 'description', type: 'string', comment: 'Its description in Varlink IDL' }],
    },
    {
      kind: 'error', name: 'InterfaceNotFound', comment: 'A call named an interface this service does not implement.',
      fields: [{ name: 'interface', type: 'string', comment: 'The interface named' }],
    },
    {
      kind: 'error', name: 'MethodNotFound', comment: 'A call named a method its interface does not have.',
      fields: [{ name: 'method', type: 'string', comment: 'The method named' }],
    },
    {
      kind: 'error', name: 'MethodNotImplemented', comment: 'The method exists but this service does not implement it.',
      fields: [{ name: 'method', type: 'string', comment: 'The method named' }],
    },
    {
      kind: 'error', name: 'InvalidParameter', comment: 'A parameter is unknown, missing, or of the wrong type or value.',
      fields: [{ name: 'parameter', type: 'string', comment: 'The parameter\'s name' }],
    },
    { kind: 'error', name: 'PermissionDenied', comment: 'The caller may not do this.', fields: [] },
    { kind: 'error', name: 'ExpectedMore', comment: 'The method streams its replies and must be called with more set.', fields: [] },
  ],
};

/** Every interface served, by name, in the order GetInfo lists them. */
export const INTERFACES: ReadonlyMap<string, IdlInterface> = new Map([VARLINK_SERVICE, STORAGE_PROVIDER].map((i) => [i.name, i]));
