#include "engine/feed_client.hpp"

#include <fmt/core.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <simdjson.h>

#include <concurrentqueue/concurrentqueue.h>
#include <algorithm>
#include <boost/asio.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <deque>
#include <random>
#include <stdexcept>
#include <thread>

#include "engine/feed_engine.hpp"
#include "shm/segment.hpp"
#include "shm/writer.hpp"

namespace bmx {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

bool is_ip_literal(const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

}  // namespace

// ---- URL and signature ----------------------------------------------------------------------

Url Url::parse(const std::string& text) {
  Url u;
  std::string rest;
  if (text.rfind("wss://", 0) == 0) {
    u.tls = true;
    rest = text.substr(6);
  } else if (text.rfind("ws://", 0) == 0) {
    u.tls = false;
    rest = text.substr(5);
  } else {
    throw std::invalid_argument("URL '" + text + "' must start with ws:// or wss://");
  }
  const size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  u.target = slash == std::string::npos ? "/realtime" : rest.substr(slash);
  const size_t colon = authority.rfind(':');
  if (colon != std::string::npos && authority.find(']') == std::string::npos) {
    u.port = authority.substr(colon + 1);
    authority.resize(colon);
    if (u.port.empty() || u.port.find_first_not_of("0123456789") != std::string::npos) {
      throw std::invalid_argument("URL '" + text + "' has a bad port");
    }
  } else {
    u.port = u.tls ? "443" : "80";
  }
  if (authority.empty()) throw std::invalid_argument("URL '" + text + "' has no host");
  u.host = authority;
  return u;
}

std::string Url::str() const {
  return (tls ? "wss://" : "ws://") + host + ":" + port + target;
}

std::string bitmex_signature(const std::string& secret, const std::string& verb_and_path,
                             int64_t expires) {
  const std::string msg = verb_and_path + std::to_string(expires);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
            reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), mac, &len)) {
    throw std::runtime_error("HMAC-SHA256 failed");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(size_t{len} * 2, '0');
  for (size_t i = 0; i < len; ++i) {
    out[2 * i] = kHex[mac[i] >> 4];
    out[2 * i + 1] = kHex[mac[i] & 15];
  }
  return out;
}

// ---- the client ---------------------------------------------------------------------------------

struct FeedClient::Impl {
  // How a session ended.
  enum class End { kStopped, kLost, kRetryLater, kFatal };

  // One connection's state, shared by its coroutines.
  template <class WS>
  struct Conn {
    template <class... A>
    explicit Conn(asio::io_context& ioc, A&&... a)
        : ws(std::forward<A>(a)...), wake(ioc), disarmed(ioc) {}
    WS ws;
    std::deque<std::string> outbox;  // cold: pings, the switch, (re)subscriptions
    asio::steady_timer wake;         // cancelled when outbox gains a message
    asio::steady_timer disarmed;     // cancelled when the switch's disarm is acknowledged
    bool open = true;
    bool writing = false;
    Clock::time_point last_rx = Clock::now();
    Clock::time_point ping_sent{};
    bool ping_outstanding = false;
    bool stopping = false;
    uint64_t acks = 0;
    uint64_t topic_errors = 0;
    End end = End::kLost;
  };

  Impl(asio::io_context& i, FeedEngine& e, shm::Writer* w, FeedOptions o)
      : ioc(i),
        engine(e),
        writer(w),
        opts(std::move(o)),
        tls_ctx(ssl::context::tls_client),
        backoff_timer(i),
        beat_timer(i),
        events(4096),
        rng(std::random_device{}()) {
    tls_ctx.set_verify_mode(ssl::verify_peer);
    tls_ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                        ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    if (!opts.ca_file.empty()) {
      tls_ctx.load_verify_file(opts.ca_file);
    } else {
      tls_ctx.set_default_verify_paths();
    }
    buffer.reserve(size_t{opts.max_frame_bytes} + simdjson::SIMDJSON_PADDING + 4096);
    logger = std::thread([this] { log_loop(); });
  }

  ~Impl() {
    log_stop.store(true);
    if (logger.joinable()) logger.join();
  }

  asio::io_context& ioc;
  FeedEngine& engine;
  shm::Writer* writer;
  FeedOptions opts;
  ssl::context tls_ctx;
  asio::steady_timer backoff_timer;
  asio::steady_timer beat_timer;
  beast::flat_buffer buffer;
  ClientStats stats;
  moodycamel::ConcurrentQueue<Event> events;
  std::atomic<bool> log_stop{false};
  std::thread logger;
  std::mt19937_64 rng;
  bool stop_requested = false;
  bool done = false;
  int exit_code = 0;
  std::function<void()> stop_session;          // set while a session is open
  std::vector<Clock::time_point> last_repair;  // by topic index

