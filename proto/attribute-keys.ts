/**
 * The sysfs attributes of the wire contract (docs/design.md, "Attribute keys"): what a
 * client may name in `expect`, what `Device.attributes` carries and what a policy rule may
 * match. Paths relative to the device's sysfs directory, fixed here and never chosen by a
 * client, so no request or policy can turn into an arbitrary sysfs path.
 *
 * No protobuf here: the policy and the sysfs reader need the keys, not the messages.
 */

/** Every attribute key, in the order listings show them. */
export const ATTRIBUTE_KEYS: readonly string[] = Object.freeze([
  'size', 'ro', 'removable', 'partition', 'start',
  'loop/backing_file', 'loop/offset', 'loop/sizelimit', 'loop/autoclear', 'loop/partscan',
  'dm/name', 'dm/uuid', 'wwid', 'device/serial', 'device/model', 'device/vendor',
  'queue/logical_block_size',
]);

const KEY_SET: ReadonlySet<string> = new Set(ATTRIBUTE_KEYS);

/** True when key is one of ATTRIBUTE_KEYS. */
export function isAttributeKey(key: string): boolean {
  return KEY_SET.has(key);
}

/**
 * Whether a partition takes this attribute from its parent disk: the loop, device-mapper
 * and hardware identity of a partition are its disk's (a partition has no `loop/`, `dm/` or
 * `device/` directory of its own).
 */
export function readFromParent(key: string): boolean {
  return key.startsWith('loop/') || key.startsWith('dm/') || key === 'wwid' || key.startsWith('device/');
}
