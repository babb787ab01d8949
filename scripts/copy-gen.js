// tsc type-checks against proto/gen/diskseqd.d.ts but does not emit the generated
// JavaScript; copy it next to the compiled code that imports it.
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';

const root = join(dirname(new URL(import.meta.url).pathname), '..');
mkdirSync(join(root, 'dist', 'proto', 'gen'), { recursive: true });
copyFileSync(join(root, 'proto', 'gen', 'diskseqd.js'), join(root, 'dist', 'proto', 'gen', 'diskseqd.js'));
