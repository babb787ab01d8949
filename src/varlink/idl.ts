/**
 * A Varlink interface as data: the one source of both the IDL text that
 * org.varlink.service.GetInterfaceDescription returns and the check of every call's
 * parameters against it (docs/design.md, "Second front-end: Varlink"). Types are written
 * as in the IDL (`string`, `?bool`, `?[]string`, `?CreateMode`); a named type must be an
 * enum of the same interface.
 */

/** One field of a method's input or output, or of an error. */
export interface IdlField {
  name: string;
  /** The IDL type: [?]([]|[string])*(bool|int|float|string|object|EnumName). */
  type: string;
  comment?: string;
}

/** An enum type. */
export interface IdlEnum {
  kind: 'enum';
  name: string;
  comment?: string;
  values: { name: string; comment?: string }[];
}

/** A method. */
export interface IdlMethod {
  kind: 'method';
  name: string;
  comment?: string;
  /** Calls without `more` are answered org.varlink.service.ExpectedMore. */
  requiresMore?: boolean;
  input: IdlField[];
  output: IdlField[];
}

/** An error and its parameters. */
export interface IdlError {
  kind: 'error';
  name: string;
  comment?: string;
  fields: IdlField[];
}

/** A whole interface, members in the order the IDL text lists them. */
export interface IdlInterface {
  name: string;
  comment?: string;
  members: (IdlEnum | IdlMethod | IdlError)[];
}

/** The interface's IDL text, laid out as systemd's sd-varlink prints it. */
export function renderInterface(iface: IdlInterface): string {
  const out: string[] = [];
  comment(out, '', iface.comment);
  out.push(`interface ${iface.name}`);
  for (const member of iface.members) {
    out.push('');
    comment(out, '', member.comment);
    if (member.kind === 'enum') {
      out.push(`type ${member.name}(`);
      member.values.forEach((value, i) => {
        comment(out, '\t', value.comment);
        out.push(`\t${value.name}${i < member.values.length - 1 ? ',' : ''}`);
      });
      out.push(')');
    } else if (member.kind === 'method') {
      if (member.requiresMore) out.push("# [Requires 'more' flag]");
      out.push(`method ${member.name}${fieldList(member.input)} -> ${fieldList(member.output)}`);
    } else {
      out.push(`error ${member.name}${fieldList(member.fields)}`);
    }
  }
  return `${out.join('\n')}\n`;
}

function comment(out: string[], indent: string, text: string | undefined): void {
  if (text !== undefined) for (const line of text.split('\n')) out.push(`${indent}# ${line}`);
}

function fieldList(fields: IdlField[]): string {
  if (fields.length === 0) return '()';
  const lines: string[] = ['('];
  fields.forEach((field, i) => {
    comment(lines, '\t', field.comment);
    lines.push(`\t${field.name}: ${field.type}${i < fields.length - 1 ? ',' : ''}`);
  });
  lines.push(')');
  return lines.join('\n');
}

/** Finds a method of the interface by its short name. */
export function findMethod(iface: IdlInterface, name: string): IdlMethod | undefined {
  return iface.members.find((m): m is IdlMethod => m.kind === 'method' && m.name === name);
}

/**
 * Checks call parameters against a method's input: every field of the right type,
 * non-nullable ones present, no field the method does not have. Returns the name of the
 * first offending parameter (what org.varlink.service.InvalidParameter names), or
 * undefined when they fit. `null` counts as absent, as in sd-varlink.
 */
export function invalidParameter(iface: IdlInterface, method: IdlMethod, parameters: Record<string, unknown>): string | undefined {
  const known = new Set(method.input.map((f) => f.name));
  for (const key of Object.keys(parameters)) if (!known.has(key)) return key;
  for (const field of method.input) {
    if (!fits(iface, field.type, parameters[field.name])) return field.name;
  }
  return undefined;
}

/** Whether a JSON value has the IDL type `type` (undefined: the field is absent). */
function fits(iface: IdlInterface, type: string, value: unknown): boolean {
  if (type.startsWith('?')) return value === undefined || value === null || fits(iface, type.slice(1), value);
  if (value === undefined || value === null) return false;
  if (type.startsWith('[]')) return Array.isArray(value) && value.every((v) => fits(iface, type.slice(2), v));
  if (type.startsWith('[string]')) {
    return isPlainObject(value) && Object.values(value).every((v) => fits(iface, type.slice(8), v));
  }
  switch (type) {
    case 'bool': return typeof value === 'boolean';
    case 'int': return typeof value === 'number' && Number.isInteger(value);
    case 'float': return typeof value === 'number';
    case 'string': return typeof value === 'string';
    case 'object': return isPlainObject(value);
  }
  const named = iface.members.find((m): m is IdlEnum => m.kind === 'enum' && m.name === type);
  if (named === undefined) throw new Error(`IDL of ${iface.name}: unknown type ${type}`);
  return typeof value === 'string' && named.values.some((v) => v.name === value);
}

/** A JSON object (not an array, not null). */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
