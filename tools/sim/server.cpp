// Two coroutines per websocket connection, on the one io_context thread:
//   reader: client text frames -> replies queued (ping, ops); notices the client leaving
//   writer: the reply queue first, then the recording from the connection's cursor (at the
//           recorded pace or as fast as the socket takes it); injects the faults
// They share state without locks (one thread); the writer sleeps on a timer that the reader
// cancels to wake it, and always re-checks the state before sleeping, so no wake-up is lost.
#include "tools/sim/server.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <deque>
#include <map>
#include <memory>
#include <set>

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

// One websocket connection, from the accepted upgrade until the client leaves.
template <class NextLayer>
class Connection {
 public:
  Connection(websocket::stream<NextLayer>& ws, const Options& o, const Recording& rec,
             uint64_t number, bool faults)
      : ws_(ws),
        o_(o),
        rec_(rec),
        number_(number),
        faults_(faults),
        wake_(ws.get_executor()),
        engine_(std::make_unique<FeedEngine>()) {}

  awaitable<void> run() {
    using namespace asio::experimental::awaitable_operators;
    push_owned(welcome_frame(wall_now()), false);
    co_await (reader() && writer());
  }

 private:
  using Key = std::pair<uint16_t, uint32_t>;  // (table, symbol); symbol kNoPos: rows without one
  struct Out {
    std::string owned;
    std::string_view recorded;  // set: a recorded frame, sent from the capture buffer
    bool table = false;         // counts towards the fault thresholds
    [[nodiscard]] std::string_view text() const {
      return recorded.data() != nullptr ? recorded : std::string_view(owned);
    }
  };

