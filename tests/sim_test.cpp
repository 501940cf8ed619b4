// The real bitmex-sim binary over real loopback: a Beast client in the test connects, subscribes
// and checks what arrives against the recording itself (split and parsed by the test's own
// reference code, never by the sim's). No sleeps: the test waits for lines and frames, each with
// a deadline; only the silent fault is checked as an absence, with a short one.
#include <openssl/hmac.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <simdjson.h>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include "reference_model.hpp"
#include "support/process.hpp"
#include "support/test_pki.hpp"

namespace {

namespace fs = std::filesystem;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

const std::string kCapture = "bitmex/cryptofeed-2021-07-22.txt";

// ---- the recording, as the test reads it -------------------------------------------------------

struct RecordedFrame {
  std::string_view text;
  std::string table, action;
  std::vector<std::string> symbols;  // the partial's filter symbol, else the rows' symbols
};

const std::vector<RecordedFrame>& recording() {
  static const std::string text = bmxtest::read_file(bmxtest::data_path(kCapture));
  static const std::vector<RecordedFrame> frames = [] {
    std::vector<RecordedFrame> out;
    simdjson::dom::parser parser;
    for (const std::string_view f : bmxtest::split_capture(text)) {
      simdjson::dom::element doc;
      std::string_view table, action, sym;
      if (parser.parse(f.data(), f.size()).get(doc) || doc["table"].get_string().get(table) ||
          doc["action"].get_string().get(action))
        continue;
      RecordedFrame r{f, std::string(table), std::string(action), {}};
      if (!doc["filter"]["symbol"].get_string().get(sym)) {
        r.symbols.emplace_back(sym);
      } else {
        for (simdjson::dom::element row : doc["data"].get_array())
          if (!row["symbol"].get_string().get(sym)) r.symbols.emplace_back(sym);
      }
      out.push_back(std::move(r));
    }
    return out;
  }();
  return frames;
}

bool is_for(const RecordedFrame& f, std::string_view table, std::string_view symbol) {
  if (f.table != table || f.symbols.empty()) return false;
  for (const auto& s : f.symbols)
    if (s != symbol) return false;
  return true;
}

// The recording's frames of (table, symbol): its first partial, then every delta after it.
struct Topic {
  std::string_view partial;
  std::vector<std::string_view> deltas;
};
Topic recorded_topic(std::string_view table, std::string_view symbol) {
  Topic t;
  for (const auto& f : recording()) {
    if (!is_for(f, table, symbol)) continue;
    if (t.partial.empty()) {
      if (f.action == "partial") t.partial = f.text;
    } else {
      t.deltas.push_back(f.text);
    }
  }
  return t;
}

std::string field(std::string_view frame, std::string_view key) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(frame.data(), frame.size()).get(doc)) return "<not json>";
  simdjson::dom::element v;
  if (doc[key].get(v)) return "<absent>";
  std::string_view s;
  if (!v.get_string().get(s)) return std::string(s);
  return simdjson::minify(v);
}

bool parses(std::string_view frame) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  return !parser.parse(frame.data(), frame.size()).get(doc);
}

// ---- the sim process ---------------------------------------------------------------------------

class Sim {
 public:
  explicit Sim(std::vector<std::string> args) : child_(argv(std::move(args))) {
    if (!child_.wait_for_output("/realtime\n", 60s)) return;
    const std::string& out = child_.output();
    const size_t colon = out.rfind(':', out.find("/realtime"));
    port_ = static_cast<uint16_t>(std::stoi(out.substr(colon + 1)));
  }
  [[nodiscard]] uint16_t port() const { return port_; }
  bmxtest::Child& child() { return child_; }
  // The frame count of the `served ... on connection C` line, or -1 when it does not come.
  long served(int connection) {
    const std::string tail = " frames on connection " + std::to_string(connection) + "\n";
    if (!child_.wait_for_output(tail, 60s)) return -1;
    const std::string& out = child_.output();
    const size_t end = out.find(tail);
    const size_t start = out.rfind("served ", end);
    return std::stol(out.substr(start + 7, end - start - 7));
  }

 private:
  static std::vector<std::string> argv(std::vector<std::string> args) {
    args.insert(args.begin(), {BMX_SIM_BIN, bmxtest::data_path(kCapture)});
    return args;
  }
  bmxtest::Child child_;
  uint16_t port_ = 0;
};

