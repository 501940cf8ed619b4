// Small helpers for JSON text kept as received (raw tokens), used by the generic tables, the key
// lookup and the state dump. Cold-path helpers may allocate; the hot ones say they do not.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace bmx::json {

// Strips the whitespace that simdjson leaves after a raw token. A token almost always ends in a
// quote, a digit or a letter, above every whitespace byte: one compare says so. No allocation.
constexpr std::string_view trim_token(std::string_view t) noexcept {
  if (!t.empty() && static_cast<unsigned char>(t.back()) > ' ') return t;
  while (!t.empty() &&
         (t.back() == ' ' || t.back() == '\t' || t.back() == '\n' || t.back() == '\r'))
    t.remove_suffix(1);
  return t;
}

// A raw object key from the byte after its opening quote: scans to the closing quote, stepping over
// escapes. Only for keys simdjson has already validated as closed strings. No allocation.
inline std::string_view scan_raw_key(const char* p) noexcept {
  const char* q = p;
  while (*q != '"')
    q += (*q == '\\') ? 2 : 1;
  return {p, static_cast<size_t>(q - p)};
}

// 16 bytes as one vector value (GCC/Clang vector extension: ^, &, == work lane by lane).
using Bytes16 = signed char __attribute__((vector_size(16)));

// True when every byte of `v` is zero. No branch.
inline bool all_zero(Bytes16 v) noexcept {
  uint64_t w[2];
  __builtin_memcpy(w, &v, 16);
  return (w[0] | w[1]) == 0;
}

// Equality of two short byte strings with two 16-byte compares and no loop or libc call: both
// pointers must have 32 readable bytes (a padded simdjson input, an Interner name). n <= 32.
inline bool short_equal(const char* a, const char* b, size_t n) noexcept {
  using V = Bytes16;
  static constexpr V kLo = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  static constexpr V kHi = kLo + 16;
  V a0, a1, b0, b1;
  __builtin_memcpy(&a0, a, 16);
  __builtin_memcpy(&a1, a + 16, 16);
  __builtin_memcpy(&b0, b, 16);
  __builtin_memcpy(&b1, b + 16, 16);
  const auto len = static_cast<signed char>(n);
  // Lanes below n that differ; all lane masks are computed, none branched on.
  const V diff = ((a0 != b0) & (kLo < len)) | ((a1 != b1) & (kHi < len));
  uint64_t w[2];
  __builtin_memcpy(w, &diff, 16);
  return (w[0] | w[1]) == 0;
}

// True when the raw key at `k` is exactly `name`, checked with one fixed-length compare (the
// closing quote included) instead of measuring the key first. Reads sizeof(name) bytes from `k`,
// which a padded simdjson input always has. No allocation.
template <size_t N>
inline bool key_is(const char* k, const char (&name)[N]) noexcept {
  return __builtin_memcmp(k, name, N - 1) == 0 && k[N - 1] == '"';
}

// The contents of a plain JSON string token ("XBTUSD" -> XBTUSD); false when it is not a string
// or holds escapes (then `out` is left alone). No allocation.
constexpr bool plain_string(std::string_view tok, std::string_view& out) noexcept {
  if (tok.size() < 2 || tok.front() != '"' || tok.back() != '"') return false;
  const std::string_view inner = tok.substr(1, tok.size() - 2);
  for (const char c : inner) {
    if (c == '\\') return false;
  }
  out = inner;  // only on success: a caller's empty `out` keeps meaning "none"
  return true;
}

// Decodes the contents of a JSON string (between its quotes) into buf[0, capacity): false on a bad
// escape or when the text does not fit. For the rare escaped spelling of a short value (a symbol);
// no allocation.
bool unescape_into(std::string_view inner, char* buf, size_t capacity, size_t& length) noexcept;

// Appends the canonical key text of one raw value token to `out`: a string's contents in JSON's
// escaped form (only `"`, `\` and control characters escaped), a number, true, false or null as
// written. Canonical so that "\u0041" and "A" name the same row. No allocation while `out` has
// capacity. Returns false for an object, an array or a broken string.
bool append_key_part(std::string_view raw_token, std::string& out);

// Appends `s` (plain UTF-8) as the contents of a JSON string, escaping what JSON requires.
void append_escaped(std::string_view s, std::string& out);

}  // namespace bmx::json
