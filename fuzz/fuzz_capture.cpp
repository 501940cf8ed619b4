// libFuzzer target: the capture-file reader (engine/capture.hpp) on arbitrary text, in its three
// line formats (bare frames, cryptofeed's "seconds: frame", ours "nanoseconds<TAB>frame") and the
// lines it skips. Checks that every line is accounted for exactly once (a frame, skipped or
// unrecognised), that frames lie inside the buffer in order, hold no newline, and have
// SIMDJSON_PADDING readable bytes after them.
#include <simdjson.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/capture.hpp"
#include "fuzz/fuzz_support.hpp"

using namespace bmx;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const Capture c = Capture::from_text(text);

  const auto newlines = static_cast<uint64_t>(std::count(text.begin(), text.end(), '\n'));
  const uint64_t lines = newlines + (!text.empty() && text.back() != '\n' ? 1 : 0);
  BMX_FUZZ_CHECK(c.frames().size() + c.skipped_lines() + c.unrecognized_lines() == lines,
                 "%zu frames + %llu skipped + %llu unrecognised lines, of %llu", c.frames().size(),
                 static_cast<unsigned long long>(c.skipped_lines()),
                 static_cast<unsigned long long>(c.unrecognized_lines()),
                 static_cast<unsigned long long>(lines));
  BMX_FUZZ_CHECK(c.bytes() == size, "bytes");
  BMX_FUZZ_CHECK(c.unrecognized_samples().size() <= 5, "samples are bounded");

  const char* after_last = nullptr;
  for (const CapturedFrame& f : c.frames()) {
    const std::string_view frame(f.data, f.len);
    BMX_FUZZ_CHECK(c.capacity(f) >= f.len + simdjson::SIMDJSON_PADDING, "padding after a frame");
    BMX_FUZZ_CHECK(c.capacity(f) <= size + simdjson::SIMDJSON_PADDING, "a frame inside the buffer");
    BMX_FUZZ_CHECK(after_last == nullptr || f.data >= after_last, "frames in order");
    BMX_FUZZ_CHECK(frame.find('\n') == std::string_view::npos, "a frame is one line");
    BMX_FUZZ_CHECK(f.recv_ns >= 0, "receive time %lld", static_cast<long long>(f.recv_ns));
    after_last = f.data + f.len;
  }
  return 0;
}
