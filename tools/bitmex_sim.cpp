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

int run(int argc, char** argv) {
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
      "Connections are numbered from 1 in accept order, refused handshakes included.\n\n"
      "Chaos mode (--chaos SEED): one session across connections. Each new connection resumes\n"
      "the recording where the previous one stopped (its partials are the recording's state at\n"
      "that point, trade and quote included, as BitMEX serves current state on reconnect), and\n"
      "random faults are injected until --chaos-faults of them were: inside a connection, after\n"
      "1..--chaos-max-gap table frames, one of close, reset, silent, oversized (a frame of\n"
      "--oversized-bytes), malformed (a truncated frame), unknown-level (an update of a level a\n"
      "book the client holds whole lacks); the first four end the link, and after the other two\n"
      "the next fault is drawn. A reset waits until the client has read everything (a websocket\n"
      "ping answered), so that every earlier fault reached it. The first handshake after a\n"
      "connection meets, with --chaos-storm-percent chance, a refusal storm: 429 or 503 for\n"
      "1..--chaos-max-refusals handshakes (one fault, refuse429 or refuse503). Then the rest of\n"
      "the recording is served cleanly. The schedule is a function of SEED (splitmix64); where\n"
      "faults land in the recording also depends on when the client subscribes.\n"
      "Lines on stdout for tests (POS: the recording's state after its first POS table frames):\n"
      "  partial TABLE[:SYMBOL] position POS connection C   every partial written\n"
      "  fault N KIND connection C position POS [book TABLE:SYMBOL level ID | bytes B |\n"
      "        refusals R]                                   each fault injected\n"
      "  chaos summary faults N close A reset B silent C oversized D malformed E unknown-level F\n"
      "        refuse429 G refuse503 H refused-handshakes R connections W\n"
      "                                                      when the recording ends (before\n"
      "                                                      'served'); fewer faults than asked\n"
      "                                                      when the recording ran out first"};
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
  app.add_option("--pong-delay-ms", o.pong_delay_ms,
                 "Answer each 'ping' with 'pong' this many ms later, other frames going on "
                 "meanwhile (a link with a long round trip)")
      ->capture_default_str();
  app.add_flag("--loop", o.loop,
               "Serve the recording again and again on a connection: at its end, print 'lap N on "
               "connection C' and go on from its first frame (its partials included); 'served' "
               "never comes");
  app.add_option("--chaos", o.chaos_seed,
                 "Chaos mode with this seed: a session that goes on across connections, with "
                 "random faults (see above)");
  app.add_option("--chaos-faults", o.chaos_faults, "Faults to inject in chaos mode")
      ->capture_default_str();
  app.add_option("--chaos-max-gap", o.chaos_max_gap,
                 "Most table frames before each fault in chaos mode")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--chaos-max-refusals", o.chaos_max_refusals,
                 "Most handshakes one refusal storm refuses")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--chaos-storm-percent", o.chaos_storm_percent,
                 "Chance (%) that a reconnection's handshake meets a refusal storm")
      ->check(CLI::Range(0, 100))
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

}  // namespace

// Nothing escapes main: an error that even the handlers inside run() could not report is one line.
int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bitmex-sim: %s\n", e.what());
  } catch (...) {
    std::fputs("bitmex-sim: unknown error\n", stderr);
  }
  return 1;
}
