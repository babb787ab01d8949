/**
 * org.varlink.service: what this service is (GetInfo) and the IDL text of the interfaces
 * it implements (GetInterfaceDescription), rendered once from src/varlink/interfaces.ts.
 */
import { interfaceNotFound } from './errors.js';
import { renderInterface } from './idl.js';
import { INTERFACES } from './interfaces.js';

const DESCRIPTIONS = new Map([...INTERFACES].map(([name, iface]) => [name, renderInterface(iface)]));

/** GetInfo's reply. */
export function serviceInfo(version: string): Record<string, unknown> {
  return {
    vendor: 'diskseqd',
    product: 'diskseqd: race-free block device fds by diskseq',
    version,
    url: '', // no web home yet; docs/storage-provider.md is the documentation
    interfaces: [...INTERFACES.keys()],
  };
}

/** GetInterfaceDescription's reply; InterfaceNotFound for an interface not implemented. */
export function describeInterface(name: string): Record<string, unknown> {
  const description = DESCRIPTIONS.get(name);
  if (description === undefined) throw interfaceNotFound(name);
  return { description };
}
