/*
 * The real libc functions behind the interposed names, found with dlsym(RTLD_NEXT).
 */
#ifndef DISKSEQ_PRELOAD_REAL_LIBC_H
#define DISKSEQ_PRELOAD_REAL_LIBC_H

#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>

struct statx;

/* One pointer per interposed function; NULL when this libc lacks the symbol. */
struct real_libc {
  int (*open)(const char *, int, ...);
  int (*open64)(const char *, int, ...);
  int (*openat)(int, const char *, int, ...);
  int (*openat64)(int, const char *, int, ...);
  int (*open_2)(const char *, int);
  int (*open64_2)(const char *, int);
  int (*openat_2)(int, const char *, int);
  int (*openat64_2)(int, const char *, int);
  int (*creat)(const char *, mode_t);
  int (*creat64)(const char *, mode_t);
  FILE *(*fopen)(const char *, const char *);
  FILE *(*fopen64)(const char *, const char *);
  FILE *(*freopen)(const char *, const char *, FILE *);
  FILE *(*freopen64)(const char *, const char *, FILE *);

  int (*stat)(const char *, struct stat *);
  int (*stat64)(const char *, struct stat64 *);
  int (*lstat)(const char *, struct stat *);
  int (*lstat64)(const char *, struct stat64 *);
  int (*fstatat)(int, const char *, struct stat *, int);
  int (*fstatat64)(int, const char *, struct stat64 *, int);
  int (*statx)(int, const char *, int, unsigned int, struct statx *);
  int (*xstat)(int, const char *, struct stat *);
  int (*xstat64)(int, const char *, struct stat64 *);
  int (*lxstat)(int, const char *, struct stat *);
  int (*lxstat64)(int, const char *, struct stat64 *);
  int (*fxstatat)(int, int, const char *, struct stat *, int);
  int (*fxstatat64)(int, int, const char *, struct stat64 *, int);
  int (*fxstat)(int, int, struct stat *);
  int (*fxstat64)(int, int, struct stat64 *);

  int (*access)(const char *, int);
  int (*faccessat)(int, const char *, int, int);
  int (*euidaccess)(const char *, int);
  int (*eaccess)(const char *, int);
  ssize_t (*readlink)(const char *, char *, size_t);
  ssize_t (*readlinkat)(int, const char *, char *, size_t);
  char *(*realpath)(const char *, char *);
  char *(*realpath_chk)(const char *, char *, size_t);
  char *(*canonicalize_file_name)(const char *);

  ssize_t (*getxattr)(const char *, const char *, void *, size_t);
  ssize_t (*lgetxattr)(const char *, const char *, void *, size_t);
  ssize_t (*listxattr)(const char *, char *, size_t);
  ssize_t (*llistxattr)(const char *, char *, size_t);
};

/*
 * The resolved pointers. Resolution happens once (pthread_once), normally in the shim's
 * constructor - before the program can start threads or fork, so a child never inherits
 * a half-finished pthread_once - and otherwise on the first interposed call.
 */
const struct real_libc *real_libc(void);

/* True when DISKSEQ_PRELOAD_DEBUG was set (non-empty) at load time. */
int preload_debug_enabled(void);

#endif