  // ---- logging (the housekeeping thread) --------------------------------------------------------
  void log_loop() {
    Event batch[64];
    for (;;) {
      const size_t n = events.try_dequeue_bulk(batch, 64);
      for (size_t i = 0; i < n; ++i)
        print_event(batch[i]);
      if (n == 0) {
        if (log_stop.load()) {
          if (events.size_approx() == 0) return;
          continue;
        }
        std::this_thread::sleep_for(milliseconds(20));  // idle: nothing waits on this thread
      }
    }
  }

  static void print_event(const Event& e) {
    fmt::print(stderr, "bitmex-feed: frame {}: {}{}{}{}\n", e.frame, to_string(e.kind),
               e.value ? fmt::format(" value={}", e.value) : "", e.text_len ? ": " : "",
               e.excerpt());
  }

  // Cold path lines (connection events): straight to stderr from the network thread.
  template <class... A>
  static void note(fmt::format_string<A...> f, A&&... a) {
    fmt::print(stderr, "bitmex-feed: {}\n", fmt::format(f, std::forward<A>(a)...));
  }

  // The segment's producer heartbeat, every 100 ms for as long as the feed runs, connected or not:
  // readers judge the process by it (a gap in the link is the link state's business).
  asio::awaitable<void> beat_loop() {
    while (!done) {
      if (writer) writer->heartbeat(shm::monotonic_ns());
      beat_timer.expires_after(milliseconds(100));
      co_await beat_timer.async_wait(kTuple);
    }
  }

  // ---- the connection loop --------------------------------------------------------------------
  asio::awaitable<void> main_loop() {
    last_repair.assign(opts.topics.size(), Clock::time_point{});
    int attempt = 0;
    int connections = 0;
    for (;;) {
      if (stop_requested) break;
      if (writer) writer->set_link(shm::LinkState::kConnecting);
      ++connections;
      const End end = opts.url.tls ? co_await tls_session() : co_await plain_session();
      if (end == End::kStopped || stop_requested) break;
      if (end == End::kFatal) {
        exit_code = 1;
        break;
      }
      // A session that was live is lost: its books go stale (counted once, as the segment's
      // reconnects). A connection or handshake that failed lost nothing more.
      if (end == End::kLost) engine.link_lost();
      if (writer) writer->set_link(shm::LinkState::kReconnecting);
      if (opts.max_connections > 0 && connections >= opts.max_connections) {
        note("giving up after {} connection(s) (--max-connections)", connections);
        exit_code = 1;
        break;
      }
      const int64_t cap = opts.backoff_max_ms;
      const int64_t base = std::min<int64_t>(cap, opts.backoff_min_ms << std::min(attempt, 20));
      std::uniform_int_distribution<int64_t> jitter(base / 2, std::max<int64_t>(base / 2, base));
      const int64_t wait = jitter(rng);
      ++attempt;
      if (end == End::kLost && stats.sessions.load() > 0) attempt = std::min(attempt, 1);
      note("reconnecting in {} ms", wait);
      backoff_timer.expires_after(milliseconds(wait));
      co_await backoff_timer.async_wait(kTuple);
    }
    if (writer) writer->set_link(shm::LinkState::kStopped);
    done = true;
    beat_timer.cancel();
    ioc.stop();
  }

  asio::awaitable<End> plain_session() {
    auto c = std::make_shared<Conn<websocket::stream<beast::tcp_stream>>>(ioc, ioc);
    co_return co_await session(c);
  }

  asio::awaitable<End> tls_session() {
    auto c = std::make_shared<Conn<websocket::stream<beast::ssl_stream<beast::tcp_stream>>>>(
        ioc, ioc, tls_ctx);
    auto& tls = c->ws.next_layer();
    // SNI (not for an IP literal, which TLS forbids there) and the name the certificate must carry.
    if (!is_ip_literal(opts.url.host) &&
        !SSL_set_tlsext_host_name(tls.native_handle(), opts.url.host.c_str())) {
      note("cannot set SNI for {}", opts.url.host);
      co_return End::kFatal;
    }
    tls.set_verify_callback(ssl::host_name_verification(opts.url.host));
    co_return co_await session(c);
  }

