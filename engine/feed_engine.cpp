#include "engine/feed_engine.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

#include "engine/json_text.hpp"
#include "engine/timestamp.hpp"
#include "shm/writer.hpp"

namespace bmx {

namespace od = simdjson::ondemand;
using simdjson::error_code;

std::string_view to_string(FrameKind k) noexcept {
  static constexpr std::string_view kNames[kFrameKindCount] = {
      "table",          "info", "subscribe", "unsubscribe", "auth",     "error",
      "cancelAllAfter", "pong", "unknown",   "malformed",   "oversized"};
  return kNames[static_cast<int>(k)];
}

std::string_view to_string(EventKind k) noexcept {
  switch (k) {
    case EventKind::kMalformedFrame:
      return "malformed frame";
    case EventKind::kOversizedFrame:
      return "oversized frame";
    case EventKind::kUnknownFrame:
      return "unknown frame";
    case EventKind::kBadRow:
      return "bad row";
    case EventKind::kUnknownLevel:
      return "update/delete of unknown level, book marked stale";
    case EventKind::kUnknownRow:
      return "update/delete of unknown row, table marked stale";
    case EventKind::kCrossedBook:
      return "crossed book, marked stale";
    case EventKind::kDroppedBeforePartial:
      return "rows dropped before their partial";
    case EventKind::kCapacityExceeded:
      return "capacity exceeded";
    case EventKind::kBookGrew:
      return "book outgrew its capacity (allocated)";
    case EventKind::kErrorFrame:
      return "error from exchange";
    case EventKind::kSubscribed:
      return "subscribed";
    case EventKind::kUnsubscribed:
      return "unsubscribed";
    case EventKind::kInfo:
      return "info";
    case EventKind::kAuth:
      return "authenticated";
    case EventKind::kCancelAllAfter:
      return "cancelAllAfter reply";
  }
  return "?";
}

namespace {

// The byte after a key's opening quote, inside the padded frame.
const char* key_ptr(od::field& f) noexcept {
  return reinterpret_cast<const char*>(f.key().raw());
}

using json::key_is;
using json::plain_string;

shm::TableKind kind_of(const FeedEngine::TableEntry& t) noexcept {
  return t.is_book    ? shm::TableKind::kBook
         : t.is_trade ? shm::TableKind::kTrade
         : t.is_quote ? shm::TableKind::kQuote
                      : shm::TableKind::kGeneric;
}

// Conditions combined without short-circuit evaluation, so that the compiler makes no branch per
// operand: every operand is computed (none may depend on another being true).
template <class... B>
constexpr bool all_of(B... b) noexcept {
  return (static_cast<unsigned>(b) & ...) != 0;
}
template <class... B>
constexpr bool any_of(B... b) noexcept {
  return (static_cast<unsigned>(b) | ...) != 0;
}

// The whole text of an object or array value (trimmed), consuming it. Out of line: rows of the
// usual tables hold scalars only.
[[gnu::noinline]] error_code raw_composite(od::value& v, char open,
                                           std::string_view& out) noexcept {
  std::string_view tok;
  if (open == '{') {
    od::object o;
    if (auto e = v.get_object().get(o)) return e;
    if (auto e = o.raw_json().get(tok)) return e;
  } else {
    od::array a;
    if (auto e = v.get_array().get(a)) return e;
    if (auto e = a.raw_json().get(tok)) return e;
  }
  out = json::trim_token(tok);
  return simdjson::SUCCESS;
}

// Raw token of a scalar (trimmed), or the whole text of an object/array. Does not consume a
// scalar; consumes a composite. No allocation.
[[gnu::always_inline]] inline error_code raw_value(od::value& v, std::string_view& out) noexcept {
  const std::string_view tok = v.raw_json_token();
  // '[' and '{' differ only in bit 5: one compare finds both.
  if (!tok.empty() && (tok.front() | 0x20) == '{') [[unlikely]] {
    return raw_composite(v, tok.front(), out);
  }
  out = json::trim_token(tok);
  return simdjson::SUCCESS;
}

// True when a frame that is not an object is still valid JSON (an array, a number, a string,
// true, false, null): such a frame is of no use, not broken. Parses it afresh. Cold path.
bool valid_non_object(od::parser& parser, const char* data, size_t len, size_t capacity) noexcept {
  const std::string_view text(data, len);
  const size_t at = text.find_first_not_of(" \t\r\n");
  if (at == std::string_view::npos || text[at] == '{') return false;
  od::document doc;
  if (parser.iterate(simdjson::padded_string_view(data, len, capacity)).get(doc)) return false;
  switch (text[at]) {
    case '[': {
      od::array a;
      std::string_view raw;
      return !doc.get_array().get(a) && !a.raw_json().get(raw);
    }
    case '"': {
      std::string_view s;
      return !doc.get_string().get(s);
    }
    case 't':
    case 'f': {
      bool b;
      return !doc.get_bool().get(b);
    }
    case 'n': {
      bool null = false;
      return !doc.is_null().get(null) && null;
    }
    default: {
      double d;
      return (text[at] == '-' || (text[at] >= '0' && text[at] <= '9')) && !doc.get_double().get(d);
    }
  }
}

// Little-endian word of a short literal, for compares of a whole token in one instruction.
template <size_t N>
constexpr uint64_t word_of(const char (&s)[N]) noexcept {
  static_assert(N - 1 <= 8);
  static_assert(std::endian::native == std::endian::little,
                "tokens are read as little-endian words");
  uint64_t w = 0;
  for (size_t i = 0; i < N - 1; ++i)
    w |= uint64_t{static_cast<unsigned char>(s[i])} << (8 * i);
  return w;
}

// The action token, quotes included: the four actions differ in the low three bits of their first
// letter, which pick the one spelling to compare the token with, as a word (and a ninth byte for
// "partial"). No loop, no branch on which action it is, no escapes (an escaped action is not an
// action we know). `a` is left alone when the token is none of them. The token lies in a padded
// frame: 9 bytes are readable.
bool parse_action(std::string_view tok, Action& a) noexcept {
  struct Spelling {
    uint64_t word;  // the first 8 bytes of the quoted name
    uint8_t size;   // of the quoted name; 0: no action starts with this letter
    Action action;
  };
  static constexpr std::array<Spelling, 8> kByLetter = {{
      {word_of("\"partial"), 9, Action::kPartial},  // 'p' & 7 == 0
      {word_of("\"insert\""), 8, Action::kInsert},  // 'i' & 7 == 1
      {0, 0, Action::kInsert},
      {0, 0, Action::kInsert},
      {word_of("\"delete\""), 8, Action::kDelete},  // 'd' & 7 == 4
      {word_of("\"update\""), 8, Action::kUpdate},  // 'u' & 7 == 5
      {0, 0, Action::kInsert},
      {0, 0, Action::kInsert},
  }};
  if (tok.size() < 2) return false;
  const Spelling& s = kByLetter[static_cast<unsigned char>(tok[1]) & 7];
  uint64_t w;
  std::memcpy(&w, tok.data(), 8);
  const bool ok = all_of(tok.size() == s.size, w == s.word, any_of(s.size == 8, tok[8] == '"'));
  a = ok ? s.action : a;
  return ok;
}

// True when the raw string token `tok` is exactly `"` + cached + `"`, `cached` being a name the
// directory already validated (so the token holds no escape). Both sides have 32 readable bytes
// (the padded frame, the interner's arena). No allocation, no loop.
bool cached_name(std::string_view tok, std::string_view cached) noexcept {
  return !cached.empty() && tok.size() == cached.size() + 2 && cached.size() <= 32 &&
         tok.front() == '"' && tok.back() == '"' &&
         json::short_equal(tok.data() + 1, cached.data(), cached.size());
}

// The side from its raw token ("Buy" or "Sell", quotes included) without a branch on which it is:
// both are compared as whole words and the answer is selected. False for anything else. The token
// lies in a padded frame, so its first 8 bytes are readable. No allocation.
bool parse_side(std::string_view tok, Side& side) noexcept {
  uint64_t w;
  std::memcpy(&w, tok.data(), 8);
  const bool buy = all_of(tok.size() == 5, (w & 0xFF'FFFF'FFFFULL) == word_of("\"Buy\""));
  const bool sell = all_of(tok.size() == 6, (w & 0xFFFF'FFFF'FFFFULL) == word_of("\"Sell\""));
  side = static_cast<Side>(sell);
  return any_of(buy, sell);
}

}  // namespace

// What pass one over a frame learned.
struct FeedEngine::FrameHeader {
  FrameKind kind = FrameKind::kUnknown;
  uint16_t table = Event::kNoTable;
  Action action = Action::kInsert;
  bool has_action = false;
  bool data_done = false;
  bool has_data = false;
  bool rows_lost = false;  // a row failed part-way in a way that cannot be attributed
  bool saw_table = false, saw_action = false;
  bool saw_keys = false, saw_filter = false;
  bool partial_rejected = false;            // a partial for a symbol the directory has no room for
  uint8_t key_count = 0, filter_count = 0;  // in FeedEngine::partial_keys_ / partial_filter_
  // Control frames.
  bool success = false, has_info = false, has_error = false, has_cancel = false;
  std::string_view subscribe, unsubscribe, error_text;
  int64_t status = 0;
};

// One book row as its fields are reached. Each reader takes the field's value; a value of the
// wrong type or range marks the row bad instead of stopping the walk. No allocation.
struct FeedEngine::BookRow {
  std::string_view symbol;  // the raw token, quotes included; resolved after the row
  uint64_t id = 0;
  int64_t size = 0;
  double price = 0;
  Side side = Side::kBuy;
  bool has_id = false, has_side = false, has_size = false, has_price = false;
  bool bad = false;

