/**
 * A copy of this built checkout under a directory of mode 0700, for
 * private-checkout.test.ts: what a clone under /root looks like to every user but root.
 * Files are hard links where the filesystem allows (the copy is then cheap: node_modules
 * alone is tens of megabytes), else copies; either way nothing in the copy can be reached
 * by another user through the copy's paths.
 */
import {
  copyFileSync, linkSync, lstatSync, mkdirSync, readdirSync, readlinkSync, symlinkSync,
} from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../testkit/repo.js';

/** What running the built code needs: the programs, the compiled code, the addon and the shim, the dependencies. */
const PARTS = ['package.json', 'bin', 'dist', 'build/Release/diskseqd.node', 'build/Release/libdiskseq-preload.so', 'node_modules'];

/** Copies what PARTS names from this checkout to `to` (created; its parent must exist). */
export function copyBuiltCheckout(to: string): void {
  mkdirSync(to, { mode: 0o755 });
  for (const part of PARTS) {
    const target = join(to, part);
    mkdirSync(join(target, '..'), { recursive: true });
    copyTree(join(REPO_ROOT, part), target);
  }
}

function copyTree(from: string, to: string): void {
  const st = lstatSync(from);
  if (st.isSymbolicLink()) {
    symlinkSync(readlinkSync(from), to);
  } else if (st.isDirectory()) {
    mkdirSync(to, { mode: st.mode & 0o7777 });
    for (const name of readdirSync(from)) copyTree(join(from, name), join(to, name));
  } else {
    try {
      linkSync(from, to);
    } catch (error) {
      if (!['EXDEV', 'EPERM'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error;
      copyFileSync(from, to);
    }
  }
}
