// Small helpers for JSON text kept as received (raw tokens), used by the generic tables, the key
// lookup and the state dump. Cold-path helpers may allocate; the hot ones say they do not.
#pragma once

#include <string>
#include <string_view>

namespace bmx::json {

// Strips the whitespace that simdjson leaves after a raw token. No allocation.
constexpr std::string_view trim_token(std::string_view t) noexcept {
  while (!t.empty() &&
         (t.back() == ' ' || t.back() == '\t' || t.back() == '\n' || t.back() == '\r'))
    t.remove_suffix(1);
  return t;
}

// Appends the canonical key text of one raw value token to `out`: a string's contents in JSON's
// escaped form (only `"`, `\` and control characters escaped), a number, true, false or null as
// written. Canonical so that "\u0041" and "A" name the same row. No allocation while `out` has
// capacity. Returns false for an object, an array or a broken string.
bool append_key_part(std::string_view raw_token, std::string& out);

// Appends `s` (plain UTF-8) as the contents of a JSON string, escaping what JSON requires.
void append_escaped(std::string_view s, std::string& out);

}  // namespace bmx::json