  [[gnu::always_inline]] void read_symbol(od::value& v) noexcept {
    symbol = json::trim_token(v.raw_json_token());
  }
  [[gnu::always_inline]] void read_id(od::value& v) noexcept {
    bad |= v.get_uint64().get(id) != simdjson::SUCCESS;
    has_id = true;
  }
  [[gnu::always_inline]] void read_side(od::value& v) noexcept {
    bad |= !parse_side(json::trim_token(v.raw_json_token()), side);
    has_side = true;
  }
  [[gnu::always_inline]] void read_size(od::value& v) noexcept {
    bad |= v.get_int64().get(size) != simdjson::SUCCESS;
    has_size = true;
  }
  // A null price counts as no price (an update that keeps the level's price); the number is tried
  // first because it is what rows carry.
  [[gnu::always_inline]] void read_price(od::value& v) noexcept {
    if (v.get_double().get(price) == simdjson::SUCCESS) {
      bad |= !(price > 0);
      has_price = true;
      return;
    }
    bool null = false;
    if (v.is_null().get(null) || !null) {  // neither a number nor null
      bad = true;
      has_price = true;
    }
  }
  // Any field, in any order: first byte, then one fixed-length compare. (Unrolling the usual
  // order symbol, id, side, size, price into one compare per step halves callgrind's branch
  // misses, but measured 10% slower per book frame on a real core, whose predictor learns this
  // switch from history: the loop stays.)
  [[gnu::always_inline]] void read_field(od::field& f) noexcept {
    const char* k = key_ptr(f);
    od::value& v = f.value();
    switch (k[0]) {
      case 'i':
        if (key_is(k, "id")) read_id(v);
        break;
      case 's':
        if (key_is(k, "symbol")) {
          read_symbol(v);
        } else if (key_is(k, "side")) {
          read_side(v);
        } else if (key_is(k, "size")) {
          read_size(v);
        }
        break;
      case 'p':
        if (key_is(k, "price")) read_price(v);
        break;
      default:
        break;  // timestamp, transactTime, ...: not part of the book
    }
  }
};

FeedEngine::FeedEngine(const EngineConfig& config)
    : config_(config),
      symbols_(config.max_symbols, 32),
      table_names_(config.max_tables, 64),
      trades_(config.max_symbols),
      quotes_(config.max_symbols) {
  // Size the parser once for the largest frame we accept: no allocation per frame after this.
  if (auto e = parser_.allocate(config.max_frame_bytes)) {
    throw std::runtime_error(std::string("simdjson parser allocation failed: ") +
                             simdjson::error_message(e));
  }
  tables_.reserve(config.max_tables);
  row_.slots.resize(config.max_fields_per_row);
  pending_.slots.resize(config.max_fields_per_row);
  touched_.reserve(static_cast<size_t>(config.max_symbols) * 2);
  key_ids_.reserve(32);
  filter_.reserve(32);
}

Event* FeedEngine::emit(EventKind kind, uint16_t table, uint32_t symbol, int64_t value,
                        std::string_view text) noexcept {
  if (event_count_ == events_.size()) {
    ++stats_.events_lost;
    return nullptr;
  }
  Event& e = events_[event_count_++];
  e.kind = kind;
  e.table = table;
  e.symbol = symbol;
  e.frame = frame_no_;
  e.value = value;
  e.text_len = static_cast<uint16_t>(std::min(text.size(), sizeof(e.text)));
  if (e.text_len) std::memcpy(e.text, text.data(), e.text_len);
  return &e;
}

uint16_t FeedEngine::find_table(std::string_view name) const noexcept {
  const uint32_t id = table_names_.find(name);
  return id == Interner::kNone ? Event::kNoTable : static_cast<uint16_t>(id);
}

// The name a symbol's raw string token (quotes included) spells: its contents when it holds no
// escape, else the decoded text in symbol_scratch_ ("XBT\u0055SD" is XBTUSD, as JSON says). False
// for anything else, for a bad escape or a name too long for a symbol, and for an escaped spelling
// that decodes to a character JSON would escape again: names stay the plain text that the
// directory, the segment and the state dump show, and a keyless row's key (its symbol's canonical
// text, GenericTable::make_key) is then always its symbol's name. No allocation.
bool FeedEngine::symbol_text(std::string_view tok, std::string_view& text) noexcept {
  if (plain_string(tok, text)) return true;
  if (tok.size() < 2 || tok.front() != '"' || tok.back() != '"') return false;
  size_t n = 0;
  if (!json::unescape_into(tok.substr(1, tok.size() - 2), symbol_scratch_, sizeof(symbol_scratch_),
                           n)) {
    return false;
  }
  const std::string_view name(symbol_scratch_, n);
  for (const char c : name) {
    if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) return false;
  }
  text = name;
  return true;
}

