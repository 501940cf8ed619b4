// Rows of any BitMEX table, kept as received: instrument, order, position, execution, margin,
// wallet, funding, liquidation, orderBook10, trade, quote, ... with no code per table.
//
// A row is a list of (field id, raw JSON value) over one text buffer. Values stay as the exchange
// wrote them, so a number read back parses to the very same double and a string keeps its exact
// bytes; field names are interned per table. An `update` merges: a value that fits its old place is
// overwritten there, a longer one is appended, and the row compacts itself when more than half of
// its text is dead. Rows are found by the `keys` that the table's partial announced, joined with
// '|' (the seed's make_key); keyless tables (trade, quote, liquidation, ...) keep the latest row
// per symbol.
//
// Allocation: updates and keyless inserts reuse the row's buffers (sized with headroom when the
// row is created), so steady streams allocate nothing. A keyed insert of a new row takes a recycled
// row when one is free and otherwise allocates; growth of a keyed table is not bounded by design
// (an account's orders are not), and is the one cold case here.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/interner.hpp"
#include "engine/json_text.hpp"
#include "shm/types.hpp"

namespace bmx {

// One field of an incoming row: interned name, raw JSON value token (trimmed).
struct RawField {
  uint32_t name = 0;
  std::string_view value;
};

class GenericTable {
 public:
  struct Field {
    uint32_t name;
    uint32_t offset;
    uint32_t length;
  };
  struct Row {
    std::vector<Field> fields;
    std::string text;
    uint32_t live_bytes = 0;
    bool in_use = false;

    // Raw JSON of a field, or empty when the row lacks it. Any thread that owns the table.
    [[nodiscard]] std::string_view value(uint32_t name) const noexcept {
      for (const Field& f : fields) {
        if (f.name == name) return {text.data() + f.offset, f.length};
      }
      return {};
    }
  };

  enum class Result : uint8_t { kOk, kUnknownRow, kBadKey, kReplaced };

  GenericTable(std::string name, uint32_t max_fields, uint32_t max_symbols);

  [[nodiscard]] const std::string& name() const noexcept { return name_; }

  // Field-name interning. `field_hint` is the row position: rows of one table list their fields in
  // the same order, so the name seen at the same position last time is tried first (one compare,
  // no hash). Network thread; no allocation.
  [[nodiscard]] uint32_t field_id(std::string_view raw_name, uint32_t position) noexcept;
  // The same from a key inside a padded simdjson input (the byte after its opening quote): the
  // name seen at this position last time is checked in place, and the key is measured only when
  // it is not the one. A name of up to 15 bytes is kept with its closing quote as 16 bytes and a
  // mask, so the check is one masked 16-byte compare with no load of the name; a longer one is
  // compared with the interned name. Network thread; no allocation.
  [[nodiscard]] uint32_t field_id_at(const char* key, uint32_t position) noexcept {
    if (position < layout_.size()) {
      const Seen& seen = layout_[position];
      if (seen.length < 16) {
        json::Bytes16 k;
        __builtin_memcpy(&k, key, 16);  // padded input: 16 bytes are readable
        if (json::all_zero((k ^ seen.bytes) & seen.mask)) return seen.id;
      } else if (seen.id != Interner::kNone &&
                 (seen.length <= 32 ? json::short_equal(key, seen.name, seen.length)
                                    : std::memcmp(key, seen.name, seen.length) == 0) &&
                 key[seen.length] == '"') {
        return seen.id;
      }
    }
    return field_id(json::scan_raw_key(key), position);
  }
  [[nodiscard]] uint32_t find_field(std::string_view name) const noexcept {
    return fields_.find(name);
  }
  [[nodiscard]] std::string_view field_name(uint32_t id) const noexcept { return fields_.name(id); }

  // Partial: set the key fields and drop every row that the filter covers (all rows if the filter
  // is empty), keeping their memory for reuse. A partial whose keys differ from the previous
  // partial's drops every row: rows kept under other keys could never be found again. Returns true
  // when every row was dropped that way. `on_drop(key, row)` sees each row the filter drops, just
  // before it goes (not when every row goes for new keys). Cold path.
  template <class OnDrop>
  bool begin_partial(std::span<const uint32_t> keys, std::span<const RawField> filter,
                     OnDrop&& on_drop) {
    const bool rekeyed = start_partial(keys);
    for (auto it = index_.begin(); it != index_.end();) {
      if (!rekeyed && !covered(rows_[it->second], filter)) {
        ++it;
        continue;
      }
      if (!rekeyed) on_drop(std::string_view(it->first), std::as_const(rows_[it->second]));
      rows_[it->second].in_use = false;
      free_rows_.push_back(it->second);
      it = index_.erase(it);
    }
    return rekeyed;
  }
  bool begin_partial(std::span<const uint32_t> keys, std::span<const RawField> filter) {
    return begin_partial(keys, filter, [](std::string_view, const Row&) {});
  }
  [[nodiscard]] bool keyless() const noexcept { return keys_.empty(); }
  [[nodiscard]] std::span<const uint32_t> keys() const noexcept { return keys_; }

