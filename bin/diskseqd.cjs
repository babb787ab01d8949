#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS MALLOC_ARENA_MAX=2 node --max-semi-space-size=1 --optimize-for-size
// What each setting buys (measured with bench/memory.ts, the daemon exec'd through this line;
// docs/design.md, "Memory"): most of the RSS is Node's own binary (~43 MiB of file pages)
// and the V8 heap; the rest is malloc.
// --max-semi-space-size=1: a 1 MiB young generation (~90 MiB after 100,000 opens with V8's
//   default, ~65 MiB with this), at no measurable latency: per-request garbage is short-lived.
// --optimize-for-size: V8 grows the old generation by 2 MiB steps instead of 8 after each
//   full collection (and by a smaller factor), which is where ~1 KiB of promoted garbage per
//   request piled up: ~8 MiB less at the end of 100,000 opens, no measurable cost per open.
//   Not a limit: the heap still grows as far as a hostile load needs.
// MALLOC_ARENA_MAX=2: glibc gives each thread that mallocs (V8's, libuv's, the addon's
//   workers) an arena of its own; two arenas save ~1.5 MiB. glibc reads it at exec, so here.
// -u NODE_EXTRA_CA_CERTS: Node parses that certificate file before it runs a line, ~53 ms
//   where a login environment sets it to the system bundle (bench/cold-start.ts); the daemon
//   makes no TLS connection and starts no program.
//
// CommonJS, and the daemon as one bundled file (scripts/bundle.js): an ES module entry
// point alone costs Node its ES module loader before the first line runs. start.cjs loads
// that file with the code cache of the cache directory (src/code-cache.ts).
'use strict';
require('../dist/bundle/start.cjs');
