#include "tools/sim/protocol.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <charconv>
#include <ctime>

#include <fmt/core.h>
#include <simdjson.h>

#include "engine/feed_engine.hpp"
#include "shm/json_out.hpp"

namespace bmx::sim {

namespace {

std::string quoted(std::string_view s) {
  std::string out = "\"";
  json_out::append_escaped(s, out);
  out += '"';
  return out;
}

}  // namespace

std::string iso_time(std::chrono::system_clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch());
  const std::time_t secs = static_cast<std::time_t>(ms.count() / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms.count() % 1000);
}

std::string welcome_frame(std::chrono::system_clock::time_point now) {
  return R"({"info":"Welcome to the BitMEX Realtime API.","version":"bitmex-sim","timestamp":")" +
         iso_time(now) + R"(","docs":"https://www.bitmex.com/app/wsAPI","limit":{"remaining":39}})";
}

Request parse_request(std::string_view text) {
  Request r;
  if (text == "ping") {
    r.kind = Request::Kind::kPing;
    return r;
  }
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  simdjson::dom::object obj;
  std::string_view op;
  if (parser.parse(text.data(), text.size()).get(doc) || doc.get_object().get(obj)) return r;
  r.raw = simdjson::minify(doc);
  if (obj["op"].get_string().get(op)) return r;
  r.kind = Request::Kind::kOp;
  r.op = op;
  simdjson::dom::element args;
  if (obj["args"].get(args)) return r;
  int64_t n = 0;
  std::string_view s;
  simdjson::dom::array arr;
  if (args.is_int64() && !args.get_int64().get(n)) {
    r.integer = n;
  } else if (!args.get_string().get(s)) {
    r.topics.emplace_back(s);
  } else if (!args.get_array().get(arr)) {
    for (simdjson::dom::element a : arr)
      if (!a.get_string().get(s)) r.topics.emplace_back(s);
  }
  return r;
}

std::string subscribe_ack(std::string_view topic, std::string_view raw_request) {
  return R"({"success":true,"subscribe":)" + quoted(topic) + R"(,"request":)" +
         std::string(raw_request) + "}";
}

std::string unsubscribe_ack(std::string_view topic, std::string_view raw_request) {
  return R"({"success":true,"unsubscribe":)" + quoted(topic) + R"(,"request":)" +
         std::string(raw_request) + "}";
}

std::string error_frame(int status, std::string_view message, std::string_view raw_request) {
  return fmt::format(R"({{"status":{},"error":{},"meta":{{}},"request":{}}})", status,
                     quoted(message), raw_request.empty() ? "{}" : raw_request);
}

std::string cancel_all_after_reply(std::chrono::system_clock::time_point now, int64_t ms) {
  const std::string cancel = ms == 0 ? "0" : iso_time(now + std::chrono::milliseconds(ms));
  return R"({"now":")" + iso_time(now) + R"(","cancelTime":")" + cancel + "\"}";
}

std::string http_error_body(std::string_view message, std::string_view name) {
  return R"({"error":{"message":)" + quoted(message) + R"(,"name":)" + quoted(name) + "}}";
}

std::string hmac_sha256_hex(std::string_view secret, std::string_view message) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  ::HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &len);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[mac[i] >> 4]);
    out.push_back(kHex[mac[i] & 0xF]);
  }
  return out;
}

std::optional<std::string> check_auth(std::string_view key, std::string_view secret,
                                      std::string_view hdr_key, std::string_view hdr_expires,
                                      std::string_view hdr_signature, int64_t now_s) {
  if (hdr_key.empty() || hdr_expires.empty() || hdr_signature.empty())
    return "Missing api-key, api-expires or api-signature header.";
  if (hdr_key != key) return "Invalid API Key.";
  int64_t expires = 0;
  const auto [end, ec] =
      std::from_chars(hdr_expires.data(), hdr_expires.data() + hdr_expires.size(), expires);
  if (ec != std::errc{} || end != hdr_expires.data() + hdr_expires.size())
    return "api-expires must be unix seconds.";
  if (expires <= now_s) return "This request has expired - `expires` is in the past.";
  if (expires > now_s + 3600) return "api-expires is more than one hour in the future.";
  const std::string want = hmac_sha256_hex(secret, "GET/realtime" + std::string(hdr_expires));
  if (hdr_signature.size() != want.size() ||
      CRYPTO_memcmp(hdr_signature.data(), want.data(), want.size()) != 0)
    return "Signature not valid.";
  return std::nullopt;
}

