// BitMEX timestamps to nanoseconds since the Unix epoch, without allocation.
//
// BitMEX writes ISO 8601 in UTC with milliseconds ("2021-07-22T22:36:10.014Z"). We accept 0 to 9
// fractional digits and a trailing 'Z' (or "+00:00"), and nothing else: a timestamp that does not
// parse is reported, never guessed. This is the seed library's parse_timestamp, as an integer.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

namespace bmx {

namespace detail {
// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
constexpr int64_t days_from_civil(int64_t y, unsigned m, unsigned d) noexcept {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

constexpr bool digits(std::string_view s, size_t pos, size_t n, unsigned& out) noexcept {
  if (pos + n > s.size()) return false;
  unsigned v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    const unsigned c = static_cast<unsigned char>(s[i]) - '0';
    if (c > 9) return false;
    v = v * 10 + c;
  }
  out = v;
  return true;
}

constexpr bool leap(unsigned y) noexcept {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

// Range checks and the sum, once the fields are read. False (ns untouched) for a date or time
// that does not exist, or an instant that int64 nanoseconds cannot hold (before 1677-09-21 or
// after 2262-04-11: the multiplication would overflow).
constexpr bool assemble(unsigned y, unsigned mo, unsigned d, unsigned h, unsigned mi, unsigned se,
                        int64_t frac, int64_t& ns) noexcept {
  constexpr unsigned kDays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || se > 60) return false;
  if (d > kDays[mo - 1] + (mo == 2 && leap(y) ? 1u : 0u)) return false;
  const int64_t days = days_from_civil(y, mo, d);
  const int64_t seconds = days * 86400 + int64_t{h} * 3600 + int64_t{mi} * 60 + se;
  // Before 1970 a second is borrowed for the fraction, so that the product stays in range for
  // every instant whose sum does (down to INT64_MIN itself).
  const bool borrow = seconds < 0 && frac > 0;
  int64_t total = 0;
  if (__builtin_mul_overflow(seconds + borrow, 1'000'000'000LL, &total) ||
      __builtin_add_overflow(total, frac - (borrow ? 1'000'000'000LL : 0), &total)) {
    return false;
  }
  ns = total;
  return true;
}

// A word of 8 bytes of `form` from `at`, little-endian: the byte itself where `form` has a
// separator, 0 where it has a digit ('d'); or, with `digits`, 0xFF for digits and 0 elsewhere.
constexpr uint64_t form_word(const char* form, size_t at, bool digits) {
  uint64_t w = 0;
  for (size_t i = 0; i < 8; ++i) {
    const char c = form[at + i];
    const uint64_t b =
        digits ? (c == 'd' ? 0xFF : 0) : (c == 'd' ? 0 : static_cast<unsigned char>(c));
    w |= b << (8 * i);
  }
  return w;
}

}  // namespace detail

// "YYYY-MM-DDTHH:MM:SS.mmmZ", the one form BitMEX writes: every character has a fixed place, so
// the 24 bytes are read as three words and the 7 separators and 17 digits are checked at once
// (a byte is a digit when its high nibble is 3 and stays 3 after adding 6). False for any other
// text (the general parser then decides) and for a date that does not exist; `ns` is then left
// alone. Runtime only (it reads words through memcpy). No allocation.
inline bool parse_bitmex_timestamp(std::string_view s, int64_t& ns) noexcept {
  static_assert(std::endian::native == std::endian::little, "words are read little-endian");
  static constexpr char kForm[] = "dddd-dd-ddTdd:dd:dd.dddZ";
  if (s.size() != 24) return false;
  static constexpr uint64_t kDigits[3] = {detail::form_word(kForm, 0, true),
                                          detail::form_word(kForm, 8, true),
                                          detail::form_word(kForm, 16, true)};
  static constexpr uint64_t kSeparators[3] = {detail::form_word(kForm, 0, false),
                                              detail::form_word(kForm, 8, false),
                                              detail::form_word(kForm, 16, false)};
  uint64_t w[3];
  std::memcpy(w, s.data(), 24);
  bool ok = true;
  uint64_t d[3];
  for (size_t i = 0; i < 3; ++i) {
    const uint64_t digits = kDigits[i];
    const uint64_t threes = 0x3030'3030'3030'3030ULL & digits;
    const uint64_t high = 0xF0F0'F0F0'F0F0'F0F0ULL & digits;
    const uint64_t x = w[i] & digits;
    ok &= (w[i] & ~digits) == kSeparators[i];
    ok &= (x & high) == threes;
    ok &= ((x + (0x0606'0606'0606'0606ULL & digits)) & high) == threes;
    d[i] = x - threes;  // one digit value per digit byte
  }
  if (!ok) return false;
  // pairs(): the two digits at bytes k and k+1 become byte k, 10 * first + second (at most 99).
  auto pairs = [](uint64_t v) { return v * 10 + (v >> 8); };
  auto byte = [](uint64_t v, int k) { return static_cast<unsigned>((v >> (8 * k)) & 0xFF); };
  const uint64_t a = pairs(d[0]), b = pairs(d[1]), c = pairs(d[2]);
  return detail::assemble(byte(a, 0) * 100 + byte(a, 2), byte(a, 5), byte(b, 0), byte(b, 3),
                          byte(b, 6), byte(c, 1),
                          int64_t{byte(c, 4) * 10 + byte(d[2], 6)} * 1'000'000, ns);
}

// Parses "YYYY-MM-DDTHH:MM:SS[.fffffffff](Z|+00:00)". Any thread; no allocation; noexcept.
// Returns false (and leaves `ns` alone) on anything else, including out-of-range fields.
constexpr bool parse_timestamp(std::string_view s, int64_t& ns) noexcept {
  if (!std::is_constant_evaluated() && parse_bitmex_timestamp(s, ns)) return true;  // BitMEX's
  unsigned y = 0, mo = 0, d = 0, h = 0, mi = 0, se = 0;
  if (s.size() < 20 || !detail::digits(s, 0, 4, y) || s[4] != '-' || !detail::digits(s, 5, 2, mo) ||
      s[7] != '-' || !detail::digits(s, 8, 2, d) || (s[10] != 'T' && s[10] != ' ') ||
      !detail::digits(s, 11, 2, h) || s[13] != ':' || !detail::digits(s, 14, 2, mi) ||
      s[16] != ':' || !detail::digits(s, 17, 2, se)) {
    return false;
  }
  size_t pos = 19;
  int64_t frac = 0;
  if (s[pos] == '.') {
    ++pos;
    int n = 0;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (++n > 9) return false;
      frac = frac * 10 + (s[pos] - '0');
      ++pos;
    }
    if (n == 0) return false;
    for (; n < 9; ++n)
      frac *= 10;
  }
  const std::string_view zone = s.substr(pos);
  if (zone != "Z" && zone != "+00:00") return false;
  return detail::assemble(y, mo, d, h, mi, se, frac, ns);
}

// Parses a decimal count of seconds since the epoch ("1626993367.875267", as the cryptofeed
// captures write receive times) into nanoseconds exactly, without going through a double.
constexpr bool parse_unix_seconds(std::string_view s, int64_t& ns) noexcept {
  size_t pos = 0;
  int64_t secs = 0;
  int n = 0;
  while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
    if (++n > 12) return false;
    secs = secs * 10 + (s[pos++] - '0');
  }
  if (n == 0) return false;
  int64_t frac = 0;
  int f = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (f < 9) {
        frac = frac * 10 + (s[pos] - '0');
        ++f;
      }
      ++pos;  // digits past nanoseconds are truncated
    }
  }
  if (pos != s.size()) return false;
  for (; f < 9; ++f)
    frac *= 10;
  // Twelve digits of seconds may hold more than int64 nanoseconds do (past the year 2262).
  if (secs > (INT64_MAX - frac) / 1'000'000'000LL) return false;
  ns = secs * 1'000'000'000LL + frac;
  return true;
}

}  // namespace bmx
