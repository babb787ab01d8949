/**
 * The README's Limits table and `diskseqd --help` state the bounds the daemon really has:
 * every flag the table names is an option the daemon accepts and --help describes, and
 * every default the table gives is the one the command line yields.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { parseCommandLine, USAGE, type Config } from '../src/config.js';

// Compiled tests live in dist/test/; the README is at the repository root.
const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const table = readme.slice(readme.indexOf('## Limits'), readme.indexOf('## Install as a system service'));
const defaults = (parseCommandLine([]) as { kind: 'run'; config: Config }).config;

/** "--max-unreceived-fds-per-uid" -> "maxUnreceivedFdsPerUid". */
const field = (flag: string): string => flag.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
/** Where a flag's value is not its config field of the same name, or not in the same unit. */
const FIELD: Record<string, keyof Config> = { '--root-share': 'rootSharePercent' };
const UNIT: Record<string, number> = { s: 1000, MiB: 1 << 20 };
/** A value each flag accepts alone (1, unless its bounds rule it out). */
const SAMPLE: Record<string, string> = { '--device-timeout-ms': '1000', '--max-device-threads': '3' };

test('every flag of the Limits table is accepted and in --help, with the default the table says', (t) => {
  const mentions = [...table.matchAll(/(?:(\d+)\s*(s|MiB|%)?[^`|(]*\()?`(--[a-z-]+)`/g)];
  t.true(mentions.length >= 15, `the table names the flags (${mentions.length} found)`);
  for (const [, number, unit, flag] of mentions) {
    t.true(USAGE.includes(`  ${flag!} `), `${flag} is described by --help`);
    const name = FIELD[flag!] ?? field(flag!);
    t.true(name in defaults, `${flag} is an option of the daemon (${name})`);
    t.notThrows(() => parseCommandLine([flag!, SAMPLE[flag!] ?? '1']), `${flag} takes a value`);
    if (number === undefined) continue;
    const value = Number(number) * (unit !== undefined && unit !== '%' ? UNIT[unit]! : 1);
    t.is(defaults[name as keyof Config], value, `${flag}: the table says ${number}${unit ?? ''}`);
  }
});
