// bitmex-sim's websocket server: one io_context thread, one connection at a time, each connection
// replaying the recording from its beginning, or, in chaos mode, resuming it where the previous
// connection stopped (see tools/bitmex_sim.cpp --help for the contract).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tools/sim/recording.hpp"

namespace bmx::sim {

struct Options {
  std::vector<std::string> captures;
  std::string listen = "127.0.0.1";
  uint16_t port = 0;
  std::string tls_cert, tls_key;  // both set: wss://
  bool pace_recorded = false;
  std::string api_key, api_secret;  // api_key set: the handshake must be signed
  // Faults, counted in table frames sent on a connection; only the first `fault_connections`
  // websocket connections get them.
  uint64_t fault_connections = 1;
  std::optional<uint64_t> close_after, reset_after, silent_after, malformed_after, oversized_after,
      unknown_level_after;
  uint64_t oversized_bytes = 33554432;
  uint64_t refuse = 0;
  unsigned refuse_status = 429;
  uint64_t exit_after_connections = 0;  // 0: serve forever
  bool loop = false;           // at the recording's end, start it again (its partials included)
  uint64_t pong_delay_ms = 0;  // each 'pong' this long after its 'ping' (a slow link's round trip)
  // Chaos mode (set: its seed): one session across connections, each resuming the recording where
  // the previous one stopped, with `chaos_faults` random faults (see --help).
  std::optional<uint64_t> chaos_seed;
  uint64_t chaos_faults = 100;
  uint64_t chaos_max_gap = 50;        // table frames before a fault: uniform in [1, max]
  uint64_t chaos_max_refusals = 3;    // handshakes refused by one storm: uniform in [1, max]
  uint64_t chaos_storm_percent = 25;  // chance that a reconnection's handshake meets a storm
};

// Binds, prints the `listening on ...` line, and serves until `exit_after_connections`
// connections have ended (forever when 0). Throws std::exception on set-up failures (bind, TLS
// files).
void serve(const Options& options, const Recording& recording);

}  // namespace bmx::sim
