// Small strong types shared by the engine, the segment and the consumers.
//
// They live in shm/ because a strategy process links only the reader side: anything a record or a
// book in shared memory carries must be defined here, with no JSON or socket knowledge.
#pragma once

#include <cstdint>
#include <string_view>

namespace bmx {

// Side of a book level or a trade. Buy is the bid side, Sell the ask side, as BitMEX names them.
enum class Side : uint8_t { kBuy = 0, kSell = 1 };

// Dense id of a symbol, handed out once by the symbol directory ("XBTUSD" -> 0, ...).
enum class SymbolId : uint32_t {};
// Dense id of a table name ("orderBookL2" -> 0, ...).
enum class TableId : uint16_t {};

inline constexpr uint32_t kNoSymbol = UINT32_MAX;

// The four table actions of the BitMEX realtime protocol.
enum class Action : uint8_t { kPartial = 0, kInsert = 1, kUpdate = 2, kDelete = 3 };
inline constexpr int kActionCount = 4;

constexpr std::string_view to_string(Side s) noexcept {
  return s == Side::kBuy ? "Buy" : "Sell";
}
constexpr std::string_view to_string(Action a) noexcept {
  switch (a) {
    case Action::kPartial:
      return "partial";
    case Action::kInsert:
      return "insert";
    case Action::kUpdate:
      return "update";
    case Action::kDelete:
      return "delete";
  }
  return "?";
}

constexpr uint32_t index(SymbolId s) noexcept {
  return static_cast<uint32_t>(s);
}
constexpr uint16_t index(TableId t) noexcept {
  return static_cast<uint16_t>(t);
}
constexpr int index(Side s) noexcept {
  return static_cast<int>(s);
}

}  // namespace bmx