// ---- a small Beast client, every operation with a deadline -------------------------------------

template <bool Tls>
class Client {
  using Next = std::conditional_t<Tls, beast::ssl_stream<beast::tcp_stream>, beast::tcp_stream>;

 public:
  explicit Client(ssl::context* ctx = nullptr) {
    if constexpr (Tls) {
      ws_.emplace(ioc_, *ctx);
    } else {
      ws_.emplace(ioc_);
    }
    ws_->read_message_max(64u << 20);
  }

  // TCP connect, TLS (SNI and host-name verification against `verify_host`), websocket upgrade.
  beast::error_code connect(uint16_t port,
                            const std::vector<std::pair<std::string, std::string>>& headers = {},
                            const std::string& verify_host = "localhost") {
    const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
    beast::error_code ec =
        run([&](auto h) { beast::get_lowest_layer(*ws_).async_connect(ep, std::move(h)); });
    if (ec) return ec;
    if constexpr (Tls) {
      auto& tls = ws_->next_layer();
      SSL_set_tlsext_host_name(tls.native_handle(), verify_host.c_str());
      tls.set_verify_mode(ssl::verify_peer);
      tls.set_verify_callback(ssl::host_name_verification(verify_host));
      ec = run([&](auto h) { tls.async_handshake(ssl::stream_base::client, std::move(h)); });
      if (ec) return ec;
    }
    ws_->set_option(websocket::stream_base::decorator([headers](websocket::request_type& r) {
      for (const auto& [k, v] : headers)
        r.set(k, v);
    }));
    return run([&](auto h) {
      ws_->async_handshake("127.0.0.1:" + std::to_string(port), "/realtime?heartbeat=true",
                           std::move(h));
    });
  }

  // The next text frame; nullopt with `ec` set on error or after `timeout`.
  std::optional<std::string> read(beast::error_code* ec_out = nullptr,
                                  std::chrono::milliseconds timeout = 30s) {
    beast::flat_buffer buf;
    const beast::error_code ec = run([&](auto h) { ws_->async_read(buf, std::move(h)); }, timeout);
    if (ec_out) *ec_out = ec;
    if (ec) return std::nullopt;
    return beast::buffers_to_string(buf.data());
  }

  beast::error_code write(std::string_view text) {
    return run([&](auto h) { ws_->async_write(asio::buffer(text), std::move(h)); });
  }

 private:
  // Starts an operation and runs the io_context until it completes or `timeout` passes (then the
  // socket's operations are cancelled and asio::error::timed_out returned).
  template <class Start>
  beast::error_code run(Start start, std::chrono::milliseconds timeout = 30s) {
    std::optional<beast::error_code> result;
    start([&result](beast::error_code ec, auto&&...) { result = ec; });
    ioc_.restart();
    ioc_.run_for(timeout);
    if (result) return *result;
    beast::get_lowest_layer(*ws_).cancel();
    ioc_.restart();
    ioc_.run();
    return asio::error::timed_out;
  }

  asio::io_context ioc_;
  std::optional<websocket::stream<Next>> ws_;
};
using WsClient = Client<false>;

// One plain HTTP upgrade request (no websocket client): the status and body of a refusal.
http::response<http::string_body> raw_upgrade(
    uint16_t port, const std::string& target,
    const std::vector<std::pair<std::string, std::string>>& headers = {}) {
  asio::io_context ioc;
  tcp::socket s(ioc);
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, "127.0.0.1");
  req.set(http::field::upgrade, "websocket");
  req.set(http::field::connection, "Upgrade");
  req.set(http::field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZQ==");
  req.set(http::field::sec_websocket_version, "13");
  for (const auto& [k, v] : headers)
    req.set(k, v);
  http::write(s, req);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(s, buf, res);
  return res;
}

std::string signature(const std::string& secret, const std::string& message) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &len);
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    static constexpr char kHex[] = "0123456789abcdef";
    hex += kHex[mac[i] >> 4];
    hex += kHex[mac[i] & 15];
  }
  return hex;
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class SimTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() /
          ("bmx-sim-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }

  // Welcome, then subscribe to `topic` and read its ack: the client is ready for the partial.
  template <class C>
  void subscribe(C& c, const std::string& topic) {
    const auto welcome = c.read();
    ASSERT_TRUE(welcome);
    ASSERT_EQ(field(*welcome, "info"), "Welcome to the BitMEX Realtime API.");
    ASSERT_FALSE(c.write(R"({"op":"subscribe","args":[")" + topic + R"("]})"));
    const auto ack = c.read();
    ASSERT_TRUE(ack);
    EXPECT_EQ(field(*ack, "success"), "true") << *ack;
    EXPECT_EQ(field(*ack, "subscribe"), topic);
  }

  fs::path dir;
};

