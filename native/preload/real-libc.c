/*
 * dlsym(RTLD_NEXT) resolution of the functions the shim interposes (see real-libc.h).
 */
#include "real-libc.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>

static struct real_libc resolved;
static int debug_enabled;
static pthread_once_t resolve_once = PTHREAD_ONCE_INIT;

#define RESOLVE(field, name) (*(void **)&resolved.field = dlsym(RTLD_NEXT, name))

static void resolve_all(void) {
  const char *debug = secure_getenv("DISKSEQ_PRELOAD_DEBUG");
  debug_enabled = debug != NULL && debug[0] != '\0';

  RESOLVE(open, "open");
  RESOLVE(open64, "open64");
  RESOLVE(openat, "openat");
  RESOLVE(openat64, "openat64");
  RESOLVE(open_2, "__open_2");
  RESOLVE(open64_2, "__open64_2");
  RESOLVE(openat_2, "__openat_2");
  RESOLVE(openat64_2, "__openat64_2");
  RESOLVE(creat, "creat");
  RESOLVE(creat64, "creat64");
  RESOLVE(fopen, "fopen");
  RESOLVE(fopen64, "fopen64");
  RESOLVE(freopen, "freopen");
  RESOLVE(freopen64, "freopen64");

  RESOLVE(stat, "stat");
  RESOLVE(stat64, "stat64");
  RESOLVE(lstat, "lstat");
  RESOLVE(lstat64, "lstat64");
  RESOLVE(fstatat, "fstatat");
  RESOLVE(fstatat64, "fstatat64");
  RESOLVE(statx, "statx");
  RESOLVE(xstat, "__xstat");
  RESOLVE(xstat64, "__xstat64");
  RESOLVE(lxstat, "__lxstat");
  RESOLVE(lxstat64, "__lxstat64");
  RESOLVE(fxstatat, "__fxstatat");
  RESOLVE(fxstatat64, "__fxstatat64");
  RESOLVE(fxstat, "__fxstat");
  RESOLVE(fxstat64, "__fxstat64");

  RESOLVE(access, "access");
  RESOLVE(faccessat, "faccessat");
  RESOLVE(euidaccess, "euidaccess");
  RESOLVE(eaccess, "eaccess");
  RESOLVE(readlink, "readlink");
  RESOLVE(readlinkat, "readlinkat");
  RESOLVE(realpath, "realpath");
  RESOLVE(realpath_chk, "__realpath_chk");
  RESOLVE(canonicalize_file_name, "canonicalize_file_name");

  RESOLVE(getxattr, "getxattr");
  RESOLVE(lgetxattr, "lgetxattr");
  RESOLVE(listxattr, "listxattr");
  RESOLVE(llistxattr, "llistxattr");
}

const struct real_libc *real_libc(void) {
  pthread_once(&resolve_once, resolve_all);
  return &resolved;
}

int preload_debug_enabled(void) {
  pthread_once(&resolve_once, resolve_all);
  return debug_enabled;
}

__attribute__((constructor)) static void resolve_at_load(void) {
  pthread_once(&resolve_once, resolve_all);
}
