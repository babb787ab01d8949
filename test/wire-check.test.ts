/**
 * The strict Request check (src/wire-check.ts): what protobufjs would decode but protobuf
 * forbids is malformed; every well-formed Request, unknown fields included, passes; and
 * its schema is the Request side of proto/diskseqd.proto, read from the .proto itself.
 */
import test from 'ava';
import Long from 'long';
import protobuf from 'protobufjs';
import { fileURLToPath } from 'node:url';
import { malformation, REQUEST_SCHEMA, type MessageSchema } from '../src/wire-check.js';
import { wire } from '../proto/contract.js';

const PROTO = fileURLToPath(new URL('../../proto/diskseqd.proto', import.meta.url));

test('the schema is the Request side of the .proto, field by field', async (t) => {
  const root = await protobuf.load(PROTO);
  const fromProto = (type: protobuf.Type): MessageSchema => {
    const out: Record<number, MessageSchema[number]> = {};
    for (const field of type.fieldsArray) {
      field.resolve();
      if (field instanceof protobuf.MapField) out[field.id] = { 1: 'bytes', 2: 'bytes' };
      else if (field.resolvedType instanceof protobuf.Type) out[field.id] = fromProto(field.resolvedType);
      else out[field.id] = field.type === 'string' || field.type === 'bytes' ? 'bytes' : 'varint';
    }
    return out;
  };
  t.deepEqual(fromProto(root.lookupType('diskseqd.v1.Request')), REQUEST_SCHEMA);
});

test('well-formed requests pass, with unknown fields of every valid wire type', (t) => {
  const open = wire.Request.encode({
    id: Long.fromString('18446744073709551615', true),
    open: { diskseq: Long.fromNumber(42, true), partition: 1, access: 1, exclusive: true, waitMs: 5, expect: { size: '8', 'dm/name': 'x' }, sync: true },
  }).finish();
  t.is(malformation(open), undefined);
  t.is(malformation(wire.Request.encode({ id: Long.UONE, hello: { protocolVersion: 1, clientName: 'c' } }).finish()), undefined);
  t.is(malformation(wire.Request.encode({ id: Long.UONE, watch: {} }).finish()), undefined);
  t.is(malformation(new Uint8Array()), undefined);
  // field 99: varint, fixed64, length-delimited, fixed32
  const unknown = Buffer.from([0x98, 0x06, 0x01, 0x99, 0x06, 1, 2, 3, 4, 5, 6, 7, 8, 0x9a, 0x06, 0x02, 0xaa, 0xbb, 0x9d, 0x06, 1, 2, 3, 4]);
  t.is(malformation(Buffer.concat([open, unknown])), undefined);
});

test('what protobuf forbids is malformed, at the top and inside nested messages', (t) => {
  const cases: Array<[string, number[]]> = [
    ['field number 0', [0x00, 0x01]],
    ['wire type 7', [0x0f, 0x01]],
    ['start group', [0x0b]],
    ['end group', [0x0c]],
    ['id sent length-delimited', [0x0a, 0x01, 0x00]],
    ['open sent as a varint', [0x18, 0x01]],
    ['open.diskseq sent as fixed64', [0x1a, 0x09, 0x09, 1, 0, 0, 0, 0, 0, 0, 0]],
    ['open.expect entry with a varint key', [0x1a, 0x04, 0x42, 0x02, 0x08, 0x01]],
    ['nested length past the end', [0x1a, 0x05, 0x08]],
    ['truncated varint', [0x08, 0xff]],
    ['unknown field with wire type 6', [0x9e, 0x06, 0x00]],
  ];
  for (const [what, bytes] of cases) t.not(malformation(Buffer.from(bytes)), undefined, what);
});