// ---- tests -------------------------------------------------------------------------------------

TEST_F(SimTest, ServesWelcomeAckPartialAndEveryDeltaOfOneTopic) {
  Sim sim({});
  ASSERT_NE(sim.port(), 0);
  WsClient c;
  ASSERT_FALSE(c.connect(sim.port()));
  subscribe(c, "orderBookL2:XBTUSD");
  const Topic want = recorded_topic("orderBookL2", "XBTUSD");
  ASSERT_FALSE(want.partial.empty());
  ASSERT_GT(want.deltas.size(), 100u);
  const auto partial = c.read();
  ASSERT_TRUE(partial);
  EXPECT_TRUE(*partial == want.partial) << "the partial is the recorded one, byte for byte";
  for (size_t i = 0; i < want.deltas.size(); ++i) {
    const auto d = c.read();
    ASSERT_TRUE(d) << "delta " << i;
    ASSERT_EQ(*d, want.deltas[i]) << "delta " << i;
  }
  // Welcome, ack, partial and the deltas: everything it sent.
  EXPECT_EQ(sim.served(1), static_cast<long>(3 + want.deltas.size()));
}

TEST_F(SimTest, UnknownTopicGetsAnErrorWhileTheOtherTopicIsServed) {
  Sim sim({});
  WsClient c;
  ASSERT_FALSE(c.connect(sim.port()));
  ASSERT_TRUE(c.read());  // welcome
  const std::string req = R"({"op":"subscribe","args":["orderBookL2:NOSUCH","quote:XBTUSD"]})";
  ASSERT_FALSE(c.write(req));
  const auto err = c.read();
  ASSERT_TRUE(err);
  EXPECT_EQ(field(*err, "status"), "400");
  EXPECT_EQ(field(*err, "error"), "Unknown or expired table: orderBookL2:NOSUCH");
  EXPECT_EQ(field(*err, "request"), req);
  const auto ack = c.read();
  ASSERT_TRUE(ack);
  EXPECT_EQ(field(*ack, "subscribe"), "quote:XBTUSD");
  const Topic want = recorded_topic("quote", "XBTUSD");
  ASSERT_FALSE(want.deltas.empty());
  const auto partial = c.read();
  ASSERT_TRUE(partial);
  EXPECT_TRUE(*partial == want.partial);
  for (size_t i = 0; i < want.deltas.size(); ++i) {
    const auto d = c.read();
    ASSERT_TRUE(d);
    ASSERT_EQ(*d, want.deltas[i]) << "quote delta " << i;
  }
  EXPECT_EQ(sim.served(1), static_cast<long>(4 + want.deltas.size()));
}

TEST_F(SimTest, AnswersPingCancelAllAfterAndUnknownOps) {
  Sim sim({});
  WsClient c;
  ASSERT_FALSE(c.connect(sim.port()));
  ASSERT_TRUE(c.read());  // welcome
  ASSERT_FALSE(c.write("ping"));
  EXPECT_EQ(c.read().value_or(""), "pong");
  ASSERT_FALSE(c.write(R"({"op":"cancelAllAfter","args":60000})"));
  const auto reply = c.read();
  ASSERT_TRUE(reply);
  const std::string now = field(*reply, "now"), cancel = field(*reply, "cancelTime");
  ASSERT_EQ(now.size(), 24u) << *reply;  // 2021-07-22T22:36:10.014Z
  ASSERT_EQ(cancel.size(), 24u) << *reply;
  EXPECT_GT(cancel, now);  // ISO times of one length order as text
  ASSERT_FALSE(c.write(R"({"op":"cancelAllAfter","args":0})"));
  EXPECT_EQ(field(c.read().value_or(""), "cancelTime"), "0");
  ASSERT_FALSE(c.write(R"({"op":"cancelAllAfter","args":"soon"})"));
  EXPECT_EQ(field(c.read().value_or(""), "status"), "400");
  ASSERT_FALSE(c.write(R"({"op":"fly","args":[]})"));
  const auto unknown = c.read();
  ASSERT_TRUE(unknown);
  EXPECT_EQ(field(*unknown, "error"), "Unknown op");
  EXPECT_EQ(field(*unknown, "request"), R"({"op":"fly","args":[]})");
}