  void push_owned(std::string s, bool table) { queue_.push_back(Out{std::move(s), {}, table}); }
  void push_recorded(std::string_view s) { queue_.push_back(Out{{}, s, true}); }
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
      if (!silent_ && !queue_.empty()) {
        const Out out = std::move(queue_.front());
        queue_.pop_front();
        ws_.text(true);
        auto [ec, n] = co_await ws_.async_write(asio::buffer(out.text()), kNoThrow);
        if (ec) break;
        ++frames_sent_;
        if (out.table) {
          ++table_frames_;
          last_table_ = out.text().substr(0, 100);
          if (co_await inject_faults()) break;
        }
        continue;
      }
      if (!silent_ && streaming_ && cursor_ < frames.size()) {
        if (o_.pace_recorded) {
          const auto due = due_time(frames[cursor_]);
          if (due > Clock::now()) {
            wake_.expires_at(due);
            co_await wake_.async_wait(kNoThrow);
            continue;
          }
        }
        advance();
        continue;
      }
      if (!silent_ && streaming_ && !served_) {
        served_ = true;
        fmt::print("served {} frames on connection {}\n", frames_sent_, number_);
        std::fflush(stdout);
        log("connection {}: recording served ({} frames sent)", number_, frames_sent_);
      }
      wake_.expires_at(Clock::time_point::max());
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
      if (subscribed(f.table, kNoPos, pos)) push_recorded(f.text);
    } else if (wanted == f.symbols.size()) {
      push_recorded(f.text);
    } else if (wanted > 0) {
      std::string part = filter_rows(f.text, [&](std::string_view sym) {
        const auto id = rec_.find_symbol(sym);
        return id && subscribed(f.table, *id, pos);
      });
      if (!part.empty()) push_owned(std::move(part), true);
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
      push_owned("pong", false);
    } else if (r.kind == Request::Kind::kInvalid) {
      push_owned(
          error_frame(400, "Unrecognized request. See the docs or send 'help' for more details.",
                      r.raw),
          false);
    } else if (r.op == "subscribe") {
      subscribe(r);
    } else if (r.op == "unsubscribe") {
      unsubscribe(r);
    } else if (r.op == "cancelAllAfter") {
      if (r.integer && *r.integer >= 0) {
        log("connection {}: cancelAllAfter {}", number_, *r.integer);
        push_owned(cancel_all_after_reply(wall_now(), *r.integer), false);
      } else {
        push_owned(error_frame(400, "cancelAllAfter takes one integer: the timeout in ms", r.raw),
                   false);
      }
    } else {
      push_owned(error_frame(400, "Unknown op", r.raw), false);
    }
  }

  struct Topic {
    uint16_t table;
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
        push_owned(error_frame(400, "Unknown or expired table: " + topic, r.raw), false);
        log("connection {}: subscribe {} refused: not in the recording", number_, topic);
      } else if (topics_.count(topic) != 0) {
        push_owned(error_frame(400, "You are already subscribed to this topic: " + topic, r.raw),
                   false);
      } else {
        push_owned(subscribe_ack(topic, r.raw), false);
        log("connection {}: subscribe {}", number_, topic);
        accepted.emplace_back(topic, *t);
      }
    }
    if (!accepted.empty() && !streaming_) {
      streaming_ = true;
      start_ = Clock::now();
    }
    for (const auto& [topic, t] : accepted) {
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
        push_owned(std::move(p), true);
        return cursor_;
      }
    }
    const uint32_t pos = rec_.partial_for(table, symbol, cursor_);
    if (pos == kNoPos) return cursor_;
    const RecordedFrame& f = rec_.frames()[pos];
    if (f.symbols.size() <= 1) {
      push_recorded(f.text);
    } else if (whole_topic) {
      if (sent.insert(pos).second) push_recorded(f.text);  // once for all its symbols
    } else {
      const std::string& want = rec_.symbol_name(symbol);
      std::string part = filter_rows(f.text, [&](std::string_view s) { return s == want; });
      if (!part.empty()) push_owned(std::move(part), true);
    }
    return pos + 1;
  }

  void unsubscribe(const Request& r) {
    for (const std::string& topic : r.topics) {
      const auto it = topics_.find(topic);
      if (it == topics_.end()) {
        push_owned(error_frame(400, "You are not subscribed to this topic: " + topic, r.raw),
                   false);
        continue;
      }
      const std::vector<Key> keys = std::move(it->second);
      topics_.erase(it);
      for (const Key& k : keys) {
        const bool still = std::any_of(topics_.begin(), topics_.end(), [&](const auto& other) {
          return std::find(other.second.begin(), other.second.end(), k) != other.second.end();
        });
        if (!still) starts_.erase(k);
      }
      push_owned(unsubscribe_ack(topic, r.raw), false);
      log("connection {}: unsubscribe {}", number_, topic);
    }
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
        queue_.push_front(Out{unknown_level_update(table, symbol, id), {}, false});
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
      queue_.push_front(Out{std::move(big), {}, false});
      log("connection {}: fault injected: {}-byte frame after {} table frames", number_, bytes, n);
    }
    if (at(o_.malformed_after)) {
      const std::string_view half =
          last_table_.substr(0, std::max<size_t>(1, last_table_.size() / 2));
      queue_.push_front(Out{std::string(half), {}, false});
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
  std::unique_ptr<FeedEngine> engine_;
  std::deque<Out> queue_;
  std::map<std::string, std::vector<Key>> topics_;  // subscribed topic -> its keys
  std::map<Key, uint32_t> starts_;  // subscribed key -> first recorded position it gets
  std::optional<Key> first_book_;
  std::string_view last_table_;
  uint32_t cursor_ = 0;  // next recorded frame
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
      : ioc_(ioc), o_(o), rec_(rec), acceptor_(ioc) {}

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
    log("connection {}: websocket open{}", number, faults ? " (faults armed)" : "");
    Connection<Stream> c(ws, o_, rec_, number, faults);
    co_await c.run();
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
    co_await http::async_write(stream, res, kNoThrow);
    beast::error_code ignored;
    socket_of(stream).shutdown(tcp::socket::shutdown_send, ignored);
  }

  asio::io_context& ioc_;
  const Options& o_;
  const Recording& rec_;
  tcp::acceptor acceptor_;
  std::optional<ssl::context> ssl_;
  uint64_t refused_ = 0;
  uint64_t ws_connections_ = 0;
};

}  // namespace

void serve(const Options& options, const Recording& recording) {
  asio::io_context ioc(1);
  Server server(ioc, options, recording);
  server.bind();
  std::exception_ptr failure;
  asio::co_spawn(ioc, server.run(), [&](std::exception_ptr e) { failure = e; });
  ioc.run();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace bmx::sim
