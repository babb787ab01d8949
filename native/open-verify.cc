// The open-and-verify job (docs/design.md, "Open and verify"): steps 3 and 4 a-d, the sysfs
// reads e and f need, and the step-g re-probe, in one job off the event loop, so that one
// open costs one hop. TypeScript decides what to expect and which attributes to read; this
// file only does the system calls in the right order and reports what it saw.
#include <fcntl.h>
#include <linux/loop.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "addon.h"
#include "errors.h"
#include "jobs.h"
#include "probe.h"

namespace diskseqd {

namespace {

/** Slots of an openVerified result before the attribute values (see Settle). */
constexpr uint32_t kVerifiedSlots = 3 + 2 * kProbeSlots;

/** A sysfs attribute is at most a page. */
constexpr size_t kValueMax = 4096;
constexpr size_t kPathMax = 4096;

/** What TypeScript decided for one open (see native/index.ts, openVerified). */
struct OpenPlan {
  std::string path;
  int flags = 0;
  /** >= 0: mknod `path` with this group and mode first (a private node), unlink it after. */
  int node_gid = -1;
  int node_mode = 0;
  unsigned major = 0, minor = 0;
  uint64_t diskseq = 0;
  uint32_t partition = 0;
  bool is_loop = false;
  bool needs_partscan = false;
  std::string sysfs_root;
  std::vector<std::string> keys;
  uint32_t from_parent = 0;  // bit i: keys[i] is the parent disk's
};

/** Reads a small file into buf (at most cap bytes) with one read; 0 or the errno. */
int ReadSmall(const char* path, char* buf, size_t cap, size_t* len) {
  int fd;
  do {
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return errno;
  ssize_t n;
  do {
    n = read(fd, buf, cap);
  } while (n < 0 && errno == EINTR);
  int err = n < 0 ? errno : 0;
  close(fd);
  if (err != 0) return err;
  *len = static_cast<size_t>(n);
  if (*len > 0 && buf[*len - 1] == '\n') (*len)--;  // values compare without the newline
  return 0;
}

/**
 * Every allocation happens on the JS thread (construction, Settle): a worker thread that
 * never mallocs never gets a malloc arena of its own.
 */
class OpenVerifyJob : public Job {
 public:
  explicit OpenVerifyJob(OpenPlan plan)
      : plan_(std::move(plan)),
        values_(new char[(plan_.keys.size() + 1) * kValueMax]),
        lengths_(plan_.keys.size() + 1, 0),
        errors_(plan_.keys.size() + 1, 0) {}

  ~OpenVerifyJob() override { Abandon(); }

  const char* Kind() const override { return "openVerify"; }

  void Run() override {
    if (!OpenFd()) return;
    int err = ProbeFd(fd_, &first_);
    if (err != 0) {
      Fail(err, "fstat");
      return;
    }
    // a-c on the probe taken right after the open.
    if (IdentityProblem(first_)) return Reject();
    // d. Read after the open: an open partition cannot be deleted (BLKPG gives EBUSY).
    char path[kPathMax];
    ReadAttribute(path, 0, "partition", false);
    if (PartitionProblem()) return Reject();
    // The attributes e and f need, named by TypeScript, of the opened dev_t.
    for (size_t i = 0; i < plan_.keys.size(); i++) {
      ReadAttribute(path, i + 1, plan_.keys[i].c_str(), (plan_.from_parent >> i) & 1);
    }
    // g. Liveness and diskseq again, after the last sysfs read.
    err = ProbeFd(fd_, &last_);
    if (err != 0) {
      Fail(err, "fstat");
      return;
    }
    have_last_ = true;
    if (IdentityProblem(last_)) {
      char what[sizeof mismatch_];
      memcpy(what, mismatch_, sizeof what);
      snprintf(mismatch_, sizeof mismatch_, "re-check: %.180s", what);
      return Reject();
    }
  }

  bool Settle(Napi::Env env, napi_deferred deferred) override {
    if (err_ != 0) {
      napi_reject_deferred(env, deferred, ErrnoError(env, err_, syscall_, plan_.path).Value());
      return true;
    }
    // The layout native/index.ts reads (kVerifiedSlots): fd, mismatch, partition, the first
    // probe, the step-g probe (its first slot null when there was none), the values.
    uint32_t keys = static_cast<uint32_t>(plan_.keys.size());
    Napi::Array result = Napi::Array::New(env, kVerifiedSlots + keys);
    result.Set(0u, Napi::Number::New(env, fd_));
    result.Set(1u, mismatch_[0] != '\0' ? Napi::Value(Napi::String::New(env, mismatch_)) : env.Null());
    result.Set(2u, Value(env, 0));
    ProbeToSlots(env, first_, result, 3);
    if (have_last_) {
      ProbeToSlots(env, last_, result, 3 + kProbeSlots);
    } else {
      result.Set(3 + kProbeSlots, env.Null());
    }
    for (uint32_t i = 0; i < keys; i++) result.Set(kVerifiedSlots + i, Value(env, i + 1));
    if (env.IsExceptionPending()) {
      napi_reject_deferred(env, deferred, env.GetAndClearPendingException().Value());
      return fd_ < 0;  // fd_ is still ours
    }
    if (napi_resolve_deferred(env, deferred, result) != napi_ok) return fd_ < 0;
    fd_ = -1;  // the caller owns it now
    return true;
  }

  void Abandon() override {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  /** Step 3: the open, through a private node when asked. False with err_ set on failure. */
  bool OpenFd() {
    const int flags = plan_.flags | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW;
    if (plan_.node_gid < 0) {
      do {
        fd_ = open(plan_.path.c_str(), flags);
      } while (fd_ < 0 && errno == EINTR);
      if (fd_ < 0) return Fail(errno, "open");
      return true;
    }
    // A node for a removed loop minor would re-create that device when opened
    // (CONFIG_BLOCK_LEGACY_AUTOLOAD): open only a dev_t that sysfs lists now.
    char path[kPathMax], dev[64];
    size_t len = 0;
    snprintf(path, sizeof path, "%s/dev/block/%u:%u/dev", plan_.sysfs_root.c_str(), plan_.major, plan_.minor);
    int err = ReadSmall(path, dev, sizeof dev, &len);
    if (err != 0) return Fail(err, "open(sysfs dev/block)");
    const char* node = plan_.path.c_str();
    if (mknod(node, S_IFBLK, makedev(plan_.major, plan_.minor)) != 0) return Fail(errno, "mknod");
    // Owner root (an owner could chmod it), group the peer's, group bits the grant.
    if (chown(node, 0, static_cast<gid_t>(plan_.node_gid)) != 0) {
      err = errno;
      unlink(node);
      return Fail(err, "chown");
    }
    if (chmod(node, static_cast<mode_t>(plan_.node_mode)) != 0) {
      err = errno;
      unlink(node);
      return Fail(err, "chmod");
    }
    do {
      fd_ = open(node, flags);
    } while (fd_ < 0 && errno == EINTR);
    err = fd_ < 0 ? errno : 0;
    if (unlink(node) != 0 && fd_ >= 0) {
      // Never hand out an fd whose node could not be removed: it would outlive the grant.
      return Fail(errno, "unlink");
    }
    if (err != 0) return Fail(err, "open");
    return true;
  }

  /** Reads `key` of the opened dev_t into slot i (from its parent disk when from_parent). */
  void ReadAttribute(char* path, size_t i, const char* key, bool from_parent) {
    // Built as text: the kernel resolves "/.." after following the dev/block link, so it
    // reaches the parent disk's directory. A missing file is the read's ENOENT.
    snprintf(path, kPathMax, "%s/dev/block/%u:%u/%s%s", plan_.sysfs_root.c_str(), first_.rdev_major,
             first_.rdev_minor, from_parent ? "../" : "", key);
    errors_[i] = ReadSmall(path, values_.get() + i * kValueMax, kValueMax, &lengths_[i]);
  }

  /** Steps a-c (and g's b and c): writes what is wrong to mismatch_ and returns true. */
  bool IdentityProblem(const FdProbe& p) {
    if (!S_ISBLK(p.mode)) return Say("not a block device");
    if (p.rdev_major != plan_.major || p.rdev_minor != plan_.minor) {
      return Say("dev_t %u:%u, expected %u:%u", p.rdev_major, p.rdev_minor, plan_.major, plan_.minor);
    }
    if (plan_.is_loop) {
      if (p.loop_bound != 1) return Say("loop device is not bound");
      if (plan_.needs_partscan && (p.loop_flags & LO_FLAGS_PARTSCAN) == 0) return Say("loop device lost LO_FLAGS_PARTSCAN");
    }
    if (!p.has_size || p.size == 0) return Say("device is empty");
    if (!p.has_diskseq) return Say("diskseq is unreadable (errno %d)", p.diskseq_errno);
    if (p.diskseq != plan_.diskseq) return Say("diskseq is %" PRIu64, p.diskseq);
    return false;
  }

  /** Step d on slot 0: N = 0 must not be a partition, N > 0 must be partition N. */
  bool PartitionProblem() {
    const bool absent = errors_[0] != 0;
    const int len = static_cast<int>(lengths_[0] > 32 ? 32 : lengths_[0]);
    const char* value = values_.get();
    if (plan_.partition == 0) return !absent && Say("is partition %.*s, expected a whole disk", len, value);
    char want[16];
    int want_len = snprintf(want, sizeof want, "%u", plan_.partition);
    if (!absent && static_cast<size_t>(want_len) == lengths_[0] && memcmp(want, value, lengths_[0]) == 0) return false;
    return Say("is partition %.*s, expected %u", absent ? 4 : len, absent ? "none" : value, plan_.partition);
  }

  __attribute__((format(printf, 2, 3))) bool Say(const char* format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(mismatch_, sizeof mismatch_, format, args);
    va_end(args);
    return true;
  }

  /** A failed verification: closed here, in the same job (no extra hop); mismatch_ says why. */
  void Reject() {
    close(fd_);  // still off the loop: a last close of a block device may be slow
    fd_ = -1;
  }

  /** A failed system call: the promise rejects with its errno. Returns false. */
  bool Fail(int err, const char* syscall) {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    err_ = err;
    syscall_ = syscall;
    return false;
  }

  Napi::Value Value(Napi::Env env, size_t i) const {
    if (errors_[i] != 0) return env.Null();
    return Napi::String::New(env, values_.get() + i * kValueMax, lengths_[i]);
  }

  OpenPlan plan_;
  std::unique_ptr<char[]> values_;  // slot 0: `partition`; slot i + 1: keys[i]
  std::vector<size_t> lengths_;
  std::vector<int> errors_;
  int fd_ = -1;
  int err_ = 0;
  const char* syscall_ = nullptr;
  FdProbe first_;
  FdProbe last_;
  bool have_last_ = false;
  char mismatch_[192] = {0};
};

/** An attribute key as TypeScript passes it: relative, no "." or ".." component, no NUL. */
bool SafeKey(const std::string& key) {
  if (key.empty() || key[0] == '/' || key.size() > 64) return false;
  size_t start = 0;
  for (;;) {
    size_t slash = key.find('/', start);
    std::string part = key.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (part.empty() || part == "." || part == "..") return false;
    if (slash == std::string::npos) return true;
    start = slash + 1;
  }
}

Napi::Value OpenVerified(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  OpenPlan plan;
  int32_t gid, mode, major, minor, partition, checks, from_parent;
  if (!ArgString(info, 0, &plan.path) || !ArgInt(info, 1, &plan.flags) || !ArgInt(info, 2, &gid) ||
      !ArgInt(info, 3, &mode) || !ArgInt(info, 4, &major) || !ArgInt(info, 5, &minor) ||
      !ArgBigUint64(info, 6, &plan.diskseq) || !ArgInt(info, 7, &partition) || !ArgInt(info, 8, &checks) ||
      !ArgString(info, 9, &plan.sysfs_root) || !ArgInt(info, 11, &from_parent)) {
    return env.Undefined();
  }
  if (info.Length() <= 10 || !info[10].IsArray()) {
    Napi::TypeError::New(env, "argument 10 must be an array of attribute keys").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array keys = info[10].As<Napi::Array>();
  if (keys.Length() > 32 || major < 0 || minor < 0 || partition < 0) {
    Napi::RangeError::New(env, "openVerified: argument out of range").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  for (uint32_t i = 0; i < keys.Length(); i++) {
    Napi::Value key = keys.Get(i);
    if (!key.IsString()) return env.Undefined();
    plan.keys.push_back(key.As<Napi::String>().Utf8Value());
    if (!SafeKey(plan.keys.back())) {
      Napi::TypeError::New(env, "openVerified: attribute keys are relative sysfs paths").ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  plan.node_gid = gid;
  plan.node_mode = mode & 07777;
  plan.major = static_cast<unsigned>(major);
  plan.minor = static_cast<unsigned>(minor);
  plan.partition = static_cast<uint32_t>(partition);
  plan.is_loop = (checks & 1) != 0;
  plan.needs_partscan = (checks & 2) != 0;
  plan.from_parent = static_cast<uint32_t>(from_parent);
  return SubmitJob(env, static_cast<JobPool*>(info.Data()), new OpenVerifyJob(std::move(plan)));
}

}  // namespace

void InitOpenVerify(Napi::Env env, Napi::Object exports, JobPool* pool) {
  exports.Set("openVerified", Napi::Function::New(env, OpenVerified, "openVerified", pool));
}

}  // namespace diskseqd
