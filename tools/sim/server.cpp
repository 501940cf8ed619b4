// Two coroutines per websocket connection, on the one io_context thread:
//   reader: client text frames -> replies queued (ping, ops); notices the client leaving
//   writer: the reply queue first, then the recording from the connection's cursor (at the
//           recorded pace or as fast as the socket takes it); injects the faults
// They share state without locks (one thread); the writer sleeps on a timer that the reader
// cancels to wake it, and always re-checks the state before sleeping, so no wake-up is lost.
#include "tools/sim/server.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string_view>

#include <fmt/core.h>
#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include "engine/feed_engine.hpp"
#include "tools/sim/protocol.hpp"

namespace bmx::sim {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using asio::awaitable;
using Clock = std::chrono::steady_clock;

// Errors come back as values: a closed socket is an ordinary event here, not an exception.
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

template <class... Args>
void log(fmt::format_string<Args...> f, Args&&... args) {
  fmt::print(stderr, f, std::forward<Args>(args)...);
  std::fputc('\n', stderr);
  std::fflush(stderr);
}

std::chrono::system_clock::time_point wall_now() {
  return std::chrono::system_clock::now();
}

// The socket under any stream we use.
template <class Stream>
tcp::socket& socket_of(Stream& s) {
  return beast::get_lowest_layer(s).socket();
}

// Machine-readable lines for tests, on stdout, flushed at once.
template <class... Args>
void say(fmt::format_string<Args...> f, Args&&... args) {
  fmt::print(stdout, f, std::forward<Args>(args)...);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

// What the connections of one session share: the engine that follows the recording (so that a
// partial is the recording's state at the cursor) and the cursor. Without chaos each connection
// has its own, from the beginning; in chaos mode one lives as long as the server.
struct Session {
  std::unique_ptr<FeedEngine> engine = std::make_unique<FeedEngine>();
  uint32_t cursor = 0;  // next recorded frame
};

enum class Fault : uint8_t {
  kClose,
  kReset,
  kSilent,
  kOversized,
  kMalformed,
  kUnknownLevel,
  kRefuse429,
  kRefuse503,
};
constexpr size_t kFaultKinds = 8;
constexpr size_t kLinkFaultKinds = 6;  // the ones injected inside a connection (before 429/503)
constexpr std::string_view kFaultNames[kFaultKinds] = {"close",     "reset",     "silent",
                                                       "oversized", "malformed", "unknown-level",
                                                       "refuse429", "refuse503"};

// --chaos: the fault schedule, drawn from one seeded generator (splitmix64, so that a seed means
// the same schedule on every platform), and what was injected.
struct Chaos {
  explicit Chaos(const Options& o) : state(*o.chaos_seed), limit(o.chaos_faults) {}
  uint64_t next() noexcept {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) noexcept { return n == 0 ? 0 : next() % n; }
  [[nodiscard]] bool done() const noexcept { return injected >= limit || exhausted; }
  // Counts a fault and prints its line; the rest of the line (`extra`) is the caller's.
  void record(Fault f, uint64_t connection, uint32_t position, std::string_view extra = {}) {
    ++injected;
    ++counts[static_cast<size_t>(f)];
    say("fault {} {} connection {} position {}{}", injected, kFaultNames[static_cast<size_t>(f)],
        connection, position, extra);
  }
  void summary() {
    if (summarised) return;
    summarised = true;
    std::string per_kind;
    for (size_t k = 0; k < kFaultKinds; ++k)
      per_kind += fmt::format(" {} {}", kFaultNames[k], counts[k]);
    say("chaos summary faults {}{} refused-handshakes {} connections {}", injected, per_kind,
        refused, connections);
  }

  uint64_t state;
  uint64_t limit;
  uint64_t injected = 0;
  bool exhausted = false;  // the recording ended first: no more faults
  bool summarised = false;
  std::array<uint64_t, kFaultKinds> counts{};
  uint64_t refused = 0;      // handshakes refused by storms
  uint64_t connections = 0;  // websocket connections accepted
  uint64_t storm_left = 0;   // handshakes the current storm still refuses
  unsigned storm_status = 0;
  bool storm_drawn = false;  // since the last accepted connection
};

// One websocket connection, from the accepted upgrade until the client leaves.
template <class NextLayer>
class Connection {
 public:
  Connection(websocket::stream<NextLayer>& ws, const Options& o, const Recording& rec,
             uint64_t number, bool faults, Session& session, Chaos* chaos)
      : ws_(ws),
        o_(o),
        rec_(rec),
        number_(number),
        faults_(faults),
        wake_(ws.get_executor()),
        engine_(session.engine),
        cursor_(session.cursor),
        chaos_(chaos) {}

  awaitable<void> run() {
    using namespace asio::experimental::awaitable_operators;
    push_owned(welcome_frame(wall_now()));
    ws_.control_callback([this](websocket::frame_type kind, beast::string_view) {
      if (kind == websocket::frame_type::pong) {
        pong_seen_ = true;
        wake();
      }
    });
    if (chaos_ && !chaos_->done()) draw_fault();
    co_await (reader() && writer());
    ws_.control_callback();
  }

 private:
  using Key = std::pair<uint16_t, uint32_t>;  // (table, symbol); symbol kNoPos: rows without one
  struct Out {
    std::string owned;
    std::string_view recorded;       // set: a recorded frame, sent from the capture buffer
    bool table = false;              // counts towards the fault thresholds
    uint16_t table_id = UINT16_MAX;  // table frames: the recording's table id
    // A partial: its table, the symbols it replaces (kNoPos: a whole-table partial) and the
    // recorded position its state reflects (the state after the first `position` table frames).
    bool partial = false;
    uint16_t ptable = 0;
    std::vector<uint32_t> psymbols;
    uint32_t position = 0;
    [[nodiscard]] std::string_view text() const {
      return recorded.data() != nullptr ? recorded : std::string_view(owned);
    }
  };

  // A frame this server built (not a recorded one).
  // (Moved from: clang-tidy 14 misses the move inside this class template.)
  static Out built(std::string s) {  // NOLINT(performance-unnecessary-value-param)
    Out out;
    out.owned = std::move(s);
    return out;
  }
  void push_owned(std::string s) { queue_.push_back(built(std::move(s))); }
  // A table frame of table `t`: built here, or recorded (sent from the capture buffer).
  void push_table(std::string s, uint16_t t) {
    queue_.push_back(built(std::move(s)));
    queue_.back().table = true;
    queue_.back().table_id = t;
  }
  void push_recorded(std::string_view s, uint16_t t) {
    Out out;
    out.recorded = s;
    out.table = true;
    out.table_id = t;
    queue_.push_back(std::move(out));
  }
  // The frame just queued is a partial of `table` for `symbols`, reflecting `position`.
  // NOLINTNEXTLINE(performance-unnecessary-value-param): moved from, as above
  void mark_partial(uint16_t table, std::vector<uint32_t> symbols, uint32_t position) {
    Out& out = queue_.back();
    out.partial = true;
    out.ptable = table;
    out.psymbols = std::move(symbols);
    out.position = position;
  }

  // After a partial was written: its line for tests, and, in chaos mode, its books are known to
  // be whole at the client (a target for an unknown-level fault).
  void sent_partial(const Out& out) {
    const std::string& table = rec_.table_name(out.ptable);
    for (const uint32_t s : out.psymbols) {
      if (s == kNoPos) {
        say("partial {} position {} connection {}", table, out.position, number_);
      } else {
        say("partial {}:{} position {} connection {}", table, rec_.symbol_name(s), out.position,
            number_);
        if (Recording::is_book_table(table)) whole_books_.insert({out.ptable, s});
      }
    }
  }
  void wake() { wake_.cancel(); }

  awaitable<void> reader() {
    beast::flat_buffer buf;
    for (;;) {
      auto [ec, n] = co_await ws_.async_read(buf, kNoThrow);
      if (ec) break;
      if (!silent_) on_text(beast::buffers_to_string(buf.data()));
      buf.consume(buf.size());
      wake();
    }
    if (silent_ && !done_) {
      // The writer cancelled our read to go silent: drain raw bytes, answering nothing (not even
      // control pings, which the websocket layer would answer), until the client leaves.
      char sink[4096];
      for (;;) {
        auto [ec, n] = co_await socket_of(ws_).async_read_some(asio::buffer(sink), kNoThrow);
        if (ec) break;
      }
    }
    done_ = true;
    wake();
  }

  awaitable<void> writer() {
    const auto& frames = rec_.frames();
    while (!done_) {
      if (!silent_ && !pongs_due_.empty() && pongs_due_.front() <= Clock::now()) {
        pongs_due_.pop_front();
        push_owned("pong");  // --pong-delay-ms: sent after what is queued already
      }
      if (!silent_ && !queue_.empty()) {
        const Out out = std::move(queue_.front());
        queue_.pop_front();
        ws_.text(true);
        auto [ec, n] = co_await ws_.async_write(asio::buffer(out.text()), kNoThrow);
        if (ec) break;
        ++frames_sent_;
        if (out.partial && chaos_) sent_partial(out);
        if (out.table) {
          ++table_frames_;
          last_table_ = out.text().substr(0, 100);
          last_table_id_ = out.table_id;
          if (chaos_ ? co_await chaos_fault() : co_await inject_faults()) break;
        }
        continue;
      }
      if (!silent_ && !ending_ && streaming_ && cursor_ < frames.size()) {
        if (o_.pace_recorded) {
          const auto due = due_time(frames[cursor_]);
          if (due > Clock::now()) {
            wake_.expires_at(pongs_due_.empty() ? due : std::min(due, pongs_due_.front()));
            co_await wake_.async_wait(kNoThrow);
            continue;
          }
        }
        advance();
        continue;
      }
      if (o_.loop && !silent_ && !ending_ && streaming_ && cursor_ >= frames.size()) {
        // --loop: the recording again, from its first frame (its partials reset the state), at
        // its pace from now.
        cursor_ = 0;
        for (auto& [key, first] : starts_)
          first = 0;  // every subscribed topic gets the recording whole, partials first
        start_ = Clock::now();
        say("lap {} on connection {}", ++laps_, number_);
        continue;
      }
      if (!silent_ && !ending_ && streaming_ && !served_) {
        served_ = true;
        if (chaos_) {
          // Faults not injected by now never will be: the recording is over.
          if (!chaos_->done()) chaos_->exhausted = true;
          chaos_->summary();
        }
        fmt::print("served {} frames on connection {}\n", frames_sent_, number_);
        std::fflush(stdout);
        log("connection {}: recording served ({} frames sent)", number_, frames_sent_);
      }
      wake_.expires_at(pongs_due_.empty() || silent_ ? Clock::time_point::max()
                                                     : pongs_due_.front());
      co_await wake_.async_wait(kNoThrow);
    }
    done_ = true;
  }

  [[nodiscard]] Clock::time_point due_time(const RecordedFrame& f) const {
    if (f.recv_ns == 0 || f.recv_ns <= rec_.first_recv_ns()) return start_;
    return start_ + std::chrono::nanoseconds(f.recv_ns - rec_.first_recv_ns());
  }

  // The cursor passes one recorded frame: the engine learns it (so that a later partial is the
  // recording's state at the cursor), and the client gets it when it subscribed its rows.
  void advance() {
    const uint32_t pos = cursor_++;
    const RecordedFrame& f = rec_.frames()[pos];
    engine_->on_frame(f.text.data(), f.text.size(), f.capacity, f.recv_ns);
    engine_->drain_events([](const Event&) {});
    size_t wanted = 0;
    for (const uint32_t s : f.symbols)
      wanted += subscribed(f.table, s, pos);
    if (f.symbols.empty()) {
      if (!subscribed(f.table, kNoPos, pos)) return;
      push_recorded(f.text, f.table);
      if (f.partial) mark_partial(f.table, {kNoPos}, pos + 1);
    } else if (wanted == f.symbols.size()) {
      push_recorded(f.text, f.table);
      if (f.partial) mark_partial(f.table, f.symbols, pos + 1);
    } else if (wanted > 0) {
      std::vector<uint32_t> kept;
      std::string part = filter_rows(f.text, [&](std::string_view sym) {
        const auto id = rec_.find_symbol(sym);
        if (!id || !subscribed(f.table, *id, pos)) return false;
        if (std::find(kept.begin(), kept.end(), *id) == kept.end()) kept.push_back(*id);
        return true;
      });
      if (part.empty()) return;
      push_table(std::move(part), f.table);
      if (f.partial) mark_partial(f.table, std::move(kept), pos + 1);
    }
  }

  [[nodiscard]] bool subscribed(uint16_t table, uint32_t symbol, uint32_t pos) const {
    auto it = starts_.find({table, symbol});
    if (it != starts_.end()) return it->second <= pos;
    // A whole-table topic also covers symbols that first appear after it was subscribed (an
    // order table's partial is often empty; its rows arrive as inserts).
    it = starts_.find({table, kNoPos});
    return it != starts_.end() && it->second <= pos;
  }

  void on_text(const std::string& text) {
    const Request r = parse_request(text);
    if (r.kind == Request::Kind::kPing) {
      if (o_.pong_delay_ms == 0) {
        push_owned("pong");
      } else {  // the writer sends it when due
        pongs_due_.push_back(Clock::now() + std::chrono::milliseconds(o_.pong_delay_ms));
      }
    } else if (r.kind == Request::Kind::kInvalid) {
      push_owned(error_frame(
          400, "Unrecognized request. See the docs or send 'help' for more details.", r.raw));
    } else if (r.op == "subscribe") {
      subscribe(r);
    } else if (r.op == "unsubscribe") {
      unsubscribe(r);
    } else if (r.op == "cancelAllAfter") {
      if (r.integer && *r.integer >= 0) {
        log("connection {}: cancelAllAfter {}", number_, *r.integer);
        push_owned(cancel_all_after_reply(wall_now(), *r.integer));
      } else {
        push_owned(error_frame(400, "cancelAllAfter takes one integer: the timeout in ms", r.raw));
      }
    } else {
      push_owned(error_frame(400, "Unknown op", r.raw));
    }
  }

  struct Topic {
    uint16_t table = 0;
    std::optional<uint32_t> symbol;  // none: the whole table
  };

  // The recording has it: a partial of that table (and symbol).
  [[nodiscard]] std::optional<Topic> resolve(std::string_view topic) const {
    const size_t colon = topic.find(':');
    const auto table = rec_.find_table(topic.substr(0, colon));
    if (!table || rec_.partials(*table).empty()) return std::nullopt;
    if (colon == std::string_view::npos) return Topic{*table, std::nullopt};
    const auto symbol = rec_.find_symbol(topic.substr(colon + 1));
    if (!symbol || rec_.partial_for(*table, *symbol, cursor_) == kNoPos) return std::nullopt;
    return Topic{*table, symbol};
  }

  void subscribe(const Request& r) {
    std::vector<std::pair<std::string, Topic>> accepted;
    for (const std::string& topic : r.topics) {
      const auto t = resolve(topic);
      if (!t) {
        push_owned(error_frame(400, "Unknown or expired table: " + topic, r.raw));
        log("connection {}: subscribe {} refused: not in the recording", number_, topic);
      } else if (topics_.count(topic) != 0) {
        push_owned(error_frame(400, "You are already subscribed to this topic: " + topic, r.raw));
      } else {
        push_owned(subscribe_ack(topic, r.raw));
        log("connection {}: subscribe {}", number_, topic);
        accepted.emplace_back(topic, *t);
      }
    }
    if (!accepted.empty() && !streaming_) {
      streaming_ = true;
      start_ = Clock::now();
      // A resumed session (chaos) goes on at the recording's pace from the cursor.
      if (cursor_ < rec_.frames().size()) {
        const int64_t at = rec_.frames()[cursor_].recv_ns;
        if (at > rec_.first_recv_ns())
          start_ -= std::chrono::nanoseconds(at - rec_.first_recv_ns());
      }
    }
    for (const auto& accepted_topic : accepted) {
      // (Not a structured binding: C++20 lets a lambda capture one, clang 14 does not yet.)
      const auto& topic = accepted_topic.first;
      const auto& t = accepted_topic.second;
      auto& keys = topics_[topic];
      std::set<uint32_t> sent;  // whole-table partials already queued for this topic
      const auto add = [&](uint32_t symbol) {
        keys.push_back({t.table, symbol});
        starts_[{t.table, symbol}] =
            std::max(cursor_, send_partial(t.table, symbol, !t.symbol, sent));
        if (!first_book_ && symbol != kNoPos && Recording::is_book_table(rec_.table_name(t.table)))
          first_book_ = Key{t.table, symbol};
      };
      if (t.symbol) {
        add(*t.symbol);
      } else {
        for (const uint32_t s : rec_.symbols_of(t.table))
          add(s);
        keys.push_back({t.table, kNoPos});
        starts_[{t.table, kNoPos}] = cursor_;
      }
    }
  }

  // Queues the partial of (table, symbol) and returns the first recorded position whose deltas
  // apply after it. Books the cursor has already seen are served from the engine's state, so
  // that the deltas that follow fit; other tables get their recorded partial.
  uint32_t send_partial(uint16_t table, uint32_t symbol, bool whole_topic,
                        std::set<uint32_t>& sent) {
    const std::string& tname = rec_.table_name(table);
    if (Recording::is_book_table(tname)) {
      std::string p = book_partial(*engine_, tname, rec_.symbol_name(symbol));
      if (!p.empty()) {
        push_table(std::move(p), table);
        mark_partial(table, {symbol}, cursor_);
        return cursor_;
      }
    } else if (chaos_ && symbol != kNoPos) {
      // A session that goes on across connections serves the current row, as BitMEX does: the
      // recorded partial may be far behind the cursor.
      std::string p = keyless_partial(*engine_, tname, rec_.symbol_name(symbol));
      if (!p.empty()) {
        push_table(std::move(p), table);
        mark_partial(table, {symbol}, cursor_);
        return cursor_;
      }
    }
    const uint32_t pos = rec_.partial_for(table, symbol, cursor_);
    if (pos == kNoPos) return cursor_;
    const RecordedFrame& f = rec_.frames()[pos];
    if (f.symbols.size() <= 1) {
      push_recorded(f.text, table);
      mark_partial(table, f.symbols.empty() ? std::vector<uint32_t>{kNoPos} : f.symbols, pos + 1);
    } else if (whole_topic) {
      if (sent.insert(pos).second) {  // once for all its symbols
        push_recorded(f.text, table);
        mark_partial(table, f.symbols, pos + 1);
      }
    } else {
      const std::string& want = rec_.symbol_name(symbol);
      std::string part = filter_rows(f.text, [&](std::string_view s) { return s == want; });
      if (!part.empty()) {
        push_table(std::move(part), table);
        mark_partial(table, {symbol}, pos + 1);
      }
    }
    return pos + 1;
  }

  void unsubscribe(const Request& r) {
    for (const std::string& topic : r.topics) {
      const auto it = topics_.find(topic);
      if (it == topics_.end()) {
        push_owned(error_frame(400, "You are not subscribed to this topic: " + topic, r.raw));
        continue;
      }
      const std::vector<Key> keys = std::move(it->second);
      topics_.erase(it);
      for (const Key& k : keys) {
        const bool still = std::any_of(topics_.begin(), topics_.end(), [&](const auto& other) {
          return std::find(other.second.begin(), other.second.end(), k) != other.second.end();
        });
        if (!still) {
          starts_.erase(k);
          whole_books_.erase(k);
        }
      }
      push_owned(unsubscribe_ack(topic, r.raw));
      log("connection {}: unsubscribe {}", number_, topic);
    }
  }

  // Chaos: the connection's next fault, a kind among those injected inside a connection and a
  // gap in table frames from now.
  void draw_fault() {
    pending_ = static_cast<Fault>(chaos_->below(kLinkFaultKinds));
    gap_ = 1 + chaos_->below(o_.chaos_max_gap);
    since_ = 0;
  }

  // Chaos, after each table frame sent: injects the pending fault when its gap is over. True when
  // the connection is gone (closed or reset). A fault that ends the link (close, reset, silence,
  // an oversized frame) is the connection's last; after the others the next one is drawn.
  awaitable<bool> chaos_fault() {
    if (!pending_ || chaos_->done() || ++since_ < gap_) co_return false;
    const Fault f = *pending_;
    pending_.reset();
    const uint32_t at = cursor_;
    switch (f) {
      case Fault::kClose:
        chaos_->record(f, number_, at);
        co_await ws_.async_close(websocket::close_code::normal, kNoThrow);
        co_return true;
      case Fault::kReset: {
        // Only once the client has read everything sent (a websocket ping answered: pongs come
        // back in stream order), so that every fault before the reset reached it and is counted.
        pong_seen_ = false;
        auto [pec] = co_await ws_.async_ping({}, kNoThrow);
        while (!pec && !pong_seen_ && !done_) {
          wake_.expires_at(Clock::time_point::max());
          co_await wake_.async_wait(kNoThrow);
        }
        chaos_->record(f, number_, at);
        beast::error_code ec;
        socket_of(ws_).set_option(asio::socket_base::linger(true, 0), ec);
        socket_of(ws_).close(ec);
        co_return true;
      }
      case Fault::kSilent: {
        chaos_->record(f, number_, at);
        silent_ = true;
        beast::error_code ec;
        socket_of(ws_).cancel(ec);
        co_return false;
      }
      case Fault::kOversized: {
        const size_t bytes = std::max<size_t>(o_.oversized_bytes, 10);
        queue_.push_front(built(R"({"pad":")" + std::string(bytes - 10, 'x') + "\"}"));
        chaos_->record(f, number_, at, fmt::format(" bytes {}", bytes));
        // The client drops the link on reading it: the session stops here (no frame lost in
        // flight), nothing more is injected, and the connection waits for the client to leave.
        ending_ = true;
        co_return false;
      }
      case Fault::kMalformed: {
        const std::string_view half =
            last_table_.substr(0, std::max<size_t>(1, last_table_.size() / 2));
        queue_.push_front(built(std::string(half)));
        // The client may take it as a broken frame of that table: its books are not whole.
        if (last_table_id_ != UINT16_MAX) {
          for (auto it = whole_books_.begin(); it != whole_books_.end();)
            it = it->first == last_table_id_ ? whole_books_.erase(it) : std::next(it);
        }
        chaos_->record(f, number_, at);
        break;
      }
      case Fault::kUnknownLevel: {
        // A book the client holds whole (its partial sent after anything that could have made
        // it stale), so that the update reaches a live book and is counted as unknown there.
        if (whole_books_.empty()) {
          draw_fault();  // none now: another fault, later
          co_return false;
        }
        auto it = whole_books_.begin();
        std::advance(it, static_cast<long>(chaos_->below(whole_books_.size())));
        const Key key = *it;
        whole_books_.erase(it);
        const std::string& table = rec_.table_name(key.first);
        const std::string& symbol = rec_.symbol_name(key.second);
        uint64_t id = 1;
        if (const auto* b = engine_->book(symbol, table))
          while (b->book.level_price(Side::kBuy, id) != 0 ||
                 b->book.level_price(Side::kSell, id) != 0)
            ++id;
        queue_.push_front(built(unknown_level_update(table, symbol, id)));
        chaos_->record(f, number_, at, fmt::format(" book {}:{} level {}", table, symbol, id));
        break;
      }
      default:
        break;
    }
    if (!chaos_->done()) draw_fault();
    co_return false;
  }

  // After each table frame sent. True when the connection is gone (closed or reset).
  awaitable<bool> inject_faults() {
    if (!faults_) co_return false;
    const uint64_t n = table_frames_;
    const auto at = [n](const std::optional<uint64_t>& o) { return o && *o == n; };
    if (at(o_.close_after)) {
      log("connection {}: fault injected: close after {} table frames", number_, n);
      co_await ws_.async_close(websocket::close_code::normal, kNoThrow);
      co_return true;
    }
    if (at(o_.reset_after)) {
      log("connection {}: fault injected: reset after {} table frames", number_, n);
      beast::error_code ec;
      socket_of(ws_).set_option(asio::socket_base::linger(true, 0), ec);
      socket_of(ws_).close(ec);
      co_return true;
    }
    if (at(o_.silent_after)) {
      log("connection {}: fault injected: silent after {} table frames", number_, n);
      silent_ = true;
      beast::error_code ec;
      socket_of(ws_).cancel(ec);  // the reader leaves the websocket layer (see reader())
      co_return false;
    }
    if (at(o_.unknown_level_after)) {
      if (first_book_) {
        const std::string& table = rec_.table_name(first_book_->first);
        const std::string& symbol = rec_.symbol_name(first_book_->second);
        uint64_t id = 1;
        if (const auto* b = engine_->book(symbol, table))
          while (b->book.level_price(Side::kBuy, id) != 0 ||
                 b->book.level_price(Side::kSell, id) != 0)
            ++id;
        queue_.push_front(built(unknown_level_update(table, symbol, id)));
        log("connection {}: fault injected: update of unknown level {} of {} {} after {} table "
            "frames",
            number_, id, table, symbol, n);
      } else {
        log("connection {}: unknown-level fault skipped: no book subscribed", number_);
      }
    }
    if (at(o_.oversized_after)) {
      const size_t bytes = o_.oversized_bytes;
      std::string big;
      if (bytes >= 10) {
        big = R"({"pad":")" + std::string(bytes - 10, 'x') + "\"}";
      } else {
        big.assign(bytes, ' ');
      }
      queue_.push_front(built(std::move(big)));
      log("connection {}: fault injected: {}-byte frame after {} table frames", number_, bytes, n);
    }
    if (at(o_.malformed_after)) {
      const std::string_view half =
          last_table_.substr(0, std::max<size_t>(1, last_table_.size() / 2));
      queue_.push_front(built(std::string(half)));
      log("connection {}: fault injected: truncated frame after {} table frames", number_, n);
    }
    co_return false;
  }

