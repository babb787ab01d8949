// tsc type-checks against proto/gen/diskseqd.d.ts but emits neither the generated JavaScript
// nor its declarations: copy both next to the compiled code that imports them, so the package
// runs and a strict TypeScript consumer finds the types of everything it imports.
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';

const root = join(dirname(new URL(import.meta.url).pathname), '..');
mkdirSync(join(root, 'dist', 'proto', 'gen'), { recursive: true });
for (const file of ['diskseqd.js', 'diskseqd.d.ts']) {
  copyFileSync(join(root, 'proto', 'gen', file), join(root, 'dist', 'proto', 'gen', file));
}