// The symbol id of a raw string token (quotes included) from a padded frame, or kNoSymbol when the
// token spells no symbol name (symbol_text), is unknown and `may_add` is false, or the directory
// is full.
// Frames alternate between symbols, which defeats a one-entry cache: a small direct-mapped cache
// on (length, first and last 8 bytes) answers with one probe and word compares. Network thread;
// no allocation on a hit (a miss may intern a new symbol into the fixed directory: no allocation
// either), no lock, syscall or exception.
uint32_t FeedEngine::symbol_of_token(std::string_view tok, bool may_add) {
  const size_t n = tok.size() - 2;  // wraps for a token shorter than two quotes
  if (n <= 32 && all_of(tok.front() == '"', tok.back() == '"')) {
    // The name as two words, its first and its last 8 bytes (overlapping, or the same word with
    // the bytes past the name cleared when it is shorter): for names of up to 16 bytes, which is
    // every BitMEX symbol, equal words and length mean equal names, with no load of the name.
    const char* p = tok.data() + 1;  // padded input: 8 bytes from p and from p + n - 8 are readable
    const uint64_t mask = n >= 8 ? ~uint64_t{0} : ~(~uint64_t{0} << (8 * n));
    uint64_t head, tail;
    std::memcpy(&head, p, 8);
    std::memcpy(&tail, p + (n >= 8 ? n - 8 : 0), 8);
    head &= mask;
    tail &= mask;
    SymbolCacheEntry& e = symbol_cache_[((head * 0x9e3779b97f4a7c15ULL) >> 58 ^ n) & 63];
    if (all_of(e.length == n, e.head == head, e.tail == tail, e.id != kNoSymbol) &&
        (n <= 16 || json::short_equal(p, symbols_.name(e.id).data(), n))) {
      return e.id;  // equal to a validated name: no escape to look for
    }
    std::string_view text;
    if (!symbol_text(tok, text)) return kNoSymbol;
    const uint32_t id = may_add ? symbol_id(text) : symbols_.find(text);
    if (id != kNoSymbol) e = SymbolCacheEntry{head, tail, static_cast<uint32_t>(n), id};
    return id;
  }
  std::string_view text;
  if (!symbol_text(tok, text)) return kNoSymbol;
  return may_add ? symbol_id(text) : symbols_.find(text);
}

// The table a frame names in its first bytes, when its JSON cannot be trusted (oversized, broken).
// Only tables already known count. No allocation.
uint16_t FeedEngine::sniff_table(std::string_view text) const noexcept {
  static constexpr std::string_view kTag = "\"table\":\"";
  const std::string_view head = text.substr(0, 256);
  const size_t at = head.find(kTag);
  if (at == std::string_view::npos) return Event::kNoTable;
  const std::string_view rest = head.substr(at + kTag.size());
  return find_table(rest.substr(0, rest.find('"')));
}

uint16_t FeedEngine::table_id(std::string_view name) {
  if (name == last_table_name_) return last_table_id_;
  const uint32_t known = table_names_.find(name);
  if (known != Interner::kNone) {
    last_table_name_ = table_names_.name(known);
    last_table_id_ = static_cast<uint16_t>(known);
    return last_table_id_;
  }
  const uint32_t id = table_names_.intern(name);
  if (id == Interner::kNone) {
    ++stats_.capacity_exceeded;
    emit(EventKind::kCapacityExceeded, Event::kNoTable, kNoSymbol, config_.max_tables, name);
    return Event::kNoTable;
  }
  // A table seen for the first time: cold path, may allocate.
  TableEntry& t = tables_.emplace_back();
  t.name = std::string(name);
  t.id = static_cast<uint16_t>(id);
  t.is_book = name == "orderBookL2" || name == "orderBookL2_25";
  t.is_trade = name == "trade";
  t.is_quote = name == "quote";
  if (!t.is_book) {
    t.generic =
        std::make_unique<GenericTable>(t.name, config_.max_fields_per_row, config_.max_symbols);
    static constexpr std::array<std::string_view, 4> kTrade = {"timestamp", "price", "size",
                                                               "side"};
    static constexpr std::array<std::string_view, 5> kQuote = {"timestamp", "bidPrice", "bidSize",
                                                               "askPrice", "askSize"};
    t.typed_slot.assign(config_.max_fields_per_row, kNotTyped);
    auto type = [&](const auto& names) {
      for (size_t i = 0; i < names.size(); ++i) {
        const uint32_t field = t.generic->field_id(names[i], UINT32_MAX);
        if (field < t.typed_slot.size()) t.typed_slot[field] = static_cast<uint8_t>(i);
      }
    };
    if (t.is_trade) type(kTrade);
    if (t.is_quote) type(kQuote);
  }
  if (out_) out_->set_table(t.id, t.name, kind_of(t));
  return static_cast<uint16_t>(id);
}

// Interns a plain symbol. Called when symbol_of_token's cache misses and for partial filters.
uint32_t FeedEngine::symbol_id(std::string_view sym) {
  const uint32_t id = symbols_.intern(sym);
  if (id == Interner::kNone) {
    ++stats_.capacity_exceeded;
    emit(EventKind::kCapacityExceeded, Event::kNoTable, kNoSymbol, config_.max_symbols, sym);
    return kNoSymbol;
  }
  if (out_) out_->set_symbol(id, symbols_.name(id));  // once per epoch; later calls do nothing
  return id;
}

FrameResult FeedEngine::fail(FrameKind kind, const FrameHeader& h, std::string_view excerpt) {
  ++stats_.frames[static_cast<int>(kind)];
  emit(kind == FrameKind::kOversized   ? EventKind::kOversizedFrame
       : kind == FrameKind::kMalformed ? EventKind::kMalformedFrame
                                       : EventKind::kUnknownFrame,
       h.table, kNoSymbol, 0, excerpt);
  return FrameResult{kind, h.action, h.table};
}

void FeedEngine::publish_to(shm::Writer* writer) {
  out_ = writer;
  if (!out_) return;
  row_json_.reserve(size_t{1} << 20);  // the largest row a segment takes is far smaller
  row_key_.reserve(512);
  for (uint32_t s = 0; s < symbols_.size(); ++s)
    out_->set_symbol(s, symbols_.name(s));
  for (TableEntry& t : tables_) {
    out_->set_table(t.id, t.name, kind_of(t));
    for (uint32_t s = 0; s < t.books.size(); ++s) {
      if (t.books[s]) t.books[s]->shm = out_->book(t.id, s);
    }
  }
  published_ = {~0ull, ~0ull, ~0ull, ~0ull};  // whatever the segment holds: stored at once
  publish_stats();
  out_->set_ready();
}

