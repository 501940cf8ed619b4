// The live side of the engine: one websocket connection to BitMEX (or any compatible URL), kept
// healthy for days, feeding every frame to a FeedEngine that publishes into the segment.
//
// Everything runs on the thread that runs the io_context (the network thread, pinned by the
// caller): connect, TLS, handshake, subscribe, the read loop, the BitMEX text heartbeat, the dead
// man's switch and reconnects. A frame goes from Beast's buffer to FeedEngine::on_frame where it
// lies (the buffer is reserved once with simdjson's padding after it): no copy, no allocation per
// frame. Events the engine reports leave the thread through a lock-free queue to a housekeeping
// thread that logs them.
//
// Connection life cycle:
//   connect (TCP, then TLS with SNI and peer + host-name verification) -> websocket handshake
//   (auth headers with a fresh expiry when a key is set) -> one subscribe request for every topic
//   -> acks checked, partials build the state -> deltas. Any loss (dead link, close frame, reset,
//   handshake 5xx or 429) -> every book marked stale in the segment, link state kReconnecting ->
//   capped exponential backoff with jitter -> the same again. A rejected key (401/403) is fatal.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace boost::asio {
class io_context;
}

namespace bmx {

class FeedEngine;
namespace shm {
class Writer;
}

struct Url {
  bool tls = true;
  std::string host;
  std::string port;    // "443" / "80" when absent
  std::string target;  // "/realtime" when absent
  // Parses ws://host[:port][/target] and wss://...; throws std::invalid_argument with a sentence.
  static Url parse(const std::string& text);
  [[nodiscard]] std::string str() const;
};

struct FeedOptions {
  Url url;
  std::vector<std::string> topics;  // e.g. orderBookL2:XBTUSD, trade:XBTUSD, instrument
  std::string ca_file;              // empty: the system's trust store
  std::string api_key;              // empty: no authentication
  std::string api_secret;           // never logged, never in argv
  bool dead_mans_switch = false;
  int64_t dms_timeout_ms = 60000;   // cancelAllAfter args
  int64_t dms_interval_ms = 15000;  // how often it is re-armed
  int64_t ping_after_ms = 5000;     // silence before we send "ping"
  int64_t dead_after_ms = 5000;     // then silence before the link is declared dead
  int64_t connect_timeout_ms = 10000;
  int64_t backoff_min_ms = 500;
  int64_t backoff_max_ms = 30000;
  int64_t repair_every_ms = 1000;  // at most one resubscribe of a topic this often
  int max_connections = 0;         // 0: reconnect forever; N: give up after N connections
  uint32_t max_frame_bytes = 16u << 20;
  bool spin = false;  // busy-poll the io_context instead of blocking
  // Called on the network thread for every received text frame with its receive time (the
  // recorder). Must not block.
  std::function<void(const char*, size_t, int64_t)> on_raw_frame;
  // Test builds only: the process's heap allocation count (a counting operator new). When set,
  // every delta frame's window, from starting the read to having applied it, is checked for
  // allocations (ClientStats::delta_allocs).
  uint64_t (*allocation_count)() noexcept = nullptr;
};

// Counters of the connection side (the engine keeps its own). Written by the network thread.
struct ClientStats {
  std::atomic<uint64_t> connects{0};      // TCP connections attempted
  std::atomic<uint64_t> sessions{0};      // handshakes that succeeded
  std::atomic<uint64_t> reconnects{0};    // sessions after the first
  std::atomic<uint64_t> refused{0};       // handshakes answered with an HTTP error
  std::atomic<uint64_t> dead_links{0};    // no data and no pong in time
  std::atomic<uint64_t> pings{0};         // "ping" sent
  std::atomic<uint64_t> dms_sent{0};      // cancelAllAfter sent
  std::atomic<uint64_t> dms_replies{0};   // cancelAllAfter replies
  std::atomic<uint64_t> topic_errors{0};  // subscribe errors for one topic
  std::atomic<uint64_t> repairs{0};       // stale books repaired by a resubscribe
  std::atomic<uint64_t> oversized{0};     // frames larger than max_frame_bytes (link dropped)
  std::atomic<uint64_t> events_lost{0};   // engine events the log queue had no room for
  std::atomic<uint64_t> delta_frames{0};  // table frames other than partials
  std::atomic<uint64_t> delta_allocs{0};  // allocations while reading and applying them
};

class FeedClient {
 public:
  // `writer` may be null (no segment). The engine must outlive the client.
  FeedClient(boost::asio::io_context& ioc, FeedEngine& engine, shm::Writer* writer,
             FeedOptions options);
  ~FeedClient();
  FeedClient(const FeedClient&) = delete;
  FeedClient& operator=(const FeedClient&) = delete;

  // Starts the connection loop on the io_context. Returns at once.
  void start();
  // Asks for a clean shutdown: disarm the switch (cancelAllAfter 0, reply awaited briefly), close
  // the websocket properly, mark the segment stopped. Safe from a signal handler's asio
  // signal_set callback (network thread).
  void stop();
  // Runs the io_context on this thread until the client is done (busy-polls with spin).
  void run();

  // 0 after a clean stop; 1 when the exchange refused the key or every topic, or
  // max_connections ran out.
  [[nodiscard]] int exit_code() const noexcept;
  [[nodiscard]] const ClientStats& stats() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// hex(HMAC-SHA256(secret, verb + path + expires)): BitMEX's API signature.
std::string bitmex_signature(const std::string& secret, const std::string& verb_and_path,
                             int64_t expires);

}  // namespace bmx
