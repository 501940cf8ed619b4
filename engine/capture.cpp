#include "engine/capture.hpp"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include <simdjson.h>

#include "engine/timestamp.hpp"

namespace bmx {

Capture Capture::from_text(std::string_view text) {
  Capture c;
  c.size_ = text.size();
  c.padded_size_ = text.size() + simdjson::SIMDJSON_PADDING;
  c.buffer_ = std::make_unique<char[]>(c.padded_size_);
  std::memcpy(c.buffer_.get(), text.data(), text.size());
  std::memset(c.buffer_.get() + text.size(), ' ', simdjson::SIMDJSON_PADDING);
  c.split();
  return c;
}

Capture Capture::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw std::runtime_error("cannot open capture " + path + ": " + std::strerror(errno));
  const auto size = static_cast<size_t>(in.tellg());
  Capture c;
  c.size_ = size;
  c.padded_size_ = size + simdjson::SIMDJSON_PADDING;
  c.buffer_ = std::make_unique<char[]>(c.padded_size_);
  in.seekg(0);
  if (!in.read(c.buffer_.get(), static_cast<std::streamsize>(size))) {
    throw std::runtime_error("cannot read capture " + path);
  }
  std::memset(c.buffer_.get() + size, ' ', simdjson::SIMDJSON_PADDING);
  c.split();
  return c;
}

void Capture::split() {
  const char* p = buffer_.get();
  const char* end = p + size_;
  uint64_t line_no = 0;
  while (p < end) {
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
    const char* line_end = nl ? nl : end;
    ++line_no;
    std::string_view line(p, static_cast<size_t>(line_end - p));
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    p = nl ? nl + 1 : end;

    auto frame = [&](std::string_view f, int64_t ns) {
      frames_.push_back(CapturedFrame{f.data(), static_cast<uint32_t>(f.size()), ns});
    };
    if (line.empty() || line.starts_with("configuration:") || line.starts_with("wss://") ||
        line.starts_with("ws://")) {
      ++skipped_;
      continue;
    }
    if (line.front() == '{' || line.front() == '[' || line == "pong") {
      frame(line, 0);
      continue;
    }
    if (line.front() >= '0' && line.front() <= '9') {
      const size_t tab = line.find('\t');
      const size_t colon = line.find(": ");
      int64_t ns = 0;
      if (tab != std::string_view::npos && (colon == std::string_view::npos || tab < colon)) {
        const std::string_view t = line.substr(0, tab);
        // Nanoseconds since 1970 take 19 digits; more than int64 holds is not a receive time.
        bool digits = !t.empty() && t.size() <= 19;
        for (char ch : t) {
          const int d = ch - '0';
          digits = digits && d >= 0 && d <= 9 && ns <= (INT64_MAX - d) / 10;
          if (!digits) break;
          ns = ns * 10 + d;
        }
        if (digits) {
          frame(line.substr(tab + 1), ns);
          continue;
        }
      } else if (colon != std::string_view::npos && parse_unix_seconds(line.substr(0, colon), ns)) {
        frame(line.substr(colon + 2), ns);
        continue;
      }
    }
    ++unrecognized_;
    if (samples_.size() < 5) samples_.emplace_back(line_no, std::string(line.substr(0, 80)));
  }
}

}  // namespace bmx
