// bitmex-sim: a local BitMEX realtime exchange for tests. Serves recorded sessions over a Beast
// websocket (ws:// or wss://), answers the protocol's ops, and injects the faults a feed must
// survive. The command line is a contract with the feed's tests: see --help.
#include <cstdio>
#include <exception>
#include <fstream>
#include <sstream>
#include <string>

#include <fmt/core.h>
#include <CLI/CLI.hpp>

#include "tools/sim/recording.hpp"
#include "tools/sim/server.hpp"

namespace {

std::string read_secret(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read --api-secret-file " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r'))
    s.pop_back();
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "bitmex-sim: a local BitMEX realtime exchange that serves recorded sessions.\n\n"
      "Binds, prints one line 'listening on ws://HOST:PORT/realtime' (wss:// with TLS) on stdout,\n"
      "and serves one websocket connection at a time on the target /realtime (query strings\n"
      "allowed; other targets get 404). Each connection gets the welcome frame and then replays\n"
      "the recording from its beginning: 'ping' -> 'pong'; subscribe/unsubscribe to 'table' or\n"
      "'table:SYMBOL' (acks, or a 400 error for a topic the recording lacks); the partial(s) of\n"
      "each subscribed topic, then the recorded deltas of the subscribed tables and symbols, byte\n"
      "for byte, in recorded order (rows of other symbols filtered out). A book subscribed again\n"
      "(or later) gets a partial of the recording's state at that point. cancelAllAfter gets\n"
      "{\"now\",\"cancelTime\"}; any other op a 400 error.\n"
      "When the last recorded frame has been sent on a connection, prints 'served FRAMES frames\n"
      "on connection C' on stdout (FRAMES: every text frame sent on it so far) and keeps the\n"
      "connection open until the client leaves. Connection events are logged on stderr.\n"
      "Connections are numbered from 1 in accept order, refused handshakes included."};
  bmx::sim::Options o;
  std::string pace = "fast";
  std::string secret_file;
  app.add_option("CAPTURE", o.captures,
                 "Recorded session(s) (cryptofeed, bitmex-feed --record or bare JSON lines), "
                 "served one after the other as one session")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--listen", o.listen, "Address to bind")->capture_default_str();
  app.add_option("--port", o.port, "Port to bind (0: any free port, see the first line)")
      ->capture_default_str();
  auto* cert = app.add_option("--tls-cert", o.tls_cert,
                              "Serve wss:// with this PEM certificate chain (needs --tls-key)")
                   ->check(CLI::ExistingFile);
  auto* key = app.add_option("--tls-key", o.tls_key, "PEM private key of --tls-cert")
                  ->check(CLI::ExistingFile);
  cert->needs(key);
  key->needs(cert);
  app.add_option("--pace", pace,
                 "recorded: send frames at the recording's pace (its receive times, from the "
                 "first subscribe); fast: as fast as the socket takes them")
      ->check(CLI::IsMember({"recorded", "fast"}))
      ->capture_default_str();
  auto* api_key = app.add_option("--api-key", o.api_key,
                                 "Require a signed handshake: headers api-key (this KEY), "
                                 "api-expires (unix seconds, in the future, at most 1 h ahead) "
                                 "and api-signature = hex HMAC-SHA256(secret, "
                                 "\"GET/realtime\" + expires); else 401");
  auto* secret = app.add_option("--api-secret-file", secret_file,
                                "File whose content (trailing newline trimmed) is the API secret")
                     ->check(CLI::ExistingFile);
  api_key->needs(secret);
  secret->needs(api_key);
  app.add_option("--fault-connections", o.fault_connections,
                 "The faults below apply to the first K websocket connections (refused "
                 "handshakes not counted)")
      ->capture_default_str();
  app.add_option("--close-after", o.close_after,
                 "After N table frames (partials and deltas) sent, send a websocket close frame");
  app.add_option("--reset-after", o.reset_after,
                 "After N table frames, reset the TCP connection (SO_LINGER 0, close)");
  app.add_option("--silent-after", o.silent_after,
                 "After N table frames, send nothing more (no pong, no control frame) but keep "
                 "the socket open");
  app.add_option("--malformed-after", o.malformed_after,
                 "After N table frames, send one truncated JSON frame, then go on");
  app.add_option("--oversized-after", o.oversized_after,
                 "After N table frames, send one text frame of --oversized-bytes bytes, then go "
                 "on");
  app.add_option("--oversized-bytes", o.oversized_bytes, "Size of the --oversized-after frame")
      ->capture_default_str();
  app.add_option("--unknown-level-after", o.unknown_level_after,
                 "After N table frames, send one book update for a level id that the first "
                 "subscribed book does not hold, then go on");
  auto* refuse = app.add_option("--refuse", o.refuse,
                                "Answer the first N websocket handshakes with --refuse-status")
                     ->capture_default_str();
  app.add_option("--refuse-status", o.refuse_status, "HTTP status of refused handshakes")
      ->check(CLI::IsMember({429u, 503u}))
      ->needs(refuse)
      ->capture_default_str();
  app.add_option("--exit-after-connections", o.exit_after_connections,
                 "Exit 0 once N connections (refused ones included) have ended; 0: serve "
                 "forever")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  o.pace_recorded = pace == "recorded";

  try {
    if (!secret_file.empty()) o.api_secret = read_secret(secret_file);
    const bmx::sim::Recording recording = bmx::sim::Recording::load(o.captures);
    fmt::print(stderr, "bitmex-sim: {} recorded table frames from {} capture(s)\n",
               recording.frames().size(), o.captures.size());
    bmx::sim::serve(o, recording);
  } catch (const std::exception& e) {
    fmt::print(stderr, "bitmex-sim: {}\n", e.what());
    return 1;
  }
  return 0;
}