// --pong-delay-ms: each pong comes that late, and what the client asked for after the ping is not
// held behind it (a link with a long round trip, for the feed's heartbeat tests).
TEST_F(SimTest, PongDelayAnswersPingsLateWithoutHoldingOtherFrames) {
  Sim sim({"--pong-delay-ms", "300"});
  WsClient c;
  ASSERT_FALSE(c.connect(sim.port()));
  ASSERT_TRUE(c.read());  // welcome
  const auto sent = std::chrono::steady_clock::now();
  ASSERT_FALSE(c.write("ping"));
  ASSERT_FALSE(c.write(R"({"op":"cancelAllAfter","args":0})"));
  EXPECT_EQ(field(c.read().value_or(""), "cancelTime"), "0");  // before the pong
  EXPECT_EQ(c.read().value_or(""), "pong");
  EXPECT_GE(std::chrono::steady_clock::now() - sent, 300ms);
}

TEST_F(SimTest, AcceptsASignedHandshakeAndRefusesABadOneWith401) {
  const std::string secret = "s3cr3t-for-tests";
  { std::ofstream(dir / "secret") << secret << "\n"; }
  Sim sim({"--api-key", "KEY1", "--api-secret-file", (dir / "secret").string(),
           "--exit-after-connections", "3"});
  const std::string expires = std::to_string(unix_now() + 60);
  {
    WsClient c;
    ASSERT_FALSE(
        c.connect(sim.port(), {{"api-key", "KEY1"},
                               {"api-expires", expires},
                               {"api-signature", signature(secret, "GET/realtime" + expires)}}));
    EXPECT_EQ(field(c.read().value_or(""), "info"), "Welcome to the BitMEX Realtime API.");
  }
  const auto bad = raw_upgrade(sim.port(), "/realtime",
                               {{"api-key", "KEY1"},
                                {"api-expires", expires},
                                {"api-signature", signature("wrong", "GET/realtime" + expires)}});
  EXPECT_EQ(bad.result_int(), 401);
  EXPECT_NE(field(bad.body(), "error").find(R"("name":"HTTPError")"), std::string::npos)
      << bad.body();
  const std::string past = std::to_string(unix_now() - 10);
  const auto expired = raw_upgrade(sim.port(), "/realtime",
                                   {{"api-key", "KEY1"},
                                    {"api-expires", past},
                                    {"api-signature", signature(secret, "GET/realtime" + past)}});
  EXPECT_EQ(expired.result_int(), 401);
  EXPECT_EQ(sim.child().wait(30s), 0) << "exits after 3 connections";
}

TEST_F(SimTest, RefusesTheFirstHandshakeWith429ThenServes) {
  Sim sim({"--refuse", "1", "--refuse-status", "429", "--exit-after-connections", "3"});
  const auto refused = raw_upgrade(sim.port(), "/realtime");
  EXPECT_EQ(refused.result_int(), 429);
  EXPECT_NE(field(refused.body(), "error"), "<absent>") << refused.body();
  const auto not_found = raw_upgrade(sim.port(), "/elsewhere");
  EXPECT_EQ(not_found.result_int(), 404);
  {
    WsClient c;
    ASSERT_FALSE(c.connect(sim.port()));
    EXPECT_EQ(field(c.read().value_or(""), "info"), "Welcome to the BitMEX Realtime API.");
  }
  EXPECT_EQ(sim.child().wait(30s), 0);
}

// Faults: the client subscribes XBTUSD's book and reads the partial and one delta (two table
// frames), then meets the fault.
class SimFault : public SimTest {
 protected:
  void start(std::vector<std::string> args) {
    sim.emplace(std::move(args));
    ASSERT_FALSE(c.connect(sim->port()));
    subscribe(c, "orderBookL2:XBTUSD");
    want = recorded_topic("orderBookL2", "XBTUSD");
    ASSERT_TRUE(c.read().value_or("") == want.partial) << "the recorded partial";
    ASSERT_EQ(c.read().value_or(""), want.deltas.at(0));
  }
  std::optional<Sim> sim;
  WsClient c;
  Topic want;
};