  template <class C>
  asio::awaitable<End> session(std::shared_ptr<C> c) {
    auto& ws = c->ws;
    auto& tcp_layer = beast::get_lowest_layer(ws);
    ++stats.connects;
    tcp::resolver resolver(ioc);
    auto [rec, endpoints] = co_await resolver.async_resolve(opts.url.host, opts.url.port, kTuple);
    if (rec) {
      note("cannot resolve {}: {}", opts.url.host, rec.message());
      co_return End::kRetryLater;
    }
    tcp_layer.expires_after(milliseconds(opts.connect_timeout_ms));
    auto [cec, ep] = co_await tcp_layer.async_connect(endpoints, kTuple);
    if (cec) {
      note("cannot connect to {}: {}", opts.url.str(), cec.message());
      co_return End::kRetryLater;
    }
    tcp_layer.socket().set_option(tcp::no_delay(true));
    if constexpr (!std::is_same_v<decltype(ws.next_layer()), beast::tcp_stream&>) {
      auto [hec] = co_await ws.next_layer().async_handshake(ssl::stream_base::client, kTuple);
      if (hec) {
        note("TLS handshake with {} failed: {}", opts.url.host, hec.message());
        co_return End::kRetryLater;
      }
    }
    tcp_layer.expires_never();
    websocket::stream_base::timeout t{};
    t.handshake_timeout = milliseconds(opts.connect_timeout_ms);
    t.idle_timeout = websocket::stream_base::none();  // our own text heartbeat watches the link
    t.keep_alive_pings = false;
    ws.set_option(t);
    ws.read_message_max(opts.max_frame_bytes);
    ws.auto_fragment(false);
    const bool auth = !opts.api_key.empty();
    const int64_t expires = std::chrono::duration_cast<std::chrono::seconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count() +
                            60;
    const std::string signature =
        auth ? bitmex_signature(opts.api_secret, "GET" + opts.url.target, expires) : "";
    ws.set_option(websocket::stream_base::decorator([&](websocket::request_type& req) {
      req.set(beast::http::field::user_agent, "bitmex-shm");
      if (auth) {
        req.set("api-expires", std::to_string(expires));
        req.set("api-key", opts.api_key);
        req.set("api-signature", signature);
      }
    }));
    websocket::response_type res;
    auto [wec] = co_await ws.async_handshake(res, opts.url.host, opts.url.target, kTuple);
    if (wec) {
      if (wec == websocket::error::upgrade_declined) {
        ++stats.refused;
        const unsigned status = res.result_int();
        if (status == 401 || status == 403) {
          note("the exchange refused the API key (HTTP {}): {}", status,
               std::string(res.body()).substr(0, 200));
          co_return End::kFatal;
        }
        note("handshake refused with HTTP {}", status);
        co_return End::kRetryLater;
      }
      note("websocket handshake with {} failed: {}", opts.url.str(), wec.message());
      co_return End::kRetryLater;
    }
    if (stats.sessions++ > 0) ++stats.reconnects;
    note("connected to {}", opts.url.str());
    buffer.consume(buffer.size());
    c->last_rx = Clock::now();

    stop_session = [this, c] { request_stop(c); };
    if (stop_requested) request_stop(c);  // asked while we were connecting
    asio::co_spawn(ioc, write_loop(c), asio::detached);
    asio::co_spawn(ioc, heartbeat_loop(c), asio::detached);
    send(*c, subscribe_request("subscribe", opts.topics));
    if (opts.dead_mans_switch) asio::co_spawn(ioc, switch_loop(c), asio::detached);
    if (writer) writer->set_link(shm::LinkState::kLive);

    co_await read_loop(c);

    stop_session = nullptr;
    c->open = false;
    c->wake.cancel();
    c->disarmed.cancel();
    co_return c->end;
  }

  // The hot loop: one frame at a time, applied where it lies in the buffer.
  template <class C>
  asio::awaitable<void> read_loop(std::shared_ptr<C> c) {
    auto& ws = c->ws;
    for (;;) {
      const uint64_t allocs_before = opts.allocation_count ? opts.allocation_count() : 0;
      auto [ec, n] = co_await ws.async_read(buffer, kTuple);
      if (ec) {
        if (c->stopping) {
          c->end = End::kStopped;
        } else if (ec == websocket::error::message_too_big) {
          ++stats.oversized;
          note("a frame exceeded --max-frame ({} bytes): dropping the link", opts.max_frame_bytes);
        } else if (ec == websocket::error::closed) {
          note("the exchange closed the connection ({} {})", static_cast<int>(ws.reason().code),
               std::string(ws.reason().reason.data(), ws.reason().reason.size()));
        } else {
          note("connection lost: {}", ec.message());
        }
        co_return;
      }
      const int64_t recv_ns = shm::realtime_ns();
      c->last_rx = Clock::now();
      c->ping_outstanding = false;
      const auto data = buffer.cdata();
      const char* p = static_cast<const char*>(data.data());
      const size_t len = data.size();
      if (opts.on_raw_frame) opts.on_raw_frame(p, len, recv_ns);
      // Reserved at start for max_frame_bytes + padding and never shrunk: the padding is there.
      const FrameResult r = engine.on_frame(p, len, buffer.capacity(), recv_ns);
      buffer.consume(len);
      engine.drain_events([&](const Event& e) { on_event(*c, e); });
      if (r.kind == FrameKind::kTable && r.action != Action::kPartial) {
        stats.delta_frames.store(stats.delta_frames.load(std::memory_order_relaxed) + 1,
                                 std::memory_order_relaxed);
        if (opts.allocation_count) stats.delta_allocs += opts.allocation_count() - allocs_before;
      }
    }
  }