std::string book_partial(const FeedEngine& engine, std::string_view table,
                         std::string_view symbol) {
  const FeedEngine::BookEntry* b = engine.book(symbol, table);
  if (b == nullptr || !b->has_partial || b->stale) return {};
  const std::string sym = quoted(symbol);
  std::string out = R"({"table":)" + quoted(table) +
                    R"(,"action":"partial","keys":["symbol","id","side"],)"
                    R"("types":{"symbol":"symbol","id":"long","side":"symbol","size":"long",)"
                    R"("price":"float"},"foreignKeys":{"symbol":"instrument","side":"side"},)"
                    R"("attributes":{"symbol":"parted","id":"sorted"},"filter":{"symbol":)" +
                    sym + R"(},"data":[)";
  bool first = true;
  const auto row = [&](Side side, const BookLevel& l) {
    if (!first) out += ',';
    first = false;
    out += R"({"symbol":)" + sym + R"(,"id":)";
    json_out::append_int(out, static_cast<int64_t>(l.id));
    out += side == Side::kBuy ? R"(,"side":"Buy","size":)" : R"(,"side":"Sell","size":)";
    json_out::append_int(out, l.size);
    out += R"(,"price":)";
    json_out::append_double(out, l.price);
    out += '}';
  };
  const OrderBook& book = b->book;
  for (uint32_t i = book.depth(Side::kSell); i-- > 0;)
    row(Side::kSell, book.level(Side::kSell, i));
  for (uint32_t i = 0; i < book.depth(Side::kBuy); ++i)
    row(Side::kBuy, book.level(Side::kBuy, i));
  out += "]}";
  return out;
}

std::string keyless_partial(const FeedEngine& engine, std::string_view table,
                            std::string_view symbol) {
  const uint16_t t = engine.find_table(table);
  if (t == Event::kNoTable) return {};
  const FeedEngine::TableEntry& e = engine.tables()[t];
  if (e.is_book || !e.generic || !e.generic->has_partial() || !e.generic->keyless()) return {};
  const uint32_t s = engine.symbols().find(symbol);
  if (s == Interner::kNone || !e.generic->covers(s)) return {};
  const std::string sym = quoted(symbol);
  std::string out = R"({"table":)" + quoted(table) +
                    R"(,"action":"partial","keys":[],"types":{},"foreignKeys":{},)"
                    R"("attributes":{},"filter":{"symbol":)" +
                    sym + R"(},"data":[)";
  const uint32_t field = e.generic->symbol_field();
  bool first = true;
  e.generic->for_each([&](std::string_view, const GenericTable::Row& row) {
    if (row.value(field) != sym) return;
    if (!first) out += ',';
    first = false;
    e.generic->append_json(row, out);
  });
  return out + "]}";
}

std::string filter_rows(std::string_view frame, const std::function<bool(std::string_view)>& keep) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  simdjson::dom::object obj;
  if (parser.parse(frame.data(), frame.size()).get(doc) || doc.get_object().get(obj)) return {};
  std::string out = "{";
  size_t kept = 0;
  for (const auto field : obj) {
    if (out.size() > 1) out += ',';
    out += quoted(field.key) + ':';
    simdjson::dom::array data;
    if (field.key != "data" || field.value.get_array().get(data)) {
      out += simdjson::minify(field.value);
      continue;
    }
    out += '[';
    for (simdjson::dom::element row : data) {
      std::string_view sym;
      if (row["symbol"].get_string().get(sym)) sym = {};
      if (!keep(sym)) continue;
      if (kept++ > 0) out += ',';
      out += simdjson::minify(row);
    }
    out += ']';
  }
  out += '}';
  return kept == 0 ? std::string{} : out;
}

std::string unknown_level_update(std::string_view table, std::string_view symbol, uint64_t id) {
  return fmt::format(
      R"({{"table":{},"action":"update","data":[{{"symbol":{},"id":{},"side":"Buy","size":1}}]}})",
      quoted(table), quoted(symbol), id);
}

}  // namespace bmx::sim
