// Recorded sessions: a whole capture file in one padded buffer, cut into frames that point into it.
//
// Three line formats, detected per line (a file may mix them):
//   {"table":...}                        a bare frame (or the text `pong`), no receive time
//   1626993367.875267: {"table":...}     cryptofeed: unix seconds, ": ", the frame as received
//   1626993367875267000\t{"table":...}   ours (bitmex-feed --record): receive time in ns, a tab
// Skipped: cryptofeed's `configuration:` header, its `wss://… <-` sent-frame and `<->` connect
// lines, and blank lines. Anything else is counted as unrecognised and reported, never fatal.
//
// Frames are parsed where they lie: the buffer ends in SIMDJSON_PADDING spare bytes, so every
// frame has at least that much readable memory after it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace bmx {

struct CapturedFrame {
  const char* data;
  uint32_t len;
  int64_t recv_ns;  // 0 when the line carries no receive time
};

class Capture {
 public:
  // Reads a file. Throws std::runtime_error naming the file on I/O failure.
  static Capture load(const std::string& path);
  // Wraps text already in memory (tests); copied into a padded buffer.
  static Capture from_text(std::string_view text);

  [[nodiscard]] const std::vector<CapturedFrame>& frames() const noexcept { return frames_; }
  // Readable bytes from `f.data` to the end of the padded buffer.
  [[nodiscard]] size_t capacity(const CapturedFrame& f) const noexcept {
    return static_cast<size_t>(buffer_.get() + padded_size_ - f.data);
  }
  [[nodiscard]] size_t bytes() const noexcept { return size_; }
  [[nodiscard]] uint64_t skipped_lines() const noexcept { return skipped_; }
  [[nodiscard]] uint64_t unrecognized_lines() const noexcept { return unrecognized_; }
  // First few unrecognised lines (line number, excerpt), for the report.
  [[nodiscard]] const std::vector<std::pair<uint64_t, std::string>>& unrecognized_samples()
      const noexcept {
    return samples_;
  }

 private:
  void split();

  std::unique_ptr<char[]> buffer_;
  size_t size_ = 0;
  size_t padded_size_ = 0;
  std::vector<CapturedFrame> frames_;
  uint64_t skipped_ = 0;
  uint64_t unrecognized_ = 0;
  std::vector<std::pair<uint64_t, std::string>> samples_;
};

}  // namespace bmx