  websocket::stream<NextLayer>& ws_;
  const Options& o_;
  const Recording& rec_;
  const uint64_t number_;
  const bool faults_;
  asio::steady_timer wake_;
  std::unique_ptr<FeedEngine>& engine_;  // the session's
  uint32_t& cursor_;                     // the session's: next recorded frame
  Chaos* const chaos_;                   // null without --chaos
  std::optional<Fault> pending_;         // chaos: the next fault on this connection
  uint64_t gap_ = 0, since_ = 0;         // chaos: table frames before it, and sent since
  std::set<Key> whole_books_;            // chaos: books whose partial the client has whole
  uint16_t last_table_id_ = UINT16_MAX;
  bool pong_seen_ = false;
  std::deque<Clock::time_point> pongs_due_;  // --pong-delay-ms: pings not yet answered
  uint64_t laps_ = 0;                        // --loop: times the recording was served whole
  bool ending_ = false;  // chaos: an oversized frame was sent, the client will leave
  std::deque<Out> queue_;
  std::map<std::string, std::vector<Key>> topics_;  // subscribed topic -> its keys
  std::map<Key, uint32_t> starts_;  // subscribed key -> first recorded position it gets
  std::optional<Key> first_book_;
  std::string_view last_table_;
  Clock::time_point start_{};
  uint64_t frames_sent_ = 0;
  uint64_t table_frames_ = 0;
  bool streaming_ = false;  // since the first subscribe
  bool served_ = false;
  bool silent_ = false;
  bool done_ = false;
};

