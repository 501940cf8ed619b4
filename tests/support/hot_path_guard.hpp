// What the hot-path tests use to prove "no system call, no lock, no exception", beside the counting
// operator new that proves "no allocation" (counting_new.hpp). Linked into alloc_tests only.
//
// - System calls: run_without_syscalls() runs a body in a forked child under a seccomp filter
//   that lets exactly one system call through, exit_group. Any other one raises SIGSYS, whose
//   handler records its number (and the step the body had reached) in memory shared with the
//   parent and exits. A vDSO clock read is no system call and passes; one that falls back to the
//   kernel (a clock source without vDSO support) is caught like any other.
// - Locks: this library interposes pthread_mutex_lock/trylock, pthread_rwlock_rdlock/wrlock and
//   pthread_spin_lock (what std::mutex, std::shared_mutex and friends come down to) and counts
//   each call before forwarding it.
// - Exceptions: __cxa_throw is interposed and counted likewise (every C++ throw goes through it).
// Each of the three is checked to see what it guards against by a test of its own.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace bmx::testing {

// Calls of the interposed lock functions, and C++ throws, since the process started.
uint64_t lock_count() noexcept;
uint64_t throw_count() noexcept;

// What the guarded body reports back; it lives in memory shared with the parent. The body may
// write `step` (where it is: a frame index, say) and the `values` it wants the parent to check;
// no system call is needed for either.
struct GuardedReport {
  uint64_t step = 0;
  uint64_t values[16] = {};
};

struct GuardOutcome {
  bool ran_to_end = false;  // the body returned and the child exited cleanly
  long syscall = -1;        // the system call that stopped it, if one did
  uint64_t step = 0;        // report.step when it stopped (or at the end)
  GuardedReport report;     // what the body wrote
  std::string error;        // setting the guard up failed, or the child died some other way

  // One sentence for a failed assertion: which system call, at which step.
  [[nodiscard]] std::string describe() const;
};

// Empty where the filter can be installed, else why not (another CPU architecture than x86-64 or
// aarch64; a kernel or container that refuses seccomp filters). Tried once, then remembered.
const std::string& syscall_guard_unavailable();

// Forks; the child installs the filter and runs `body`, then exits with exit_group. Everything
// the body needs must be set up before (in this process: the child inherits it), since any
// system call in the body (an allocation that grows the heap, a log line, a futex) ends it.
GuardOutcome run_without_syscalls(const std::function<void(GuardedReport&)>& body);

// The name of a few system calls a hot path might make by accident, else "syscall N".
std::string syscall_name(long nr);

}  // namespace bmx::testing