  // Applies one row. Network thread; no allocation except for a new keyed row with no recycled row
  // free, or a row that outgrows its buffers.
  Result apply(Action action, std::span<const RawField> row);

  // apply() for a row whose symbol the caller already resolved to a directory id. For keyless
  // tables (trade, quote, ...: the row *is* the symbol's latest) the row is found by that id in
  // one array read, without building the key or hashing it; otherwise, or the first time, it is
  // apply(). Network thread; same allocation rules as apply().
  Result apply_for_symbol(Action action, uint32_t symbol, std::span<const RawField> row);

  // Key of `row` in canonical form, into `out` (cleared first). False when a key field is missing
  // or is not a scalar.
  bool make_key(std::span<const RawField> row, std::string& out) const;

  [[nodiscard]] const Row* find(std::string_view key) const noexcept;
  // The row the last apply()/apply_for_symbol() inserted or updated (nullptr after a delete or a
  // failure), and, for keyed tables, its key in canonical form. Valid until the next apply.
  [[nodiscard]] const Row* last_row() const noexcept { return last_row_; }
  [[nodiscard]] std::string_view last_key() const noexcept { return key_; }
  // The row as one JSON object, fields in stored order, values as received. No allocation once
  // `out` has the capacity.
  void append_json(const Row& row, std::string& out) const;
  // How many bytes append_json() gives for `row`, without writing them. A row that an insert or
  // partial wrote whole was received as an object holding exactly those names and values in that
  // order, so received text of this length can only be the same bytes (no room for a space).
  [[nodiscard]] size_t json_size(const Row& row) const noexcept;
  [[nodiscard]] size_t size() const noexcept { return index_.size(); }
  template <class F>
  void for_each(F&& f) const {
    for (const auto& [key, slot] : index_)
      f(std::string_view(key), rows_[slot]);
  }

  // Partial coverage: deltas are kept only for what a partial covered.
  [[nodiscard]] bool covers(uint32_t symbol) const noexcept {
    return whole_ || (symbol < covered_.size() && covered_[symbol]);
  }
  void cover_all() noexcept { whole_ = true; }
  [[nodiscard]] bool covers_all() const noexcept { return whole_; }
  [[nodiscard]] uint32_t symbol_field() const noexcept { return symbol_field_; }
  void cover_symbol(uint32_t symbol) noexcept {
    if (symbol < covered_.size()) covered_[symbol] = 1;
  }
  [[nodiscard]] bool has_partial() const noexcept { return partial_seen_; }

  bool stale = false;

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return Interner::hash(s); }
  };
  uint32_t new_row();
  void write_row(Row& row, std::span<const RawField> fields);
  void merge_row(Row& row, std::span<const RawField> fields);
  static void compact(Row& row, std::string& scratch);

  std::string name_;
  Interner fields_;
  // The row layout last seen: the field at each row position, with its interned name's address
  // (stable: the interner's arena never moves), length and, when short, bytes.
  struct Seen {
    json::Bytes16 bytes{};  // name + '"' when length < 16, zero-padded
    json::Bytes16 mask{};   // 0xFF over the bytes of name + '"'
    const char* name = nullptr;
    uint32_t length = UINT32_MAX;  // UINT32_MAX with id kNone: nothing seen yet
    uint32_t id = Interner::kNone;
  };
  std::vector<Seen> layout_;
  std::vector<uint32_t> keys_;
  uint32_t symbol_field_;
  bool whole_ = false;
  bool partial_seen_ = false;
  std::vector<uint8_t> covered_;
  std::unordered_map<std::string, uint32_t, Hash, std::equal_to<>> index_;
  std::vector<Row> rows_;
  std::vector<uint32_t> free_rows_;
  // Keyless tables: symbol id -> row slot (kNoRow unknown). Cleared whenever a row is removed, so a
  // recycled slot can never be reached through a stale entry.
  static constexpr uint32_t kNoRow = UINT32_MAX;
  std::vector<uint32_t> row_of_symbol_;
  void forget_symbol_rows() noexcept;
  bool start_partial(std::span<const uint32_t> keys);  // true: new keys
  // Whether a partial's filter covers `row`: every filter field equal to the row's, as JSON values
  // (an escaped spelling of a string equals its plain one: "XBT\u0055SD" is XBTUSD), compared by
  // their canonical key text. Cold (partials only); may allocate.
  bool covered(const Row& row, std::span<const RawField> filter);
  const Row* last_row_ = nullptr;
  std::string key_;      // scratch
  std::string scratch_;  // scratch for compaction
};

}  // namespace bmx