  template <class C>
  void on_event(C& c, const Event& e) {
    switch (e.kind) {
      case EventKind::kSubscribed:
        ++c.acks;
        break;
      case EventKind::kCancelAllAfter:
        ++stats.dms_replies;
        if (c.stopping) c.disarmed.cancel();
        break;
      case EventKind::kErrorFrame:
        ++stats.topic_errors;
        ++c.topic_errors;
        note("the exchange answered with an error (status {}): {}", e.value, e.excerpt());
        if (e.value == 401 || e.value == 403) {
          c.end = End::kFatal;
          close_now(c);
        } else if (c.acks == 0 && c.topic_errors >= opts.topics.size()) {
          note("every topic was refused: nothing to do");
          c.end = End::kFatal;
          close_now(c);
        }
        break;
      case EventKind::kUnknownLevel:
      case EventKind::kCrossedBook:
      case EventKind::kUnknownRow:
      case EventKind::kBadRow:
      case EventKind::kMalformedFrame:  // with a table: its books are stale (rows lost)
        if (!events.try_enqueue(e)) ++stats.events_lost;
        repair(c, e);
        break;
      case EventKind::kInfo:
      case EventKind::kUnsubscribed:
      case EventKind::kAuth:
        break;
      default:
        if (!events.try_enqueue(e)) ++stats.events_lost;
        break;
    }
  }

  // A book or table the engine marked stale gets a fresh partial: unsubscribe and subscribe its
  // topic again (at most once per repair_every_ms per topic). A frame that failed part-way names
  // its table but not which symbols it reached: every topic of that table is repaired.
  template <class C>
  void repair(C& c, const Event& e) {
    if (e.table == Event::kNoTable) return;
    const std::string& table = engine.tables()[e.table].name;
    const std::string symbol =
        e.symbol == kNoSymbol ? "" : std::string(engine.symbols().name(e.symbol));
    std::vector<std::string> again;  // cold: a repair is rare
    const auto now = Clock::now();
    const std::string prefix = table + ":", topic = prefix + symbol;
    for (size_t i = 0; i < opts.topics.size(); ++i) {
      const std::string& t = opts.topics[i];
      const bool match = t == table || (symbol.empty() ? t.rfind(prefix, 0) == 0 : t == topic);
      if (!match || now - last_repair[i] < milliseconds(opts.repair_every_ms)) continue;
      last_repair[i] = now;
      again.push_back(t);
    }
    if (again.empty()) return;
    stats.repairs += again.size();
    note("{} is stale ({}): resubscribing {}", symbol.empty() ? table : table + ":" + symbol,
         to_string(e.kind), subscribe_request("subscribe", again));
    send(c, subscribe_request("unsubscribe", again));
    send(c, subscribe_request("subscribe", again));
  }

  static std::string subscribe_request(const char* op, const std::vector<std::string>& topics) {
    std::string s = std::string("{\"op\":\"") + op + "\",\"args\":[";
    for (size_t i = 0; i < topics.size(); ++i) {
      if (i) s += ',';
      s += '"' + topics[i] + '"';
    }
    return s + "]}";
  }

  template <class C>
  void send(C& c, std::string text) {
    if (!c.open) return;
    c.outbox.push_back(std::move(text));
    c.wake.cancel();
  }

  template <class C>
  void close_now(C& c) {
    boost::system::error_code ignored;
    beast::get_lowest_layer(c.ws).socket().close(ignored);
  }

