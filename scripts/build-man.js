// Builds the man pages docs/man/NAME.SECTION.scd into dist/man/NAME.SECTION with scdoc
// (built, not committed; the package ships dist/man/ and package.json's "man" links them
// into the global prefix's share/man on `npm install -g`). Needs scdoc (Debian: scdoc).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const root = join(dirname(new URL(import.meta.url).pathname), '..');
const sources = join(root, 'docs', 'man');
const outDir = join(root, 'dist', 'man');
mkdirSync(outDir, { recursive: true });
for (const file of readdirSync(sources).filter((name) => /\.[1-8]\.scd$/.test(name))) {
  const source = join(sources, file);
  // The page's date is its source's, not the build's: the same checkout builds the same pages.
  const epoch = String(Math.floor(statSync(source).mtimeMs / 1000));
  let page;
  try {
    page = execFileSync('scdoc', [], { input: readFileSync(source), env: { ...process.env, SOURCE_DATE_EPOCH: process.env.SOURCE_DATE_EPOCH ?? epoch } });
  } catch (error) {
    const why = error.code === 'ENOENT' ? 'scdoc is not installed (Debian: apt-get install scdoc)' : String(error.stderr || error.message).trim();
    console.error(`build-man: ${file}: ${why}`);
    process.exit(1);
  }
  writeFileSync(join(outDir, file.replace(/\.scd$/, '')), page);
}
