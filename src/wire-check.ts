/**
 * A strict well-formedness check of a Request packet, before protobufjs decodes it.
 * protobufjs is lenient: it accepts field number 0, group and reserved wire types, and a
 * known field sent with the wrong wire type (it reads whatever is there). The wire
 * contract says an undecodable packet costs the client its connection, so this walks the
 * packet once against the Request schema and rejects all of those. Unknown fields with a
 * valid wire type are skipped, as proto3 requires.
 */
import $protobuf from 'protobufjs/minimal.js';

/** A message's known fields: number -> a scalar kind or a nested message's schema. */
export interface MessageSchema {
  readonly [field: number]: 'varint' | 'bytes' | MessageSchema;
}

const MAP_ENTRY_STRING_STRING: MessageSchema = { 1: 'bytes', 2: 'bytes' };

/** The Request side of proto/diskseqd.proto (checked against the .proto by a test). */
export const REQUEST_SCHEMA: MessageSchema = {
  1: 'varint', // id
  2: { 1: 'varint', 2: 'bytes' }, // hello
  3: { // open
    1: 'varint', 2: 'varint', 3: 'varint', 4: 'varint', 5: 'varint', 6: 'varint', 7: 'varint',
    8: MAP_ENTRY_STRING_STRING, 9: 'varint', 10: 'varint',
  },
  4: { 1: 'varint' }, // list
  5: {}, // watch
  6: {}, // status
};

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LENGTH = 2;
const WIRE_FIXED32 = 5;

/** Returns what is malformed in `data` read as `schema`, or undefined when it is well formed. */
export function malformation(data: Uint8Array, schema: MessageSchema = REQUEST_SCHEMA): string | undefined {
  const reader = $protobuf.Reader.create(data);
  try {
    while (reader.pos < reader.len) {
      const tag = reader.uint32();
      const field = tag >>> 3;
      const wireType = tag & 7;
      if (field === 0) return 'field number 0';
      const known = schema[field];
      if (known === undefined) {
        if (wireType !== WIRE_VARINT && wireType !== WIRE_FIXED64 && wireType !== WIRE_LENGTH && wireType !== WIRE_FIXED32) {
          return `field ${field} has wire type ${wireType}`;
        }
        reader.skipType(wireType);
        continue;
      }
      const expected = known === 'varint' ? WIRE_VARINT : WIRE_LENGTH;
      if (wireType !== expected) return `field ${field} has wire type ${wireType}, expected ${expected}`;
      if (known === 'varint') {
        reader.skipType(WIRE_VARINT);
      } else {
        const length = reader.uint32();
        if (length > reader.len - reader.pos) return `field ${field} is longer than the packet`;
        if (typeof known === 'object') {
          const inner = malformation(data.subarray(reader.pos, reader.pos + length), known);
          if (inner !== undefined) return `in field ${field}: ${inner}`;
        }
        reader.pos += length;
      }
    }
  } catch (error) {
    return (error as Error).message;
  }
  return undefined;
}
