#!/usr/bin/env node
// diskseq-open: see `diskseq-open --help`. The implementation is dist/client/cli.js (npm run build);
// main() reports every failure itself, so an error reaching this point is a bug (status 125).
import { main } from '../dist/client/cli.js';

main(process.argv.slice(2)).then(
  (status) => {
    process.exitCode = status;
  },
  (error) => {
    process.stderr.write(`diskseq-open: internal error: ${error?.stack ?? error}\n`);
    process.exitCode = 125;
  },
);
