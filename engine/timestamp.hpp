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

inline constexpr char kBitmexForm[] = "dddd-dd-ddTdd:dd:dd.dddZ";

// Checks word `i` (bytes 8i to 8i+7) of a 24-byte BitMEX timestamp against the form: its
// separators exactly, its digits as digits (a byte is a digit when its high nibble is 3 and stays
// 3 after adding 6). True, with each digit byte's value in `d` (0 elsewhere), when it matches.
inline bool bitmex_word(size_t i, uint64_t w, uint64_t& d) noexcept {
  static constexpr uint64_t kDigits[3] = {form_word(kBitmexForm, 0, true),
                                          form_word(kBitmexForm, 8, true),
                                          form_word(kBitmexForm, 16, true)};
  static constexpr uint64_t kSeparators[3] = {form_word(kBitmexForm, 0, false),
                                              form_word(kBitmexForm, 8, false),
                                              form_word(kBitmexForm, 16, false)};
  const uint64_t digits = kDigits[i];
  const uint64_t threes = 0x3030'3030'3030'3030ULL & digits;
  const uint64_t high = 0xF0F0'F0F0'F0F0'F0F0ULL & digits;
  const uint64_t x = w & digits;
  bool ok = (w & ~digits) == kSeparators[i];
  ok &= (x & high) == threes;
  ok &= ((x + (0x0606'0606'0606'0606ULL & digits)) & high) == threes;
  d = x - threes;
  return ok;
}

// pairs(): the two digits at bytes k and k+1 become byte k, 10 * first + second (at most 99).
constexpr uint64_t pairs(uint64_t v) noexcept {
  return v * 10 + (v >> 8);
}
constexpr unsigned byte(uint64_t v, int k) noexcept {
  return static_cast<unsigned>((v >> (8 * k)) & 0xFF);
}

// The seconds and milliseconds of the last word (":SS.mmmZ"), its digit values `d`.
constexpr unsigned bitmex_seconds(uint64_t d) noexcept {
  return byte(pairs(d), 1);
}
constexpr int64_t bitmex_millis(uint64_t d) noexcept {
  return int64_t{byte(pairs(d), 4) * 10 + byte(d, 6)};
}
}  // namespace detail

// "YYYY-MM-DDTHH:MM:SS.mmmZ", the one form BitMEX writes: every character has a fixed place, so
// the 24 bytes are read as three words and the 7 separators and 17 digits are checked at once.
// False for any other text (the general parser then decides) and for a date that does not exist;
// `ns` is then left alone. Runtime only (it reads words through memcpy). No allocation.
inline bool parse_bitmex_timestamp(std::string_view s, int64_t& ns) noexcept {
  static_assert(std::endian::native == std::endian::little, "words are read little-endian");
  if (s.size() != 24) return false;
  uint64_t w[3];
  std::memcpy(w, s.data(), 24);
  uint64_t d[3];
  bool ok = true;
  for (size_t i = 0; i < 3; ++i)
    ok &= detail::bitmex_word(i, w[i], d[i]);
  if (!ok) return false;
  using detail::byte;
  using detail::pairs;
  const uint64_t a = pairs(d[0]), b = pairs(d[1]);
  return detail::assemble(byte(a, 0) * 100 + byte(a, 2), byte(a, 5), byte(b, 0), byte(b, 3),
                          byte(b, 6), detail::bitmex_seconds(d[2]),
                          detail::bitmex_millis(d[2]) * 1'000'000, ns);
}

// parse_bitmex_timestamp that remembers the minute of the last timestamp it read: the rows of a
// frame, and of a minute, share their first 16 bytes ("YYYY-MM-DDTHH:MM"), and for those only the
// last 8 (":SS.mmmZ") are checked and read (no calendar arithmetic). The same results, text for
// text, as parse_bitmex_timestamp. One per thread; no allocation.
class BitmexTimestamps {
 public:
  bool parse(std::string_view s, int64_t& ns) noexcept {
    if (s.size() != 24) return false;
    uint64_t w[3];
    std::memcpy(w, s.data(), 24);
    uint64_t d = 0;
    if (w[0] == minute_[0] && w[1] == minute_[1]) {
      if (!detail::bitmex_word(2, w[2], d) || detail::bitmex_seconds(d) > 60) return false;
      ns = minute_ns_ + int64_t{detail::bitmex_seconds(d)} * 1'000'000'000 +
           detail::bitmex_millis(d) * 1'000'000;
      return true;
    }
    if (!parse_bitmex_timestamp(s, ns)) return false;
    detail::bitmex_word(2, w[2], d);  // checked by the parse above
    const int64_t within =
        int64_t{detail::bitmex_seconds(d)} * 1'000'000'000 + detail::bitmex_millis(d) * 1'000'000;
    // Remembered only where every second of the minute (up to 60.999) stays in int64 range.
    int64_t start = 0, last = 0;
    if (!__builtin_sub_overflow(ns, within, &start) &&
        !__builtin_add_overflow(start, int64_t{60'999'000'000}, &last)) {
      minute_[0] = w[0];
      minute_[1] = w[1];
      minute_ns_ = start;
    }
    return true;
  }

 private:
  uint64_t minute_[2] = {0, 0};  // never a timestamp's first bytes (they are digits)
  int64_t minute_ns_ = 0;
};

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