  // Writes are rare and never on the frame path; websocket allows one at a time, so one loop
  // drains the outbox.
  template <class C>
  asio::awaitable<void> write_loop(std::shared_ptr<C> c) {
    while (c->open) {
      if (c->outbox.empty()) {
        c->wake.expires_at(Clock::time_point::max());
        co_await c->wake.async_wait(kTuple);
        continue;
      }
      const std::string msg = std::move(c->outbox.front());
      c->outbox.pop_front();
      c->ws.text(true);
      auto [ec, n] = co_await c->ws.async_write(asio::buffer(msg), kTuple);
      if (ec) co_return;  // the read loop sees the loss too
    }
  }

  // BitMEX's own heartbeat: "ping" after ping_after_ms of silence; nothing within dead_after_ms
  // more means the link is dead (closed here, so that the read loop ends and we reconnect).
  template <class C>
  asio::awaitable<void> heartbeat_loop(std::shared_ptr<C> c) {
    asio::steady_timer t(ioc);
    const auto tick =
        milliseconds(std::max<int64_t>(10, std::min(opts.ping_after_ms, opts.dead_after_ms) / 5));
    while (c->open) {
      t.expires_after(tick);
      co_await t.async_wait(kTuple);
      if (!c->open) break;
      const auto now = Clock::now();
      if (c->ping_outstanding) {
        if (now - c->ping_sent > milliseconds(opts.dead_after_ms)) {
          ++stats.dead_links;
          note("no data and no pong for {} ms after ping: the link is dead", opts.dead_after_ms);
          close_now(*c);
          break;
        }
      } else if (now - c->last_rx > milliseconds(opts.ping_after_ms)) {
        c->ping_outstanding = true;
        c->ping_sent = now;
        ++stats.pings;
        send(*c, "ping");
      }
    }
  }

  // Dead man's switch: cancelAllAfter(timeout) now and every interval while the session lasts.
  template <class C>
  asio::awaitable<void> switch_loop(std::shared_ptr<C> c) {
    asio::steady_timer t(ioc);
    const std::string arm =
        "{\"op\":\"cancelAllAfter\",\"args\":" + std::to_string(opts.dms_timeout_ms) + "}";
    while (c->open && !c->stopping) {
      ++stats.dms_sent;
      send(*c, arm);
      t.expires_after(milliseconds(opts.dms_interval_ms));
      co_await t.async_wait(kTuple);
    }
  }

  template <class C>
  void request_stop(std::shared_ptr<C> c) {
    if (c->stopping) return;
    c->stopping = true;
    asio::co_spawn(ioc, close_session(c), asio::detached);
  }

  // Clean shutdown of a live session: disarm the switch and wait briefly for the reply, then the
  // websocket close handshake.
  template <class C>
  asio::awaitable<void> close_session(std::shared_ptr<C> c) {
    if (opts.dead_mans_switch) {
      c->disarmed.expires_after(milliseconds(2000));
      ++stats.dms_sent;
      send(*c, "{\"op\":\"cancelAllAfter\",\"args\":0}");
      auto [ec] = co_await c->disarmed.async_wait(kTuple);
      if (!ec) note("the exchange did not confirm the dead man's switch disarm within 2 s");
    }
    // Let the outbox drain (the disarm) before closing.
    asio::steady_timer t(ioc);
    for (int i = 0; i < 100 && (!c->outbox.empty()) && c->open; ++i) {
      t.expires_after(milliseconds(10));
      co_await t.async_wait(kTuple);
    }
    if (!c->open) co_return;
    auto [ec] = co_await c->ws.async_close(websocket::close_code::normal, kTuple);
    if (ec) close_now(*c);
  }

  void stop() {
    if (stop_requested) return;
    stop_requested = true;
    if (stop_session) {
      stop_session();
    } else {
      backoff_timer.cancel();
    }
  }
};

FeedClient::FeedClient(asio::io_context& ioc, FeedEngine& engine, shm::Writer* writer,
                       FeedOptions options)
    : impl_(std::make_unique<Impl>(ioc, engine, writer, std::move(options))) {}

FeedClient::~FeedClient() = default;

void FeedClient::start() {
  asio::co_spawn(impl_->ioc, impl_->beat_loop(), asio::detached);
  asio::co_spawn(impl_->ioc, impl_->main_loop(), asio::detached);
}

void FeedClient::stop() {
  impl_->stop();
}

void FeedClient::run() {
  if (impl_->opts.spin) {
    while (!impl_->done) {
      impl_->ioc.poll();
      if (impl_->ioc.stopped() && !impl_->done) impl_->ioc.restart();
    }
  } else {
    impl_->ioc.run();
  }
}

int FeedClient::exit_code() const noexcept {
  return impl_->exit_code;
}

const ClientStats& FeedClient::stats() const noexcept {
  return impl_->stats;
}

}  // namespace bmx
