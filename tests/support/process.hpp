// Child processes for the multi-process tests: the real binaries, started with fork/exec, their
// stdout read through a pipe and their exit awaited through a pidfd (poll), so that tests wait for
// events, never for a guessed amount of time.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace bmxtest {

class Child {
 public:
  // Starts `argv[0]` with `argv`; stdout to a pipe this object reads, stderr to `stderr_path`
  // (or inherited when empty).
  explicit Child(std::vector<std::string> argv, const std::string& stderr_path = {}) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      if (!stderr_path.empty()) {
        const int fd = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) ::dup2(fd, 2);
      }
      std::vector<char*> args;
      for (auto& a : argv)
        args.push_back(a.data());
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      _exit(127);
    }
    ::close(out[1]);
    out_ = out[0];
    ::fcntl(out_, F_SETFL, O_NONBLOCK);
    pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (pid_ > 0 && !exit_code_) {
      ::kill(pid_, SIGKILL);
      wait(std::chrono::seconds(5));
    }
    if (out_ >= 0) ::close(out_);
    if (pidfd_ >= 0) ::close(pidfd_);
  }

  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  void signal(int sig) const { ::kill(pid_, sig); }

  // Waits for the exit (event: the pidfd becomes readable). The exit code, 128 + signal when
  // killed, or nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout) {
    if (exit_code_) return exit_code_;
    pollfd p{pidfd_, POLLIN, 0};
    if (pidfd_ >= 0 && ::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return std::nullopt;
    int status = 0;
    if (::waitpid(pid_, &status, pidfd_ >= 0 ? 0 : WNOHANG) != pid_) return std::nullopt;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    drain();
    return exit_code_;
  }

  // Reads stdout until a line containing `needle` arrives (event: the pipe becomes readable).
  bool wait_for_output(const std::string& needle, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (output_.find(needle) != std::string::npos) return true;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      if (!drain()) {
        return output_.find(needle) != std::string::npos;  // closed
      }
    }
  }

  // Everything read from stdout so far (after wait(): all of it).
  const std::string& output() {
    drain();
    return output_;
  }

 private:
  // Reads what is available; false once the pipe is closed.
  bool drain() {
    char buf[4096];
    for (;;) {
      const ssize_t n = ::read(out_, buf, sizeof buf);
      if (n > 0) {
        output_.append(buf, static_cast<size_t>(n));
        continue;
      }
      return n < 0 && errno == EAGAIN;
    }
  }

  pid_t pid_ = -1;
  int out_ = -1;
  int pidfd_ = -1;
  std::optional<int> exit_code_;
  std::string output_;
};

}  // namespace bmxtest
