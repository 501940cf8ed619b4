#include "engine/generic_table.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

#include "engine/json_text.hpp"

namespace bmx {

namespace {
constexpr uint32_t kMaxFieldNameLen = 64;
constexpr size_t kMinRowText = 256;

// Copies a short value inline: two overlapping moves of the largest power of two that fits, so
// that neither side is read or written outside [p, p + n) and no libc call is made for the few
// dozen bytes a value has. Longer values go to memcpy.
inline void copy_value(char* dst, const char* src, size_t n) noexcept {
  if (n >= 8) {
    if (n > 16) {
      std::memcpy(dst, src, n);
      return;
    }
    uint64_t a, b;
    std::memcpy(&a, src, 8);
    std::memcpy(&b, src + n - 8, 8);
    std::memcpy(dst, &a, 8);
    std::memcpy(dst + n - 8, &b, 8);
  } else if (n >= 4) {
    uint32_t a, b;
    std::memcpy(&a, src, 4);
    std::memcpy(&b, src + n - 4, 4);
    std::memcpy(dst, &a, 4);
    std::memcpy(dst + n - 4, &b, 4);
  } else if (n > 0) {
    const char a = src[0], b = src[n / 2], c = src[n - 1];
    dst[0] = a;
    dst[n / 2] = b;
    dst[n - 1] = c;
  }
}
}  // namespace

GenericTable::GenericTable(std::string name, uint32_t max_fields, uint32_t max_symbols)
    : name_(std::move(name)),
      fields_(max_fields, kMaxFieldNameLen),
      layout_(max_fields),
      symbol_field_(fields_.intern("symbol")),
      covered_(max_symbols, 0),
      row_of_symbol_(max_symbols, kNoRow) {
  key_.reserve(256);
  scratch_.reserve(4096);
}

uint32_t GenericTable::field_id(std::string_view raw_name, uint32_t position) noexcept {
  if (position < layout_.size()) {
    Seen& seen = layout_[position];
    if (seen.id != Interner::kNone && seen.length == raw_name.size() &&
        std::memcmp(seen.name, raw_name.data(), raw_name.size()) == 0) {
      return seen.id;
    }
    const uint32_t id = fields_.intern(raw_name);
    seen = Seen{};
    if (id != Interner::kNone) {
      const std::string_view name = fields_.name(id);
      seen.name = name.data();
      seen.length = static_cast<uint32_t>(name.size());
      seen.id = id;
      if (name.size() < 16) {
        for (size_t i = 0; i <= name.size(); ++i) {
          seen.bytes[i] = static_cast<signed char>(i < name.size() ? name[i] : '"');
          seen.mask[i] = -1;
        }
      }
    }
    return id;
  }
  return fields_.intern(raw_name);
}

bool GenericTable::start_partial(std::span<const uint32_t> keys) {
  forget_symbol_rows();
  const bool rekeyed =
      partial_seen_ && !std::equal(keys.begin(), keys.end(), keys_.begin(), keys_.end());
  keys_.assign(keys.begin(), keys.end());
  partial_seen_ = true;
  stale = false;
  return rekeyed;
}

bool GenericTable::make_key(std::span<const RawField> row, std::string& out) const {
  out.clear();
  if (keys_.empty()) {  // keyless: the latest row per symbol
    for (const RawField& f : row) {
      if (f.name == symbol_field_) return json::append_key_part(f.value, out);
    }
    return true;  // no symbol at all: one row for the whole table
  }
  for (size_t k = 0; k < keys_.size(); ++k) {
    if (k) out.push_back('|');
    const auto it =
        std::find_if(row.begin(), row.end(), [&](const RawField& f) { return f.name == keys_[k]; });
    if (it == row.end() || !json::append_key_part(it->value, out)) return false;
  }
  return true;
}

bool GenericTable::covered(const Row& row, std::span<const RawField> filter) {
  for (const RawField& f : filter) {
    const std::string_view mine = row.value(f.name);
    if (mine == f.value) continue;  // the common case: spelled alike
    if (mine.find('\\') == std::string_view::npos && f.value.find('\\') == std::string_view::npos) {
      return false;  // with no escape on either side, other bytes are another value
    }
    key_.clear();
    scratch_.clear();
    if (!json::append_key_part(mine, key_) || !json::append_key_part(f.value, scratch_) ||
        key_ != scratch_) {
      return false;
    }
  }
  return true;
}

const GenericTable::Row* GenericTable::find(std::string_view key) const noexcept {
  const auto it = index_.find(key);
  return it == index_.end() ? nullptr : &rows_[it->second];
}

uint32_t GenericTable::new_row() {
  if (!free_rows_.empty()) {
    const uint32_t slot = free_rows_.back();
    free_rows_.pop_back();
    return slot;
  }
  rows_.emplace_back();
  return static_cast<uint32_t>(rows_.size() - 1);
}

// Replaces the row's fields and text. Both are sized once (only growth past what the row held
// fills or allocates) and then written by index, without an append per field. Network thread; no
// allocation once the row's buffers fit it (they are sized with headroom), no lock or exception
// then.
void GenericTable::write_row(Row& row, std::span<const RawField> fields) {
  size_t bytes = 0;
  for (const RawField& f : fields)
    bytes += f.value.size();
  if (row.text.capacity() < bytes) row.text.reserve(std::max(kMinRowText, bytes * 2));
  if (row.fields.capacity() < fields.size()) row.fields.reserve(fields.size() * 2);
  row.fields.resize(fields.size());
  row.text.resize(bytes);
  char* out = row.text.data();
  uint32_t at = 0;
  for (size_t i = 0; i < fields.size(); ++i) {
    const auto len = static_cast<uint32_t>(fields[i].value.size());
    row.fields[i] = Field{fields[i].name, at, len};
    copy_value(out + at, fields[i].value.data(), len);
    at += len;
  }
  row.live_bytes = static_cast<uint32_t>(bytes);
  row.in_use = true;
}

void GenericTable::merge_row(Row& row, std::span<const RawField> fields) {
  for (const RawField& in : fields) {
    // The key fields (a keyless table's: its symbol) named this row; the first of each equals the
    // row's own, and a repeat that differs must not move the row away from its key in the index.
    if (keys_.empty() ? in.name == symbol_field_
                      : std::find(keys_.begin(), keys_.end(), in.name) != keys_.end()) {
      continue;
    }
    const auto len = static_cast<uint32_t>(in.value.size());
    auto it = std::find_if(row.fields.begin(), row.fields.end(),
                           [&](const Field& f) { return f.name == in.name; });
    if (it == row.fields.end()) {
      row.fields.push_back(Field{in.name, static_cast<uint32_t>(row.text.size()), len});
      row.text.append(in.value);
      row.live_bytes += len;
    } else if (len <= it->length) {
      std::memcpy(row.text.data() + it->offset, in.value.data(), len);
      row.live_bytes -= it->length - len;
      it->length = len;
    } else {
      row.live_bytes += len - it->length;
      it->offset = static_cast<uint32_t>(row.text.size());
      it->length = len;
      row.text.append(in.value);
    }
  }
  if (row.text.size() > 2 * static_cast<size_t>(row.live_bytes) + 64) compact(row, scratch_);
}

void GenericTable::compact(Row& row, std::string& scratch) {
  scratch.clear();
  for (Field& f : row.fields) {
    const auto at = static_cast<uint32_t>(scratch.size());
    scratch.append(row.text, f.offset, f.length);
    f.offset = at;
  }
  row.text.swap(scratch);
  row.live_bytes = static_cast<uint32_t>(row.text.size());
}

void GenericTable::append_json(const Row& row, std::string& out) const {
  out += '{';
  bool first = true;
  for (const Field& f : row.fields) {
    if (!first) out += ',';
    first = false;
    out += '"';
    out += field_name(f.name);  // raw name as received: already escaped
    out += "\":";
    out.append(row.text, f.offset, f.length);
  }
  out += '}';
}

size_t GenericTable::json_size(const Row& row) const noexcept {
  size_t n = 2 + row.live_bytes + (row.fields.empty() ? 0 : row.fields.size() - 1);  // {} and ,
  for (const Field& f : row.fields)
    n += fields_.name(f.name).size() + 3;  // "name":
  return n;
}

GenericTable::Result GenericTable::apply(Action action, std::span<const RawField> fields) {
  last_row_ = nullptr;
  if (!make_key(fields, key_)) return Result::kBadKey;
  const auto it = index_.find(std::string_view(key_));
  switch (action) {
    case Action::kPartial:
    case Action::kInsert: {
      if (it != index_.end()) {
        write_row(rows_[it->second], fields);
        last_row_ = &rows_[it->second];
        return keys_.empty() ? Result::kOk : Result::kReplaced;
      }
      const uint32_t slot = new_row();
      write_row(rows_[slot], fields);
      index_.emplace(key_, slot);
      last_row_ = &rows_[slot];
      return Result::kOk;
    }
    case Action::kUpdate:
      if (it == index_.end()) return Result::kUnknownRow;
      merge_row(rows_[it->second], fields);
      last_row_ = &rows_[it->second];
      return Result::kOk;
    case Action::kDelete:
      if (it == index_.end()) return Result::kUnknownRow;
      forget_symbol_rows();
      rows_[it->second].in_use = false;
      free_rows_.push_back(it->second);
      index_.erase(it);
      return Result::kOk;
  }
  return Result::kOk;
}

void GenericTable::forget_symbol_rows() noexcept {
  std::fill(row_of_symbol_.begin(), row_of_symbol_.end(), kNoRow);
}

GenericTable::Result GenericTable::apply_for_symbol(Action action, uint32_t symbol,
                                                    std::span<const RawField> fields) {
  if (!keys_.empty() || symbol >= row_of_symbol_.size() || action == Action::kDelete) {
    return apply(action, fields);
  }
  const uint32_t slot = row_of_symbol_[symbol];
  if (slot == kNoRow) {  // first row of this symbol since the cache was last cleared
    const Result r = apply(action, fields);
    if (r == Result::kOk) {
      const auto it = index_.find(std::string_view(key_));  // key_ still holds this row's key
      if (it != index_.end()) row_of_symbol_[symbol] = it->second;
    }
    return r;
  }
  if (action == Action::kUpdate) {
    merge_row(rows_[slot], fields);
  } else {
    write_row(rows_[slot], fields);
  }
  last_row_ = &rows_[slot];
  return Result::kOk;
}

}  // namespace bmx
