/**
 * diskseq-open --help: the reference for the command line (the man page, diskseq-open(1),
 * says the same at length; test/cli-docs.test.ts keeps the two in step).
 */
import { MAX_TARGET_FD } from './cli-args.js';
import { PROGRAM } from './cli-messages.js';
import { COLUMNS, DEFAULT_COLUMNS } from './list-format.js';

/** The text of --help. */
export const USAGE = `Usage:
  ${PROGRAM} [OPTIONS] DEVICE [[OPTIONS] DEVICE]... -- COMMAND [ARG...]
  ${PROGRAM} -l|--list [-J] [-b] [-n] [-o LIST] [DEVICE|NAME|FILE]...
  ${PROGRAM} --watch
  ${PROGRAM} --status [--json]
  ${PROGRAM} --preload -- COMMAND [ARG...]
  ${PROGRAM} -h|--help | -V|--version
Every form takes --socket PATH.

Opens each DEVICE through diskseqd, which verifies on the fd that it is that disk instance
(and ${PROGRAM} checks BLKGETDISKSEQ on the fd again), then runs COMMAND with the fds:
the first DEVICE at fd 3, the next at 4 and so on, or where --fd puts it. In every ARG,
{} becomes /dev/fd/N of the first DEVICE and {N} /dev/fd/N of the DEVICE at fd N (a
shell's \${N} stays as it is). All DEVICEs are open and verified before COMMAND starts;
if any fails, the others are closed and COMMAND does not run. ${PROGRAM} keeps its own
copies open until COMMAND ends and forwards SIGINT, SIGTERM and SIGHUP to it.
Tools reopen /dev/fd/N: for a user other than root that works only when the policy
grants the device with "exclusive"; otherwise pass the fd itself (e.g. <&3).

DEVICE (a diskseq, optionally a partition of that disk):
  42  42p1  42-part1  /dev/disk/by-diskseq/42  /dev/disk/by-diskseq/42-part1
A kernel name (loop4, /dev/sda) is not a disk instance: \`${PROGRAM} --list loop4\` shows
the diskseq it has now.

Options of one DEVICE (they go before it, and each DEVICE has its own):
  -w, --rw            open read-write (default read-only)
      --wo            open write-only
  -x, --exclusive     open with O_EXCL (BUSY if the device is in use or mounted). Leave
                      it out for tools that open {} with O_EXCL themselves (mkfs.*,
                      e2fsck, fsck): their reopen would fail "in use" against this hold,
                      and their own O_EXCL guards the device instead
      --direct        open with O_DIRECT
      --sync          open with O_SYNC
      --dsync         open with O_DSYNC
      --wait SEC      wait up to SEC seconds (decimals allowed) for DEVICE to appear
  -e, --expect KEY=VAL
                      require a sysfs attribute of DEVICE to equal VAL (repeatable),
                      e.g. --expect loop/backing_file=/srv/vm.img
      --fd N          give COMMAND this DEVICE at fd N, 3 <= N <= ${MAX_TARGET_FD}
                      (default: the lowest number from 3 up that no other DEVICE takes)
For every form:
      --socket PATH   daemon socket (default: $DISKSEQD_SOCKET, else /run/diskseqd.sock)

Listing, like lsblk: -l, --list [DEVICE|NAME|FILE]...
  Disks with their partitions under them, each with the DEVICE to open it by (its
  current diskseq). Arguments choose what to show: a DEVICE form, a kernel name (loop4),
  a device path (/dev/loop4, /dev/mapper/NAME) or a loop device's backing file.
  -J, --json          lsblk's JSON shape: {"blockdevices": [{..., "children": [...]}]};
                      by default with DISKSEQ and PARTN too, as numbers
  -b, --bytes         sizes in bytes (numbers in JSON) instead of 8M, 1.5G
  -n, --noheadings    no header line
  -o, --output LIST   columns, comma-separated; +LIST adds to the default ones
                      (${DEFAULT_COLUMNS.join(',')}). Columns:
${Object.entries(COLUMNS).map(([name, column]) => `                        ${name.padEnd(10)}${column.help}`).join('\n')}

Other forms:
      --watch         print one JSON line per device event until interrupted (SIGINT,
                      SIGTERM, SIGHUP or a closed stdout end it with status 0)
      --status        how the daemon is doing: version, uptime, devices indexed,
                      connections, requests answered by outcome, waiting opens, watchers,
                      uevent overruns; with --json, as one JSON object. Other users'
                      numbers need root or the policy's status_viewers
      --preload       run COMMAND with LD_PRELOAD=<package>/build/Release/libdiskseq-preload.so
                      prepended, so that its opens of /dev/disk/by-diskseq/... go through
                      diskseqd (with --socket, DISKSEQD_SOCKET is set for COMMAND)
  -h, --help          show this text
  -V, --version       show the version

Environment:
  DISKSEQD_SOCKET     the daemon socket when --socket is not given
  DISKSEQD_PRELOAD_LIBRARY
                      with --preload: another copy of the shim to preload, for a COMMAND
                      whose user cannot read the package's build directory
  DISKSEQ_PRELOAD_DEBUG=1
                      with --preload: the shim writes one line to stderr for each
                      /dev/disk/by-diskseq/... call that fails, with the ErrorCode's name

Exit status:
  Forms that run COMMAND (DEVICE... -- COMMAND, --preload):
    COMMAND's own status; 128+N if COMMAND was killed by signal N
    125  ${PROGRAM} failed and COMMAND was not run: a usage error, diskseqd unreachable,
         a refusal (one line on stderr naming the ErrorCode, e.g. NOT_FOUND), or a
         /dev/fd/N that COMMAND names ({} or {N}) but could not reopen
    126  COMMAND could not be executed
    127  COMMAND was not found
  Forms without COMMAND (--list, --watch, --status, --help, --version):
    0    success
    1    any failure: a usage error, diskseqd unreachable or refusing, a --list
         argument that matches nothing

Examples:
  ${PROGRAM} 42p1 -- sh -c 'head -c 16 {}'
  ${PROGRAM} --rw 42 -- mkfs.ext4 {}
  ${PROGRAM} 42 --rw 43 -- qemu-img convert -f raw -O raw {3} {4}
  ${PROGRAM} 42p2 -- cryptsetup luksDump --disable-locks {}
      (when not root: --disable-locks, as cryptsetup's lock directory is root's, and a
      grant with "exclusive", which {} needs for its reopen; or pass the fd itself: <&3)
  ${PROGRAM} --list /srv/vm.img
`;