// Engine counters a tool reads from the segment, at the end of every frame: relaxed stores of
// plain counters, the rarely changing ones only when they changed. No allocation.
void FeedEngine::publish_stats() noexcept {
  shm::Stats& s = out_->stats();
  s.bytes.store(stats_.bytes, std::memory_order_relaxed);
  s.rows.store(stats_.rows, std::memory_order_relaxed);
  auto put = [](std::atomic<uint64_t>& to, uint64_t& last, uint64_t now) {
    if (now != last) to.store(last = now, std::memory_order_relaxed);
  };
  put(s.drops, published_.drops, stats_.rows_dropped_before_partial + stats_.rows_dropped_stale);
  put(s.bad, published_.bad,
      stats_.bad_rows + stats_.frames[static_cast<int>(FrameKind::kMalformed)] +
          stats_.frames[static_cast<int>(FrameKind::kOversized)] +
          stats_.frames[static_cast<int>(FrameKind::kUnknown)]);
  put(s.resyncs, published_.resyncs, stats_.books_repaired);
  put(s.reconnects, published_.reconnects, stats_.link_losses);  // each loss, one reconnect
}

// One book row, as the segment sees it: `old_price` is the level's price before the row (0 when
// the book did not hold it). The segment keeps each level in the slot the engine's book keeps it
// in (OrderBook::last_slot()), so that each change is one store there. No allocation. Inlined
// into book_rows, whose own switch on the action comes just before, so that the two can merge.
[[gnu::always_inline]] inline void FeedEngine::publish_level(BookEntry& b, Action action, Side side,
                                                             uint64_t id, double old_price,
                                                             double price, int64_t size) noexcept {
  if (!b.shm) return;  // the segment had no book slot left (counted as segment_full)
  const uint32_t slot = b.book.last_slot();
  switch (action) {
    case Action::kPartial:
    case Action::kInsert:
      if (old_price != 0) {  // a repeated insert replaces the level
        out_->book_update(*b.shm, side, old_price, price, size, id, 0, slot);
      } else {
        out_->book_insert(*b.shm, side, price, size, id, 0, slot);
      }
      break;
    case Action::kUpdate:
      out_->book_update(*b.shm, side, old_price, price == 0 ? old_price : price, size, id, 0, slot);
      break;
    case Action::kDelete:
      out_->book_delete(*b.shm, side, old_price, id, 0, slot);
      break;
  }
}

// The whole current state of the row a generic row just changed, into the segment's rows region.
// A row that an insert or partial wrote whole is its received `text` when that has no spacing
// (BitMEX sends none): the bytes go to the segment as they are, not rebuilt field by field. No
// allocation (row_json_ is reserved by publish_to).
void FeedEngine::publish_row(TableEntry& t, uint32_t symbol, Action action,
                             std::string_view text) noexcept {
  const GenericTable& g = *t.generic;
  if (action == Action::kDelete) {
    out_->row_erase(t.id, g.last_key());
    return;
  }
  const GenericTable::Row* row = g.last_row();
  if (!row) return;
  std::string_view json = text;
  if (action == Action::kUpdate || text.size() != g.json_size(*row)) {  // merged, or spaced
    row_json_.clear();
    g.append_json(*row, row_json_);
    json = row_json_;
  }
  // A keyless row's key is its symbol's name (the fast path of apply_for_symbol leaves last_key()
  // as it was), which is the row's canonical key (symbol_text); a row without a usable symbol is
  // under the canonical key its apply() made.
  const std::string_view key =
      !g.keyless() || symbol == kNoSymbol ? g.last_key() : symbols_.name(symbol);
  out_->row_put(t.id, key, symbol, json);
}

FrameResult FeedEngine::on_frame(const char* data, size_t len, size_t capacity, int64_t recv_ns) {
  recv_ns_ = recv_ns;
  if (!out_) return apply_frame(data, len, capacity);
  out_->begin_frame(recv_ns);
  const FrameResult r = apply_frame(data, len, capacity);
  publish_stats();
  out_->end_frame();
  return r;
}

FrameResult FeedEngine::apply_frame(const char* data, size_t len, size_t capacity) {
  ++frame_no_;
  stats_.bytes += len;
  touched_.clear();
  FrameHeader h;
  const std::string_view text(data, len);

  if (len > config_.max_frame_bytes || capacity < len + simdjson::SIMDJSON_PADDING) {
    // Too big to parse. If it names a table, whatever it carried is lost for that table.
    h.table = sniff_table(text);
    if (h.table != Event::kNoTable) mark_table_books_stale(tables_[h.table]);
    return fail(FrameKind::kOversized, h, text.substr(0, 64));
  }
  if (text == "pong") {
    ++stats_.frames[static_cast<int>(FrameKind::kPong)];
    return FrameResult{FrameKind::kPong};
  }

  od::document doc;
  od::object obj;
  const bool parsed = !parser_.iterate(simdjson::padded_string_view(data, len, capacity)).get(doc);
  doc_ = &doc;
  if (!parsed || doc.get_object().get(obj)) {
    if (parsed && valid_non_object(parser_, data, len, capacity)) {
      return fail(FrameKind::kUnknown, h, text.substr(0, 64));  // JSON, but no BitMEX message
    }
    // Not JSON at all, or broken early: if it names a table, that table's rows are lost.
    h.table = sniff_table(text);
    if (h.table != Event::kNoTable) mark_table_books_stale(tables_[h.table]);
    return fail(FrameKind::kMalformed, h, text.substr(0, 64));
  }

  // Pass one: every top-level field, in whatever order it comes. Rows are applied as soon as "data"
  // is reached, which is the normal case since BitMEX sends table, action, keys and filter first.
  // Data that comes earlier than what it needs waits for pass two. The field is used by
  // reference: a copy went through the stack in pieces and was read back whole, a store no load
  // can be forwarded from.
  bool ok = true;
  for (auto field_result : obj) {
    if (field_result.error()) {
      ok = false;
      break;
    }
    od::field& f = field_result.value_unsafe();
    const char* k = key_ptr(f);
    // The three keys of every delta frame first, inline; anything else through top_field(). A
    // frame that repeats one of them (JSON leaves its meaning open; BitMEX never does it) is
    // malformed: which table, action or rows did it mean?
    if (key_is(k, "table")) {
      ok = !h.saw_table && read_table(f.value(), h);
      h.saw_table = true;
    } else if (key_is(k, "action")) {
      ok = !h.saw_action;
      h.saw_action = true;
      if (ok) read_action(f.value(), h);
    } else if (key_is(k, "data")) {
      ok = !h.has_data && on_data(f.value(), h);
    } else {
      ok = top_field(f, h);
    }
    if (!ok) break;
  }

  if (ok && h.kind == FrameKind::kTable && h.table != Event::kNoTable && h.has_action &&
      h.has_data && !h.data_done) {
    // Pass two: a partial (or data that came before table/action).
    TableEntry& t = tables_[h.table];
    if (h.action == Action::kPartial && !begin_partial(t, h)) ok = false;
    if (ok && !h.partial_rejected) {
      doc.rewind();
      od::array arr;
      if (doc.get_object().get(obj) || obj.find_field_unordered("data").get_array().get(arr) ||
          !process_data(arr, h)) {
        ok = false;
      }
    }
  }

  if (!ok) {
    if (h.table == Event::kNoTable) h.table = sniff_table(text);
    // Broken. Rows already applied stay applied, but what the frame carried past the break is lost,
    // and nobody can say for which symbols: every book of the table is marked stale (the live feed
    // resubscribes them), unless the break came after the rows, when the touched books suffice.
    if (h.table != Event::kNoTable) {
      TableEntry& t = tables_[h.table];
      if (touched_.empty() || h.rows_lost) mark_table_books_stale(t);
      for (auto& [b, sym] : touched_)
        mark_book_stale(*b);
    }
    end_frame(h);
    return fail(FrameKind::kMalformed, h, text.substr(0, 64));
  }

  if (h.kind == FrameKind::kTable) {
    if (h.table == Event::kNoTable || !h.has_action || !h.has_data) {
      return fail(FrameKind::kUnknown, h, text.substr(0, 64));
    }
    end_frame(h);
    ++stats_.frames[static_cast<int>(FrameKind::kTable)];
    return FrameResult{FrameKind::kTable, h.action, h.table};
  }
  classify_control(h);
  ++stats_.frames[static_cast<int>(h.kind)];
  return FrameResult{h.kind};
}