TEST_F(SimFault, CloseAfterSendsACloseFrame) {
  start({"--close-after", "2"});
  beast::error_code ec;
  EXPECT_FALSE(c.read(&ec));
  EXPECT_EQ(ec, websocket::error::closed) << ec.message();
}

// A reset also drops what the sim's kernel had not sent yet: the client sees a prefix of the
// frames, then the reset.
TEST_F(SimTest, ResetAfterResetsTheConnection) {
  Sim sim({"--reset-after", "2"});
  WsClient c;
  ASSERT_FALSE(c.connect(sim.port()));
  subscribe(c, "orderBookL2:XBTUSD");
  const Topic want = recorded_topic("orderBookL2", "XBTUSD");
  beast::error_code ec;
  size_t frames = 0;
  while (const auto f = c.read(&ec)) {
    ASSERT_LT(frames, 2u);
    EXPECT_TRUE(*f == (frames == 0 ? want.partial : want.deltas[0]));
    ++frames;
  }
  EXPECT_EQ(ec, asio::error::connection_reset) << ec.message();
}

TEST_F(SimFault, SilentAfterSendsNothingMoreNotEvenPong) {
  start({"--silent-after", "2"});
  ASSERT_FALSE(c.write("ping"));
  beast::error_code ec;
  EXPECT_FALSE(c.read(&ec, 1500ms));
  EXPECT_EQ(ec, asio::error::timed_out) << ec.message();
}

TEST_F(SimFault, MalformedAfterSendsOneTruncatedFrameThenGoesOn) {
  start({"--malformed-after", "2"});
  const auto bad = c.read();
  ASSERT_TRUE(bad);
  EXPECT_FALSE(parses(*bad)) << *bad;
  EXPECT_EQ(want.deltas[0].substr(0, bad->size()), *bad) << "a prefix of the last table frame";
  EXPECT_EQ(c.read().value_or(""), want.deltas.at(1));
}

TEST_F(SimFault, OversizedAfterSendsOneFrameOfTheGivenSizeThenGoesOn) {
  start({"--oversized-after", "2", "--oversized-bytes", "3000000"});
  const auto big = c.read();
  ASSERT_TRUE(big);
  EXPECT_EQ(big->size(), 3000000u);
  EXPECT_EQ(c.read().value_or(""), want.deltas.at(1));
}

TEST_F(SimFault, UnknownLevelAfterUpdatesALevelTheBookDoesNotHold) {
  start({"--unknown-level-after", "2"});
  bmxtest::ReferenceModel model;
  model.apply(want.partial);
  model.apply(want.deltas[0]);
  const auto upd = c.read();
  ASSERT_TRUE(upd);
  EXPECT_EQ(field(*upd, "table"), "orderBookL2");
  EXPECT_EQ(field(*upd, "action"), "update");
  simdjson::dom::parser parser;
  const simdjson::dom::element row = parser.parse(*upd)["data"].at(0);
  EXPECT_EQ(std::string_view(row["symbol"].get_string()), "XBTUSD");
  const uint64_t id = row["id"].get_uint64();
  double price = 0;
  EXPECT_FALSE(model.level_price("XBTUSD", 0, id, price));
  EXPECT_FALSE(model.level_price("XBTUSD", 1, id, price));
  EXPECT_EQ(c.read().value_or(""), want.deltas.at(1));
}

TEST_F(SimTest, FaultsApplyOnlyToTheFirstConnections) {
  Sim sim({"--close-after", "2", "--exit-after-connections", "2"});
  const Topic want = recorded_topic("orderBookL2", "XBTUSD");
  {
    WsClient c;
    ASSERT_FALSE(c.connect(sim.port()));
    subscribe(c, "orderBookL2:XBTUSD");
    EXPECT_TRUE(c.read().value_or("") == want.partial) << "the recorded partial";
    EXPECT_EQ(c.read().value_or(""), want.deltas[0]);
    beast::error_code ec;
    EXPECT_FALSE(c.read(&ec));
  }
  WsClient c;
  ASSERT_FALSE(c.connect(sim.port()));
  subscribe(c, "orderBookL2:XBTUSD");
  EXPECT_TRUE(c.read().value_or("") == want.partial) << "the recording restarts";
  for (size_t i = 0; i < 3; ++i)
    EXPECT_EQ(c.read().value_or(""), want.deltas[i]);
}

