#include "engine/json_text.hpp"

#include "shm/json_out.hpp"

#include <cstdint>

namespace bmx::json {

namespace {

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool read_hex4(std::string_view s, size_t pos, uint32_t& out) noexcept {
  if (pos + 4 > s.size()) return false;
  uint32_t v = 0;
  for (size_t i = pos; i < pos + 4; ++i) {
    const int h = hex_value(s[i]);
    if (h < 0) return false;
    v = v * 16 + static_cast<uint32_t>(h);
  }
  out = v;
  return true;
}

template <class Out>
void append_utf8(uint32_t cp, Out& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Decodes the contents of a JSON string (between the quotes) into `out` (anything with
// push_back(char)). False on a bad escape.
template <class Out>
bool unescape(std::string_view s, Out& out) {
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c != '\\') {
      out.push_back(c);
      continue;
    }
    if (++i >= s.size()) return false;
    switch (s[i]) {
      case '"':
        out.push_back('"');
        break;
      case '\\':
        out.push_back('\\');
        break;
      case '/':
        out.push_back('/');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'u': {
        uint32_t cp = 0;
        if (!read_hex4(s, i + 1, cp)) return false;
        i += 4;
        if (cp >= 0xD800 && cp < 0xDC00) {  // surrogate pair
          uint32_t lo = 0;
          if (i + 2 >= s.size() || s[i + 1] != '\\' || s[i + 2] != 'u' ||
              !read_hex4(s, i + 3, lo) || lo < 0xDC00 || lo > 0xDFFF) {
            return false;
          }
          i += 6;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
          return false;
        }
        append_utf8(cp, out);
        break;
      }
      default:
        return false;
    }
  }
  return true;
}

// A fixed buffer with push_back: bytes past its capacity are counted, not written.
struct FixedOut {
  char* data = nullptr;
  size_t capacity = 0;
  size_t size = 0;
  void push_back(char c) noexcept {
    if (size < capacity) data[size] = c;
    ++size;
  }
};

}  // namespace

bool unescape_into(std::string_view inner, char* buf, size_t capacity, size_t& length) noexcept {
  FixedOut out{buf, capacity};
  if (!unescape(inner, out) || out.size > capacity) return false;
  length = out.size;
  return true;
}

void append_escaped(std::string_view s, std::string& out) {
  json_out::append_escaped(s, out);
}

bool append_key_part(std::string_view raw, std::string& out) {
  raw = trim_token(raw);
  if (raw.empty() || raw.front() == '{' || raw.front() == '[') return false;
  if (raw.front() != '"') {
    out.append(raw);
    return true;
  }
  if (raw.size() < 2 || raw.back() != '"') return false;
  const std::string_view inner = raw.substr(1, raw.size() - 2);
  if (inner.find('\\') == std::string_view::npos) {  // the common case: already canonical
    out.append(inner);
    return true;
  }
  std::string plain;  // rare: escaped key values take the slow road
  if (!unescape(inner, plain)) return false;
  append_escaped(plain, out);
  return true;
}

}  // namespace bmx::json