// "table": the frame's table, from the one-entry cache when it is the last frame's. False when the
// name is not a plain string. Network thread; no allocation once the table is known.
bool FeedEngine::read_table(od::value& v, FrameHeader& h) {
  const std::string_view tok = json::trim_token(v.raw_json_token());
  h.kind = FrameKind::kTable;
  if (cached_name(tok, last_table_name_)) {  // same table as the last frame: no scan
    h.table = last_table_id_;
    return true;
  }
  std::string_view name;
  if (!plain_string(tok, name)) return false;
  h.table = table_id(name);
  return true;
}

void FeedEngine::read_action(od::value& v, FrameHeader& h) noexcept {
  h.has_action = parse_action(json::trim_token(v.raw_json_token()), h.action);
}

// Any top-level field other than table, action and data (on_frame tests those first), by its
// first byte and then one fixed-length compare: no key is measured. False when the frame must be
// given up. Network thread; no allocation on delta frames; no exception.
bool FeedEngine::top_field(od::field& f, FrameHeader& h) {
  const char* k = key_ptr(f);
  od::value& v = f.value();
  switch (k[0]) {
    case 'k':
      if (key_is(k, "keys")) return !h.saw_keys && parse_partial_keys(v, h);
      break;
    case 'f':
      if (key_is(k, "filter")) return !h.saw_filter && parse_partial_filter(v, h);
      break;
    case 'i':
      if (key_is(k, "info")) h.has_info = true;
      break;
    case 's':
      if (key_is(k, "success")) {
        bool yes = false;
        h.success = !v.get_bool().get(yes) && yes;
      } else if (key_is(k, "subscribe")) {
        return !raw_value(v, h.subscribe);
      } else if (key_is(k, "status")) {
        if (v.get_int64().get(h.status)) h.status = 0;
      }
      break;
    case 'u':
      if (key_is(k, "unsubscribe")) return !raw_value(v, h.unsubscribe);
      break;
    case 'e':
      if (key_is(k, "error")) {
        h.has_error = true;
        return !raw_value(v, h.error_text);
      }
      break;
    case 'c':
      if (key_is(k, "cancelTime")) h.has_cancel = true;
      break;
    case 'n':
      if (key_is(k, "now")) h.has_cancel = true;
      break;
    default:
      break;
  }
  return true;
}

void FeedEngine::classify_control(FrameHeader& h) {
  if (h.has_error) {
    h.kind = FrameKind::kError;
    emit(EventKind::kErrorFrame, Event::kNoTable, kNoSymbol, h.status, h.error_text);
  } else if (h.has_info) {
    h.kind = FrameKind::kInfo;
    emit(EventKind::kInfo);
  } else if (h.success && !h.subscribe.empty()) {
    h.kind = FrameKind::kSubscribe;
    emit(EventKind::kSubscribed, Event::kNoTable, kNoSymbol, 0, h.subscribe);
  } else if (h.success && !h.unsubscribe.empty()) {
    h.kind = FrameKind::kUnsubscribe;
    emit(EventKind::kUnsubscribed, Event::kNoTable, kNoSymbol, 0, h.unsubscribe);
  } else if (h.success) {
    h.kind = FrameKind::kAuth;
    emit(EventKind::kAuth);
  } else if (h.has_cancel) {
    h.kind = FrameKind::kCancelAllAfter;
    emit(EventKind::kCancelAllAfter);
  } else {
    h.kind = FrameKind::kUnknown;
    emit(EventKind::kUnknownFrame);
  }
}

bool FeedEngine::process_data(od::array data, FrameHeader& h) {
  TableEntry& t = tables_[h.table];
  return t.is_book ? book_rows(data, t, h) : generic_rows(data, t, h);
}

// "data" in pass one: apply now when everything it depends on is known, else leave it for pass
// two. A partial needs its keys and filter (a partial without a filter resets the whole table, so
// applying it before a late filter would wipe other symbols).
bool FeedEngine::on_data(od::value& v, FrameHeader& h) {
  h.has_data = true;
  if (h.kind != FrameKind::kTable || !h.has_action || h.table == Event::kNoTable) return true;
  if (h.action == Action::kPartial) {
    if (!h.saw_keys || !h.saw_filter) return true;
    if (!begin_partial(tables_[h.table], h)) return false;
    if (h.partial_rejected) {
      h.data_done = true;
      return true;
    }
  }
  od::array arr;
  if (v.get_array().get(arr) || !process_data(arr, h)) return false;
  h.data_done = true;
  return true;
}

// `"keys":["symbol","id","side"]`: names kept as raw text. No allocation.
bool FeedEngine::parse_partial_keys(od::value& v, FrameHeader& h) {
  od::array arr;
  if (v.get_array().get(arr)) return false;
  h.saw_keys = true;
  for (auto k : arr) {
    std::string_view tok, name;
    if (k.raw_json_token().get(tok) || !plain_string(json::trim_token(tok), name) ||
        h.key_count == kMaxPartialKeys) {
      return false;
    }
    partial_keys_[h.key_count++] = name;
  }
  return true;
}

// `"filter":{"symbol":"XBTUSD","account":1}`: raw names and raw value tokens. No allocation.
bool FeedEngine::parse_partial_filter(od::value& v, FrameHeader& h) {
  od::object obj;
  if (v.get_object().get(obj)) return false;
  h.saw_filter = true;
  for (auto fr : obj) {
    std::string_view raw;
    if (fr.error() || h.filter_count == kMaxPartialKeys) return false;
    od::field f = fr.value_unsafe();
    const std::string_view name = json::scan_raw_key(key_ptr(f));
    od::value fv = f.value();
    if (raw_value(fv, raw)) return false;
    partial_filter_[h.filter_count++] = {name, raw};
  }
  return true;
}