class Server {
 public:
  Server(asio::io_context& ioc, const Options& o, const Recording& rec)
      : o_(o), rec_(rec), acceptor_(ioc) {
    if (o.chaos_seed) chaos_.emplace(o);
  }

  void bind() {
    const tcp::endpoint ep(asio::ip::make_address(o_.listen), o_.port);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen();
    if (tls()) {
      ssl_.emplace(ssl::context::tls_server);
      ssl_->use_certificate_chain_file(o_.tls_cert);
      ssl_->use_private_key_file(o_.tls_key, ssl::context::pem);
    }
    const tcp::endpoint local = acceptor_.local_endpoint();
    const std::string host = local.address().is_v6() ? "[" + local.address().to_string() + "]"
                                                     : local.address().to_string();
    fmt::print("listening on {}://{}:{}/realtime\n", tls() ? "wss" : "ws", host, local.port());
    std::fflush(stdout);
  }

  awaitable<void> run() {
    for (uint64_t number = 1;; ++number) {
      auto [ec, socket] = co_await acceptor_.async_accept(kNoThrow);
      if (ec) {
        log("accept failed: {}", ec.message());
        --number;
        continue;
      }
      beast::error_code ignored;
      const auto peer = socket.remote_endpoint(ignored);
      log("connection {}: connected from {}:{}", number, peer.address().to_string(), peer.port());
      socket.set_option(tcp::no_delay(true), ignored);
      if (tls()) {
        beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), *ssl_);
        auto [hec] = co_await stream.async_handshake(ssl::stream_base::server, kNoThrow);
        if (hec) {
          log("connection {}: TLS handshake failed: {}", number, hec.message());
        } else {
          co_await session(std::move(stream), number);
        }
      } else {
        co_await session(beast::tcp_stream(std::move(socket)), number);
      }
      log("connection {}: closed", number);
      if (o_.exit_after_connections != 0 && number >= o_.exit_after_connections) co_return;
    }
  }

 private:
  [[nodiscard]] bool tls() const { return !o_.tls_cert.empty(); }

  // The HTTP upgrade: route, refusals and authentication, then the websocket connection.
  template <class Stream>
  awaitable<void> session(Stream stream, uint64_t number) {
    beast::flat_buffer buf;
    http::request<http::string_body> req;
    auto [ec, n] = co_await http::async_read(stream, buf, req, kNoThrow);
    if (ec) {
      log("connection {}: no HTTP request: {}", number, ec.message());
      co_return;
    }
    const std::string_view target = req.target();
    const std::string_view path = target.substr(0, target.find('?'));
    if (path != "/realtime") {
      log("connection {}: handshake refused: 404 for {}", number, target);
      co_await respond(stream, req, http::status::not_found,
                       http_error_body("Not Found", "HTTPError"));
      co_return;
    }
    if (!websocket::is_upgrade(req)) {
      log("connection {}: handshake refused: 400, not a websocket upgrade", number);
      co_await respond(stream, req, http::status::bad_request,
                       http_error_body("Expected a websocket upgrade", "HTTPError"));
      co_return;
    }
    if (chaos_ && chaos_storm(number)) {
      ++chaos_->refused;
      const bool rate = chaos_->storm_status == 429;
      log("connection {}: handshake refused: {} (chaos)", number, chaos_->storm_status);
      std::string body =
          rate ? http_error_body("Rate limit exceeded, retry in 1 seconds.", "RateLimitError")
               : http_error_body("The system is currently overloaded. Please try again later.",
                                 "HTTPError");
      co_await respond(stream, req, static_cast<http::status>(chaos_->storm_status),
                       std::move(body));
      co_return;
    }
    if (refused_ < o_.refuse) {
      ++refused_;
      log("connection {}: handshake refused: {} ({} of {})", number, o_.refuse_status, refused_,
          o_.refuse);
      // GCC 12 destroys temporaries of a conditional inside a co_await expression twice: the
      // body is built before the co_await.
      std::string body =
          o_.refuse_status == 429
              ? http_error_body("Rate limit exceeded, retry in 1 seconds.", "RateLimitError")
              : http_error_body("The system is currently overloaded. Please try again later.",
                                "HTTPError");
      co_await respond(stream, req, static_cast<http::status>(o_.refuse_status), std::move(body));
      co_return;
    }
    if (!o_.api_key.empty()) {
      const auto why = check_auth(
          o_.api_key, o_.api_secret, req["api-key"], req["api-expires"], req["api-signature"],
          std::chrono::duration_cast<std::chrono::seconds>(wall_now().time_since_epoch()).count());
      if (why) {
        log("connection {}: handshake refused: 401, {}", number, *why);
        co_await respond(stream, req, http::status::unauthorized,
                         http_error_body(*why, "HTTPError"));
        co_return;
      }
    }
    websocket::stream<Stream> ws(std::move(stream));
    ws.read_message_max(1u << 20);
    ws.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "bitmex-sim"); }));
    auto [aec] = co_await ws.async_accept(req, kNoThrow);
    if (aec) {
      log("connection {}: websocket accept failed: {}", number, aec.message());
      co_return;
    }
    const uint64_t ws_number = ++ws_connections_;
    const bool faults = ws_number <= o_.fault_connections;
    log("connection {}: websocket open{}", number, faults || chaos_ ? " (faults armed)" : "");
    std::optional<Session> own;  // without chaos, each connection replays from the beginning
    if (!chaos_) own.emplace();
    if (chaos_) {
      ++chaos_->connections;
      chaos_->storm_drawn = false;
    }
    Connection<Stream> c(ws, o_, rec_, number, faults, chaos_ ? session_ : *own,
                         chaos_ ? &*chaos_ : nullptr);
    co_await c.run();
  }

  // Chaos, at a websocket handshake: true to refuse it. The first handshake after a connection
  // may start a storm (one fault) that refuses it and up to --chaos-max-refusals - 1 more.
  bool chaos_storm(uint64_t number) {
    Chaos& c = *chaos_;
    if (c.storm_left > 0) {
      --c.storm_left;
      return true;
    }
    if (c.storm_drawn || c.done() || c.connections == 0) return false;
    c.storm_drawn = true;
    if (c.below(100) >= o_.chaos_storm_percent) return false;
    const bool rate = c.below(2) == 0;
    c.storm_status = rate ? 429 : 503;
    const uint64_t n = 1 + c.below(std::max<uint64_t>(1, o_.chaos_max_refusals));
    c.record(rate ? Fault::kRefuse429 : Fault::kRefuse503, number, session_.cursor,
             fmt::format(" refusals {}", n));
    c.storm_left = n - 1;
    return true;
  }

  template <class Stream>
  awaitable<void> respond(Stream& stream, const http::request<http::string_body>& req,
                          http::status status, std::string body) {
    http::response<http::string_body> res{status, req.version()};
    res.set(http::field::server, "bitmex-sim");
    res.set(http::field::content_type, "application/json");
    if (status == http::status::too_many_requests) res.set(http::field::retry_after, "1");
    res.keep_alive(false);
    res.body() = std::move(body);
    res.prepare_payload();
    // clang-tidy 14 misreads the coroutine's lowering as a use of `body` after the move above.
    // NOLINTNEXTLINE(bugprone-use-after-move)
    co_await http::async_write(stream, res, kNoThrow);
    beast::error_code ignored;
    socket_of(stream).shutdown(tcp::socket::shutdown_send, ignored);
  }

  const Options& o_;
  const Recording& rec_;
  tcp::acceptor acceptor_;
  std::optional<ssl::context> ssl_;
  uint64_t refused_ = 0;
  uint64_t ws_connections_ = 0;
  std::optional<Chaos> chaos_;
  Session session_;  // chaos: the one session every connection resumes
};

}  // namespace

void serve(const Options& options, const Recording& recording) {
  asio::io_context ioc(1);
  Server server(ioc, options, recording);
  server.bind();
  std::exception_ptr failure;
  asio::co_spawn(ioc, server.run(), [&](const std::exception_ptr& e) { failure = e; });
  ioc.run();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace bmx::sim