// A book subscribed again gets a partial of the state at that point, and the deltas that follow
// fit it: compared with the test's reference model over the recording's partial and deltas up to
// the first delta sent after the new partial.
TEST_F(SimTest, ResubscribedBookGetsAPartialOfTheCurrentState) {
  Sim sim({"--pace", "recorded"});
  WsClient c;
  ASSERT_FALSE(c.connect(sim.port()));
  subscribe(c, "orderBookL2:XBTUSD");
  const Topic want = recorded_topic("orderBookL2", "XBTUSD");
  ASSERT_TRUE(c.read().value_or("") == want.partial) << "the recorded partial";
  for (size_t i = 0; i < 5; ++i)
    ASSERT_EQ(c.read().value_or(""), want.deltas[i]);
  ASSERT_FALSE(c.write(R"({"op":"unsubscribe","args":["orderBookL2:XBTUSD"]})"));
  size_t next = 5;  // deltas sent before the unsubscribe was read
  for (;;) {
    const auto f = c.read();
    ASSERT_TRUE(f);
    if (field(*f, "unsubscribe") == "orderBookL2:XBTUSD") break;
    ASSERT_EQ(*f, want.deltas.at(next++));
  }
  ASSERT_FALSE(c.write(R"({"op":"subscribe","args":["orderBookL2:XBTUSD"]})"));
  ASSERT_EQ(field(c.read().value_or(""), "subscribe"), "orderBookL2:XBTUSD");
  const auto partial = c.read();
  ASSERT_TRUE(partial);
  ASSERT_EQ(field(*partial, "action"), "partial");
  ASSERT_EQ(field(*partial, "keys"), R"(["symbol","id","side"])");
  ASSERT_EQ(field(*partial, "filter"), R"({"symbol":"XBTUSD"})");
  // The first delta after it says where the recording stood (none: it had ended).
  size_t upto = want.deltas.size();
  beast::error_code ec;
  if (const auto d = c.read(&ec, 40s)) {
    upto = next;
    while (upto < want.deltas.size() && want.deltas[upto] != *d)
      ++upto;
    ASSERT_LT(upto, want.deltas.size()) << "a recorded delta";
  }
  bmxtest::ReferenceModel expected, got;
  expected.apply(want.partial);
  for (size_t i = 0; i < upto; ++i)
    expected.apply(want.deltas[i]);
  got.apply(*partial);
  ASSERT_TRUE(expected.problems.empty());
  ASSERT_TRUE(got.problems.empty()) << got.problems.front();
  const auto& e = expected.books.at("XBTUSD");
  const auto& g = got.books.at("XBTUSD");
  EXPECT_GT(upto, 5u);
  EXPECT_EQ(g.levels.size(), e.levels.size());
  EXPECT_EQ(g.bids(), e.bids());
  EXPECT_EQ(g.asks(), e.asks());
}

TEST_F(SimTest, ServesWssVerifiedAgainstTheTestCa) {
  const auto pki = bmxtest::make_test_pki(dir);
  Sim sim({"--tls-cert", pki.server_cert, "--tls-key", pki.server_key});
  ASSERT_NE(sim.child().output().find("listening on wss://127.0.0.1:"), std::string::npos);
  ssl::context ctx(ssl::context::tls_client);
  ctx.load_verify_file(pki.ca_cert);
  Client<true> c(&ctx);
  ASSERT_FALSE(c.connect(sim.port(), {}, "localhost"));
  subscribe(c, "quote:XBTUSD");
  EXPECT_TRUE(c.read().value_or("") == recorded_topic("quote", "XBTUSD").partial);
}

TEST_F(SimTest, WssVerificationFailsForTheWrongHostName) {
  const auto pki = bmxtest::make_test_pki(dir);
  Sim sim({"--tls-cert", pki.server_cert, "--tls-key", pki.server_key});
  ssl::context ctx(ssl::context::tls_client);
  ctx.load_verify_file(pki.ca_cert);
  Client<true> c(&ctx);
  const beast::error_code ec = c.connect(sim.port(), {}, "not-the-server.example");
  ASSERT_TRUE(ec);
  EXPECT_EQ(ec.category(), asio::error::get_ssl_category()) << ec.message();
}

}  // namespace