// Resets what a partial's filter covers, before its rows are applied. Cold path.
bool FeedEngine::begin_partial(TableEntry& t, FrameHeader& h) {
  uint32_t filter_symbol = kNoSymbol;
  bool other_filters = false;
  for (uint8_t i = 0; i < h.filter_count; ++i) {
    const auto& [name, raw] = partial_filter_[i];
    std::string_view sym;
    if (name == "symbol") {
      if (!symbol_text(raw, sym)) return false;
      filter_symbol = symbol_id(sym);
      if (filter_symbol == kNoSymbol) {
        // The directory is full (counted by symbol_id): this partial's rows have nowhere to go.
        // Dropping them harms no other symbol; its deltas will be dropped as before-partial.
        h.partial_rejected = true;
        return true;
      }
    } else {
      other_filters = true;
    }
  }
  if (t.is_book) {
    if (filter_symbol != kNoSymbol) {
      // Reset even when the partial is empty: an empty book is a valid image.
      return book_for(t, filter_symbol, Action::kPartial) != nullptr;
    }
    t.whole_partial = true;
    for (uint32_t s = 0; s < t.books.size(); ++s) {
      if (t.books[s]) book_for(t, s, Action::kPartial);
    }
    return true;
  }
  GenericTable& g = *t.generic;
  key_ids_.clear();
  filter_.clear();
  for (uint8_t i = 0; i < h.key_count; ++i)
    key_ids_.push_back(g.field_id(partial_keys_[i], UINT32_MAX));
  for (uint8_t i = 0; i < h.filter_count; ++i) {
    filter_.push_back(
        RawField{g.field_id(partial_filter_[i].first, UINT32_MAX), partial_filter_[i].second});
  }
  // A filter on more than the symbol ({"account":22,"symbol":"XBTUSD"} for "order:XBTUSD") drops
  // rows the segment cannot select by symbol: the segment loses exactly the rows the table drops,
  // each under the key publish_row() stored it with (for a keyless table, its symbol's name or,
  // with no symbol, its canonical key: the same text, see symbol_text).
  const bool by_row = out_ && other_filters;
  const bool rekeyed = g.begin_partial(key_ids_, filter_, [&](std::string_view key, const auto&) {
    if (by_row) out_->row_erase(t.id, key);
  });
  if (filter_symbol == kNoSymbol || other_filters) {
    g.cover_all();  // a whole table, or an account's rows
  } else {
    g.cover_symbol(filter_symbol);
  }
  if (out_) {
    out_->table_clear(t.id, rekeyed ? kNoSymbol : filter_symbol, /*drop_rows=*/rekeyed || !by_row);
  }
  return true;
}

// The book for `symbol`, ready for `action`, or nullptr when the rows must be dropped (no partial,
// stale). A partial resets the book the first time the frame reaches it.
FeedEngine::BookEntry* FeedEngine::book_for(TableEntry& t, uint32_t symbol, Action action) {
  if (symbol == kNoSymbol) return nullptr;
  if (symbol >= t.books.size() || !t.books[symbol]) {
    if (action != Action::kPartial && !t.whole_partial) return nullptr;
    if (symbol >= t.books.size()) t.books.resize(config_.max_symbols);  // once per table
    t.books[symbol] = std::make_unique<BookEntry>(config_.book_capacity);
    t.books[symbol]->has_partial = true;
    t.books[symbol]->partial_frame = frame_no_;
    if (out_) {
      t.books[symbol]->shm = out_->book(t.id, symbol);
      if (t.books[symbol]->shm) out_->book_clear(*t.books[symbol]->shm);
    }
  }
  BookEntry* b = t.books[symbol].get();
  if (action == Action::kPartial) {
    if (b->partial_frame != frame_no_ || !b->has_partial) {
      b->book.clear();
      b->partial_frame = frame_no_;
      if (out_ && b->shm) out_->book_clear(*b->shm);
      if (b->stale) ++stats_.books_repaired;
    }
    b->has_partial = true;
    b->stale = false;
    b->image_frame = frame_no_;
  }
  if (b->touched_frame != frame_no_) {
    b->touched_frame = frame_no_;
    touched_.emplace_back(b, symbol);  // reserved for every book: no allocation
  }
  return b;
}

void FeedEngine::mark_book_stale(BookEntry& b) {
  if (b.stale) return;
  b.stale = true;
  ++stats_.books_marked_stale;
  if (out_ && b.shm) out_->book_stale(*b.shm);
}

void FeedEngine::link_lost() {
  ++stats_.link_losses;
  if (out_) out_->begin_frame(shm::realtime_ns());
  const uint64_t books = stats_.books_marked_stale, tables = stats_.tables_marked_stale;
  for (TableEntry& t : tables_)
    mark_table_books_stale(t);
  // Not integrity problems: a dropped link is counted once, above.
  stats_.books_marked_stale = books;
  stats_.tables_marked_stale = tables;
  if (out_) {
    publish_stats();
    out_->end_frame();
  }
}

void FeedEngine::mark_table_books_stale(TableEntry& t) {
  if (t.is_book) {
    for (uint32_t s = 0; s < t.books.size(); ++s) {
      if (t.books[s] && t.books[s]->has_partial) mark_book_stale(*t.books[s]);
    }
  } else {
    mark_table_stale(t);
  }
}

void FeedEngine::mark_table_stale(TableEntry& t) {
  if (t.generic->stale) return;
  t.generic->stale = true;
  ++stats_.tables_marked_stale;
  if (out_) out_->table_stale(t.id);
}

// Rows of a book table, applied one by one; once a row's fields are walked,
// json::trim_token(row.raw_json()) is its text in the frame. Network thread; no lock, syscall or
// exception; no allocation except a book outgrowing its capacity (counted as book_growths).
bool FeedEngine::book_rows(od::array data, TableEntry& t, FrameHeader& h) {
  const uint16_t tid = h.table;
  uint64_t dropped = 0;
  for (auto row_result : data) {
    od::object row;
    if (row_result.get_object().get(row)) {
      h.rows_lost = true;
      return false;
    }
    BookRow r;
    for (auto fr : row) {
      if (fr.error()) {
        h.rows_lost = true;
        return false;
      }
      r.read_field(fr.value_unsafe());
    }
    ++t.rows[static_cast<int>(h.action)];
    ++stats_.rows;
    const uint32_t sym = r.symbol.empty() ? kNoSymbol : symbol_of_token(r.symbol, true);
    if (sym == kNoSymbol) {  // no symbol: nothing to attach it to
      ++stats_.bad_rows;
      emit(EventKind::kBadRow, tid, kNoSymbol, 0, "book row without a usable symbol");
      h.rows_lost = true;
      continue;
    }
    BookEntry* b = book_for(t, sym, h.action);
    if (b == nullptr) {
      ++dropped;
      continue;
    }
    if (b->stale && h.action != Action::kPartial) {
      ++stats_.rows_dropped_stale;
      continue;
    }
    const bool insert_like = h.action == Action::kPartial || h.action == Action::kInsert;
    // One test of everything a row of this action needs, with no branch per field.
    const bool needs_size = insert_like || h.action == Action::kUpdate;
    const bool usable = all_of(!r.bad, r.has_id, r.has_side, any_of(r.has_size, !needs_size),
                               any_of(r.has_price, !insert_like));
    if (!usable) [[unlikely]] {
      ++stats_.bad_rows;
      emit(EventKind::kBadRow, tid, sym, static_cast<int64_t>(r.id),
           "book row with missing or mistyped fields");
      mark_book_stale(*b);
      continue;
    }
    // The level's price before the row (0: the book did not hold it), for the segment's copy,
    // which finds levels by price. The book reports it from the lookup it does anyway.
    double old_price = 0;
    OrderBook::Result res = OrderBook::Result::kOk;
    switch (h.action) {
      case Action::kPartial:
        res = b->book.bulk_insert(r.side, r.id, r.price, r.size, old_price);
        break;
      case Action::kInsert:
        res = b->book.insert(r.side, r.id, r.price, r.size, old_price);
        break;
      case Action::kUpdate:
        res = b->book.update(r.side, r.id, r.size, r.has_price, r.price, old_price);
        break;
      case Action::kDelete:
        res = b->book.remove(r.side, r.id, r.has_price, r.price, old_price);
        break;
    }
    if (out_ && res != OrderBook::Result::kUnknownLevel) {
      publish_level(*b, h.action, r.side, r.id, old_price, r.has_price ? r.price : 0, r.size);
    }
    if (res == OrderBook::Result::kUnknownLevel) {
      ++stats_.unknown_levels;
      emit(EventKind::kUnknownLevel, tid, sym, static_cast<int64_t>(r.id));
      mark_book_stale(*b);
    } else if (res == OrderBook::Result::kDuplicateInsert && h.action != Action::kPartial) {
      ++stats_.duplicate_inserts;
    }
  }
  if (dropped) {
    stats_.rows_dropped_before_partial += dropped;
    emit(EventKind::kDroppedBeforePartial, tid, kNoSymbol, static_cast<int64_t>(dropped));
  }
  return true;
}

