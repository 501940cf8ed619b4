// The BitMEX realtime protocol as bitmex-sim speaks it: the frames it writes itself (welcome, acks,
// errors, cancelAllAfter replies, book partials from current state), the client requests it reads,
// and the handshake's API-key check. No sockets here: everything is text in, text out, so that the
// server (server.cpp) stays about I/O.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bmx {
class FeedEngine;
}

namespace bmx::sim {

// "2021-04-05T18:41:13.652Z".
std::string iso_time(std::chrono::system_clock::time_point t);

std::string welcome_frame(std::chrono::system_clock::time_point now);

// A client's text frame, read as a request.
struct Request {
  enum class Kind : uint8_t { kPing, kOp, kInvalid };
  Kind kind = Kind::kInvalid;
  std::string op;
  std::vector<std::string> topics;  // string args (subscribe, unsubscribe)
  std::optional<int64_t> integer;   // an integer `args` (cancelAllAfter)
  std::string raw;                  // the request as received: echoed in replies
};
Request parse_request(std::string_view text);

std::string subscribe_ack(std::string_view topic, std::string_view raw_request);
std::string unsubscribe_ack(std::string_view topic, std::string_view raw_request);
// {"status":S,"error":"MESSAGE","meta":{},"request":RAW} (RAW `{}` when it was not JSON).
std::string error_frame(int status, std::string_view message, std::string_view raw_request);
// {"now":"..","cancelTime":".."}; cancelTime "0" disarms.
std::string cancel_all_after_reply(std::chrono::system_clock::time_point now, int64_t ms);

// The body of a refused handshake: {"error":{"message":"..","name":".."}}.
std::string http_error_body(std::string_view message, std::string_view name);

// Lowercase hex HMAC-SHA256(secret, message).
std::string hmac_sha256_hex(std::string_view secret, std::string_view message);

// Checks the handshake's api-key, api-expires and api-signature headers against the configured
// key and secret. nullopt when accepted, else why not (for the 401 body).
std::optional<std::string> check_auth(std::string_view key, std::string_view secret,
                                      std::string_view hdr_key, std::string_view hdr_expires,
                                      std::string_view hdr_signature, int64_t now_s);

// A partial of `symbol`'s book in `table` as the engine holds it now, in BitMEX's layout (asks
// from the worst price down, then bids from the best down). Empty when the engine has no usable
// book (no partial yet, or stale).
std::string book_partial(const FeedEngine& engine, std::string_view table, std::string_view symbol);

// A partial of `symbol`'s row in the keyless table `table` (trade, quote, ...) as the engine
// holds it now: the table's latest row for that symbol (none when it has none). Empty when the
// engine has no partial of that table, the table has keys, or its partial did not cover `symbol`.
std::string keyless_partial(const FeedEngine& engine, std::string_view table,
                            std::string_view symbol);

// `frame` with only the rows whose symbol `keep` accepts (other fields as recorded, minified);
// empty when no row is kept or the frame does not parse.
std::string filter_rows(std::string_view frame, const std::function<bool(std::string_view)>& keep);

// One orderBookL2 update for level `id`, which the book does not hold.
std::string unknown_level_update(std::string_view table, std::string_view symbol, uint64_t id);

}  // namespace bmx::sim
