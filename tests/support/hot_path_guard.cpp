#include "support/hot_path_guard.hpp"

#include <dlfcn.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <new>
#include <typeinfo>

namespace {

std::atomic<uint64_t> g_locks{0};
std::atomic<uint64_t> g_throws{0};

// The real function behind an interposed one, looked up once. No function-local static: its
// guard could itself take a lock and come back here. dlsym takes none that goes through these.
template <class F>
F next(std::atomic<F>& slot, const char* name) {
  F f = slot.load(std::memory_order_relaxed);
  if (f == nullptr) {
    f = reinterpret_cast<F>(::dlsym(RTLD_NEXT, name));
    slot.store(f, std::memory_order_relaxed);
  }
  return f;
}
using LockFn = int (*)(pthread_mutex_t*);
using RwLockFn = int (*)(pthread_rwlock_t*);
using SpinLockFn = int (*)(pthread_spinlock_t*);
using ThrowFn = void (*)(void*, std::type_info*, void (*)(void*));
std::atomic<LockFn> g_mutex_lock{nullptr}, g_mutex_trylock{nullptr};
std::atomic<RwLockFn> g_rdlock{nullptr}, g_wrlock{nullptr};
std::atomic<SpinLockFn> g_spin_lock{nullptr};
std::atomic<ThrowFn> g_throw{nullptr};

#if defined(__x86_64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_AARCH64;
#else
constexpr uint32_t kAuditArch = 0;
#endif

// Shared with the parent: the body's report and the system call that stopped it.
struct SharedPage {
  bmx::testing::GuardedReport report;
  long syscall = -1;
  uint32_t finished = 0;
};
SharedPage* g_page = nullptr;  // the child's view, for the SIGSYS handler

[[noreturn]] void exit_now(int code) {
  ::syscall(SYS_exit_group, code);  // the one system call the filter lets through
  __builtin_unreachable();
}

void on_sigsys(int /*sig*/, siginfo_t* info, void* /*ctx*/) {
  g_page->syscall = info->si_syscall;
  exit_now(3);
}

}  // namespace

extern "C" {

// Counted, then forwarded. Declared by <pthread.h> as nothrow, hence noexcept.
int pthread_mutex_lock(pthread_mutex_t* m) noexcept {
  g_locks.fetch_add(1, std::memory_order_relaxed);
  return next(g_mutex_lock, "pthread_mutex_lock")(m);
}
int pthread_mutex_trylock(pthread_mutex_t* m) noexcept {
  g_locks.fetch_add(1, std::memory_order_relaxed);
  return next(g_mutex_trylock, "pthread_mutex_trylock")(m);
}
int pthread_rwlock_rdlock(pthread_rwlock_t* l) noexcept {
  g_locks.fetch_add(1, std::memory_order_relaxed);
  return next(g_rdlock, "pthread_rwlock_rdlock")(l);
}
int pthread_rwlock_wrlock(pthread_rwlock_t* l) noexcept {
  g_locks.fetch_add(1, std::memory_order_relaxed);
  return next(g_wrlock, "pthread_rwlock_wrlock")(l);
}
int pthread_spin_lock(pthread_spinlock_t* l) noexcept {
  g_locks.fetch_add(1, std::memory_order_relaxed);
  return next(g_spin_lock, "pthread_spin_lock")(l);
}

// Every C++ throw starts here (the compiler emits a call to it for each throw expression).
[[noreturn]] void __cxa_throw(void* obj, std::type_info* type, void (*destroy)(void*)) {
  g_throws.fetch_add(1, std::memory_order_relaxed);
  next(g_throw, "__cxa_throw")(obj, type, destroy);
  __builtin_unreachable();
}

}  // extern "C"

namespace bmx::testing {

uint64_t lock_count() noexcept {
  return g_locks.load(std::memory_order_relaxed);
}
uint64_t throw_count() noexcept {
  return g_throws.load(std::memory_order_relaxed);
}

const std::string& syscall_guard_unavailable() {
  static const std::string why = [] {
    if (kAuditArch == 0) return std::string("no seccomp filter for this CPU architecture");
    const GuardOutcome trial = run_without_syscalls([](GuardedReport&) {});
    return trial.ran_to_end
               ? std::string()
               : "this machine refuses the test's seccomp filter (" + trial.describe() + ")";
  }();
  return why;
}

std::string syscall_name(long nr) {
  switch (nr) {
    case SYS_read:
      return "read";
    case SYS_write:
      return "write";
    case SYS_openat:
      return "openat";
    case SYS_close:
      return "close";
    case SYS_mmap:
      return "mmap";
    case SYS_munmap:
      return "munmap";
    case SYS_mprotect:
      return "mprotect";
    case SYS_madvise:
      return "madvise";
    case SYS_brk:
      return "brk";
    case SYS_futex:
      return "futex";
    case SYS_clock_gettime:
      return "clock_gettime";
    case SYS_gettimeofday:
      return "gettimeofday";
    case SYS_getpid:
      return "getpid";
    case SYS_getppid:
      return "getppid";
    case SYS_kill:
      return "kill";
    case SYS_sched_yield:
      return "sched_yield";
    case SYS_nanosleep:
      return "nanosleep";
    case SYS_clock_nanosleep:
      return "clock_nanosleep";
    default:
      return "syscall " + std::to_string(nr);
  }
}

std::string GuardOutcome::describe() const {
  if (!error.empty()) return error;
  if (syscall >= 0) {
    return "system call " + syscall_name(syscall) + " (number " + std::to_string(syscall) +
           ") at step " + std::to_string(step);
  }
  return ran_to_end ? "ran to the end without a system call"
                    : "stopped at step " + std::to_string(step);
}

GuardOutcome run_without_syscalls(const std::function<void(GuardedReport&)>& body) {
  GuardOutcome out;
  if (kAuditArch == 0) {
    out.error = "no seccomp filter for this architecture";
    return out;
  }
  void* mem = ::mmap(nullptr, sizeof(SharedPage), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    out.error = std::string("mmap: ") + std::strerror(errno);
    return out;
  }
  auto* page = new (mem) SharedPage{};
  const pid_t pid = ::fork();
  if (pid < 0) {
    out.error = std::string("fork: ") + std::strerror(errno);
    ::munmap(mem, sizeof(SharedPage));
    return out;
  }
  if (pid == 0) {
    g_page = page;
    struct sigaction sa {};
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (::sigaction(SIGSYS, &sa, nullptr) != 0) exit_now(10);
    // Load the arch, stop on any other; load the number, let exit_group through, trap the rest.
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kAuditArch, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_exit_group, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
    };
    sock_fprog prog{static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])), filter};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) exit_now(11);
    if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) exit_now(12);
    try {  // whatever happens, the child never returns into the test runner
      body(page->report);
    } catch (...) {
      exit_now(20);
    }
    page->finished = 1;
    exit_now(0);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  out.report = page->report;
  out.step = page->report.step;
  out.syscall = page->syscall;
  out.ran_to_end = page->finished == 1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 20) {
    out.error = "the guarded body threw at step " + std::to_string(out.step);
  } else if (WIFEXITED(status) && WEXITSTATUS(status) >= 10) {
    out.error = "setting up the seccomp filter failed in the child (exit " +
                std::to_string(WEXITSTATUS(status)) + ")";
  } else if (WIFSIGNALED(status)) {
    out.error = std::string("the child died of signal ") + ::strsignal(WTERMSIG(status)) +
                " at step " + std::to_string(out.step);
  }
  ::munmap(mem, sizeof(SharedPage));
  return out;
}

}  // namespace bmx::testing
