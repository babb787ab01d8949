/**
 * The sysfs attributes a policy rule (and a client's `expect`) may name: paths relative to
 * the device's sysfs directory, exactly DESIGN.md's list. Nothing else is ever read, so no
 * policy or request can turn into an arbitrary sysfs path. For a partition, `loop/*`,
 * `dm/*`, `wwid` and `device/*` come from the parent disk (the daemon's job, not ours).
 */
import { ATTRIBUTE_KEYS } from '../wire.js';

export { ATTRIBUTE_KEYS };

const KEY_SET: ReadonlySet<string> = new Set(ATTRIBUTE_KEYS);

/** True when key is one of ATTRIBUTE_KEYS. */
export function isAttributeKey(key: string): boolean {
  return KEY_SET.has(key);
}