// The text of the row that started at `start`, now that its fields have been walked: up to the
// closing brace before the parser's current position. Empty when not publishing.
std::string_view FeedEngine::row_text(const char* start) noexcept {
  if (!start || !doc_) return {};
  const char* end = nullptr;
  if (doc_->current_location().get(end) || end < start) return {};
  while (end > start && end[-1] != '}')
    --end;
  return {start, static_cast<size_t>(end - start)};
}

// Rows of a generic table. Keyless inserts (trade, quote, ...: each row *is* its symbol's latest)
// often come as a run of rows for one symbol, of which only the last ends up stored: a row that
// qualifies is held back in pending_ and only applied when the next row is not its replacement
// (or the data ends). A replaced row leaves nothing behind (its write would be overwritten, and it
// emits nothing), except a trade's typed values, which a later trade without price or size does
// not replace. Every row is still walked, counted and checked for coverage in order; once walked,
// json::trim_token(row.raw_json()) is its text in the frame (where each row can be published).
// Network thread; no lock, syscall or exception; no allocation except what
// GenericTable::apply_for_symbol allows (a new keyed row).
bool FeedEngine::generic_rows(od::array data, TableEntry& t, FrameHeader& h) {
  GenericTable& g = *t.generic;
  const uint16_t tid = h.table;
  const bool may_add = h.action == Action::kPartial || g.covers_all();
  const bool keyless_insert = h.action == Action::kInsert && g.keyless();
  bool has_pending = false;
  uint64_t dropped = 0;
  auto flush = [&] {
    if (has_pending) apply_generic_row(t, pending_, h.action, tid);
    has_pending = false;
  };
  for (auto row_result : data) {
    od::object row;
    // Where the row's text starts (only when publishing: the ring carries it as received). A row
    // that is an error (the frame broke) has none, and fails just below: taking its token through
    // the implicit conversion would throw.
    const char* row_start = nullptr;
    std::string_view row_token;
    if (out_ && !row_result.raw_json_token().get(row_token)) {
      row_start = json::trim_token(row_token).data();
    }
    if (row_result.get_object().get(row) || !read_generic_row(row, t, row_)) {
      flush();
      h.rows_lost = true;
      return false;
    }
    ++t.rows[static_cast<int>(h.action)];
    ++stats_.rows;
    // Only a partial, or a table covered whole, brings new symbols into the directory.
    row_.symbol = row_.symbol_at == kAbsent
                      ? kNoSymbol
                      : symbol_of_token(row_.slots[row_.symbol_at].value, may_add);
    if (h.action != Action::kPartial && !g.covers(row_.symbol)) {
      ++dropped;
      continue;
    }
    if (row_.bad) {
      ++stats_.bad_rows;
      ++stats_.capacity_exceeded;
      emit(EventKind::kBadRow, tid, row_.symbol, 0, "row with more fields than max_fields_per_row");
      continue;
    }
    // Every row goes to the ring as received, in order, even one that a later row of the same
    // symbol replaces before it is stored.
    if (out_) {
      row_.text = row_text(row_start);
      out_->row(tid, row_.symbol, h.action, row_.text, row_time(t, row_));
    }
    if (keyless_insert && row_.symbol != kNoSymbol) {
      if (has_pending && pending_.symbol == row_.symbol) {
        if (t.is_trade) commit_typed(t, pending_);  // replaced, but its trade may still count
      } else {
        flush();
      }
      std::swap(row_, pending_);  // vectors swap their buffers: no allocation
      has_pending = true;
      continue;
    }
    flush();
    apply_generic_row(t, row_, h.action, tid);
  }
  flush();
  if (dropped) {
    stats_.rows_dropped_before_partial += dropped;
    emit(EventKind::kDroppedBeforePartial, tid, kNoSymbol, static_cast<int64_t>(dropped));
  }
  return true;
}

// Walks one row's fields into `r`: interned names (the name at the same position in the last row
// is tried first, one compare), raw value tokens, and where the typed fields and the symbol are.
// Values are not parsed here. False when the frame breaks inside the row. Network thread; no
// allocation, lock, syscall or exception.
bool FeedEngine::read_generic_row(od::object& row, const TableEntry& t, GenericRow& r) {
  GenericTable& g = *t.generic;
  const uint32_t symbol_field = g.symbol_field();
  r.count = 0;
  r.typed_at.fill(kAbsent);
  r.symbol_at = kAbsent;
  r.bad = false;
  r.stamped = false;
  uint32_t pos = 0;
  for (auto fr : row) {
    if (fr.error()) return false;
    // References, not copies: a copied field or value went through the stack as pieces and was
    // read back as one 16-byte load, which no store can forward (a stall on every field).
    od::field& f = fr.value_unsafe();
    const uint32_t name = g.field_id_at(key_ptr(f), pos++);
    od::value& v = f.value();
    std::string_view raw;
    if (raw_value(v, raw)) return false;
    if (name == Interner::kNone || r.count == r.slots.size()) {
      r.bad = true;  // more distinct fields than configured
      continue;
    }
    const auto at = static_cast<uint16_t>(r.count);
    // No branch on what the field is: untyped fields land in kNotTyped, and the first symbol
    // field is kept by a select.
    r.typed_at[t.typed_slot[name]] = at;
    r.symbol_at = all_of(name == symbol_field, r.symbol_at == kAbsent) ? at : r.symbol_at;
    r.slots[r.count++] = RawField{name, raw};
  }
  return true;
}

