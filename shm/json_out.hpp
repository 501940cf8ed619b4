// How the state dump (`bitmex-replay --dump-state`, `bitmex-example-strategy --dump-state`) writes
// names and numbers, and the file it goes to. One definition for the engine's writer and the reader
// side, so that the two dumps of the same state are the same bytes. Cold path: appends to a
// std::string.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

namespace bmx::json_out {

// Creates (or truncates) `path` so that a new file is the user's alone (0600), before a stream
// opens it: dumps and recordings of an authenticated session hold the account's orders,
// positions and margin. An existing file keeps the mode its owner gave it; a failure is left to
// the stream that opens the file next, which reports it.
inline void create_private_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd >= 0) ::close(fd);
}

// Shortest round-trip text of a double ("32186.5", "1.6425e-06").
inline void append_double(std::string& out, double v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

inline void append_int(std::string& out, int64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// Appends `s` (plain UTF-8) as the contents of a JSON string, escaping what JSON requires.
inline void append_escaped(std::string_view s, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (const char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += "\\u00";
          out.push_back(kHex[(c >> 4) & 0xF]);
          out.push_back(kHex[c & 0xF]);
        } else {
          out.push_back(c);
        }
    }
  }
}

}  // namespace bmx::json_out