// Applies one generic row and, for trade and quote, its typed values. False when the row was
// refused (bad key, unknown row: counted and reported). Network thread; no lock, syscall or
// exception; allocation only as GenericTable::apply_for_symbol allows.
bool FeedEngine::apply_generic_row(TableEntry& t, const GenericRow& r, Action action,
                                   uint16_t tid) {
  GenericTable& g = *t.generic;
  switch (g.apply_for_symbol(action, r.symbol, r.fields())) {
    case GenericTable::Result::kOk:
      break;
    case GenericTable::Result::kReplaced:
      ++stats_.duplicate_inserts;
      break;
    case GenericTable::Result::kBadKey:
      ++stats_.bad_rows;
      emit(EventKind::kBadRow, tid, r.symbol, 0, "row without its key fields");
      return false;
    case GenericTable::Result::kUnknownRow:
      ++stats_.unknown_rows;
      emit(EventKind::kUnknownRow, tid, r.symbol);
      mark_table_stale(t);
      return false;
  }
  if (out_) publish_row(t, r.symbol, action, r.text);
  if ((t.is_trade || t.is_quote) && r.symbol != kNoSymbol && action != Action::kDelete) {
    commit_typed(t, r);
  }
  return true;
}

namespace {

// The parsers that ondemand's value::get_double() and get_int64() run on a value's token, called on
// the token itself: it lies in the padded frame, followed by its delimiter, so the same text gives
// the same number or the same error, and the walk never has to stop at the value.
namespace numbers = simdjson::builtin::numberparsing;

bool token_double(std::string_view tok, double& out) noexcept {
  return !tok.empty() &&
         numbers::parse_double(reinterpret_cast<const uint8_t*>(tok.data())).get(out) ==
             simdjson::SUCCESS;
}

bool token_int64(std::string_view tok, int64_t& out) noexcept {
  return !tok.empty() &&
         numbers::parse_integer(reinterpret_cast<const uint8_t*>(tok.data())).get(out) ==
             simdjson::SUCCESS;
}

bool token_timestamp(std::string_view tok, BitmexTimestamps& fast, int64_t& ns) noexcept {
  // BitMEX's own form holds no escape (every byte is checked as it is read): no scan for one.
  if (tok.size() == 26 && all_of(tok.front() == '"', tok.back() == '"') &&
      fast.parse(tok.substr(1, 24), ns)) {
    return true;
  }
  std::string_view text;
  return plain_string(tok, text) && parse_timestamp(text, ns);
}

}  // namespace

// Latest trade and quote per symbol as numbers, for the segment and the tools, parsed from the
// row's tokens only now (a row replaced within its frame is never parsed). A trade without price
// and size says nothing and changes nothing. Network thread; no allocation, lock, syscall or
// exception.
void FeedEngine::commit_typed(const TableEntry& t, const GenericRow& r) {
  auto token = [&](int slot) {
    const uint16_t at = r.typed_at[slot];
    return at == kAbsent ? std::string_view{} : r.slots[at].value;
  };
  if (t.is_trade) {
    double price = 0;
    int64_t size = 0;
    if (!token_double(token(1), price) || !token_int64(token(2), size)) return;
    LastTrade& lt = trades_[r.symbol];
    lt.price = price;
    lt.size = size;
    lt.side = token(3) == "\"Sell\"" ? Side::kSell : Side::kBuy;
    lt.timestamp_ns = row_stamp(r);
    lt.valid = true;
    if (out_) out_->trade(r.symbol, lt.timestamp_ns, lt.price, lt.size, lt.side);
  } else {
    double bid_price = 0, ask_price = 0;
    int64_t bid_size = 0, ask_size = 0;
    LastQuote& q = quotes_[r.symbol];
    q.has_bid = all_of(token_double(token(1), bid_price), token_int64(token(2), bid_size));
    q.has_ask = all_of(token_double(token(3), ask_price), token_int64(token(4), ask_size));
    q.bid_price = q.has_bid ? bid_price : 0;
    q.bid_size = q.has_bid ? bid_size : 0;
    q.ask_price = q.has_ask ? ask_price : 0;
    q.ask_size = q.has_ask ? ask_size : 0;
    q.timestamp_ns = row_stamp(r);
    q.valid = true;
    if (out_) {
      out_->quote(r.symbol, q.timestamp_ns, q.has_bid, q.bid_price, q.bid_size, q.has_ask,
                  q.ask_price, q.ask_size);
    }
  }
}

// The exchange's timestamp of a trade or quote row, for its ring record; 0 for other tables (whose
// fields are not typed). No allocation.
int64_t FeedEngine::row_time(const TableEntry& t, const GenericRow& r) const noexcept {
  return t.is_trade || t.is_quote ? row_stamp(r) : 0;
}

// A trade or quote row's timestamp (typed slot 0) in nanoseconds, 0 when it has none or it does
// not parse; parsed on the first call for the row only. No allocation.
int64_t FeedEngine::row_stamp(const GenericRow& r) const noexcept {
  if (!r.stamped) {
    int64_t ts = 0;
    r.stamp_ns =
        r.typed_at[0] != kAbsent && token_timestamp(r.slots[r.typed_at[0]].value, timestamps_, ts)
            ? ts
            : 0;
    r.stamped = true;
  }
  return r.stamp_ns;
}

void FeedEngine::end_frame(FrameHeader& h) {
  if (h.table == Event::kNoTable) return;
  for (auto& [b, sym] : touched_) {
    // Whether this frame's partial reset the book: asked of the book, not of the frame's action,
    // so that no frame can leave a partial's image unordered.
    const bool imaged = b->image_frame == frame_no_;
    if (b->book.grew()) {
      b->book.reset_grew();
      if (!imaged) {
        ++stats_.book_growths;
        emit(EventKind::kBookGrew, h.table, sym, b->book.capacity());
      }
    }
    if (imaged) {  // cold: order the image, leave room for its deltas
      b->book.finish_bulk();
      b->book.reserve(b->book.size() + b->book.size() / 2 + 64);
    }
    if (!b->stale && b->book.crossed()) {
      ++stats_.crossed_books;
      emit(EventKind::kCrossedBook, h.table, sym);
      mark_book_stale(*b);
    }
    if (out_ && b->shm) {  // the segment's book learns its best levels from ours: O(1)
      out_->book_top(*b->shm, b->book.best_slot(Side::kBuy), b->book.best_slot(Side::kSell));
    }
  }
}

const FeedEngine::BookEntry* FeedEngine::book(std::string_view symbol,
                                              std::string_view table) const noexcept {
  const uint32_t tid = table_names_.find(table);
  const uint32_t sym = symbols_.find(symbol);
  if (tid == Interner::kNone || sym == kNoSymbol) return nullptr;
  const TableEntry& t = tables_[tid];
  return sym < t.books.size() ? t.books[sym].get() : nullptr;
}

const GenericTable* FeedEngine::table(std::string_view name) const noexcept {
  const uint32_t tid = table_names_.find(name);
  return tid == Interner::kNone ? nullptr : tables_[tid].generic.get();
}

const LastTrade* FeedEngine::last_trade(std::string_view symbol) const noexcept {
  const uint32_t sym = symbols_.find(symbol);
  return sym == kNoSymbol || !trades_[sym].valid ? nullptr : &trades_[sym];
}

const LastQuote* FeedEngine::last_quote(std::string_view symbol) const noexcept {
  const uint32_t sym = symbols_.find(symbol);
  return sym == kNoSymbol || !quotes_[sym].valid ? nullptr : &quotes_[sym];
}

}  // namespace bmx
