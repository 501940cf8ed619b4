// bitmex-feed: the live feed. Holds the websocket to BitMEX (or a compatible URL), keeps every
// subscribed table and book, and publishes them into a shared-memory segment. See --help.
#include <fcntl.h>
#include <fmt/core.h>
#include <pthread.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <concurrentqueue/concurrentqueue.h>
#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/feed_client.hpp"
#include "engine/feed_engine.hpp"
#include "engine/state_dump.hpp"
#include "shm/json_out.hpp"
#include "shm/segment.hpp"
#include "shm/writer.hpp"
// Defined only where a counting operator new is linked in (bitmex-feed-counting, for tests):
// then the feed reports the allocations of its frame path. Null in bitmex-feed.
namespace bmx::testing {
[[gnu::weak]] uint64_t allocation_count() noexcept;
}  // namespace bmx::testing

namespace {

std::vector<std::string> split_topics(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string t;
  while (std::getline(in, t, ',')) {
    while (!t.empty() && t.front() == ' ')
      t.erase(t.begin());
    while (!t.empty() && t.back() == ' ')
      t.pop_back();
    if (!t.empty()) out.push_back(t);
  }
  return out;
}

// The secret file must be the user's alone: group or world access is refused, as ssh does.
std::string read_secret_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw std::runtime_error("cannot read the API secret file " + path);
  }
  if (st.st_mode & (S_IRWXG | S_IRWXO)) {
    throw std::runtime_error("the API secret file " + path +
                             " is readable by others (chmod 600 it)");
  }
  std::ifstream in(path, std::ios::binary);
  std::string secret((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r'))
    secret.pop_back();
  if (secret.empty()) throw std::runtime_error("the API secret file " + path + " is empty");
  return secret;
}

// --record: frames leave the network thread through a lock-free queue in buffers taken from a
// pool filled at start (no allocation per frame unless a frame outgrows its buffer, e.g. a large
// partial); a recorder thread writes them in bitmex-replay's format "<receive ns>\t<frame>\n".
class Recorder {
 public:
  explicit Recorder(const std::string& path)
      : out_((bmx::json_out::create_private_file(path), path), std::ios::binary) {
    if (!out_) throw std::runtime_error("cannot write the recording " + path);
    pool_.resize(kBuffers);
    for (auto& b : pool_) {
      b.text.reserve(kBufferBytes);
      free_.enqueue(&b);
    }
    thread_ = std::thread([this] { loop(); });
  }
  ~Recorder() {
    stop_.store(true);
    thread_.join();
  }
  // Network thread. Never blocks: with no free buffer the frame is not recorded (counted).
  void push(const char* data, size_t len, int64_t recv_ns) {
    Buffer* b = nullptr;
    if (!free_.try_dequeue(b)) {
      ++dropped_;
      return;
    }
    b->recv_ns = recv_ns;
    b->text.assign(data, len);
    full_.enqueue(b);
  }
  [[nodiscard]] uint64_t dropped() const { return dropped_.load(); }

 private:
  static constexpr size_t kBuffers = 4096, kBufferBytes = size_t{16} * 1024;
  struct Buffer {
    int64_t recv_ns = 0;
    std::string text;
  };
  void loop() {
    Buffer* b = nullptr;
    for (;;) {
      if (full_.try_dequeue(b)) {
        out_ << b->recv_ns << '\t';
        out_.write(b->text.data(), static_cast<std::streamsize>(b->text.size()));
        out_ << '\n';
        if (b->text.capacity() > 4 * kBufferBytes) b->text = std::string();  // a big partial
        if (b->text.capacity() < kBufferBytes) b->text.reserve(kBufferBytes);
        free_.enqueue(b);
        continue;
      }
      if (stop_.load()) break;
      out_.flush();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // idle
    }
    out_.flush();
  }
  std::ofstream out_;
  std::vector<Buffer> pool_;
  moodycamel::ConcurrentQueue<Buffer*> free_{kBuffers};
  moodycamel::ConcurrentQueue<Buffer*> full_{kBuffers};
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> dropped_{0};
  std::thread thread_;
};

int run(int argc, char** argv) {
  CLI::App app{
      "bitmex-feed: the live BitMEX feed. Connects to the exchange's realtime websocket (TLS with\n"
      "peer and host-name verification), subscribes, keeps every table and order book, and\n"
      "publishes them into a shared-memory segment that strategies and bitmex-top read.\n"
      "Reconnects on any loss with capped exponential backoff, rebuilding every book from fresh\n"
      "partials; books are marked stale in the segment meanwhile.\n\n"
      "Authentication: the key comes from BITMEX_API_KEY, the secret from BITMEX_API_SECRET or\n"
      "--api-secret-file (never from the command line, never logged)."};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // last wins
  std::string network = "testnet", url, topics = "orderBookL2:XBTUSD,trade:XBTUSD,quote:XBTUSD";
  std::string shm_name, shm_mode = "0600", record_path, dump_path, secret_file;
  int cpu = -1;
  bmx::FeedOptions o;
  bmx::EngineConfig config;
  bmx::shm::SegmentConfig seg_config;
  app.add_option("--network", network, "mainnet or testnet (ignored with --url)")
      ->check(CLI::IsMember({"mainnet", "testnet"}))
      ->capture_default_str();
  app.add_option("--url", url, "Any ws:// or wss:// URL instead (e.g. a local bitmex-sim)");
  app.add_option("--subscribe", topics,
                 "Comma-separated topics: table or table:SYMBOL (orderBookL2:XBTUSD, trade, "
                 "instrument, order, position, ...)")
      ->capture_default_str();
  app.add_option("--shm", shm_name,
                 "Shared-memory segment to publish into (default /bitmex-NETWORK; 'none' for no "
                 "segment)");
  app.add_option("--shm-mode", shm_mode, "Permissions of the segment (octal)")
      ->capture_default_str();
  app.add_option("--ring-slots", seg_config.ring_slots, "Delta ring size in 64-byte records")
      ->capture_default_str();
  app.add_option("--book-levels", seg_config.book_levels,
                 "Levels per side each segment book is sized for (room for twice as many, both "
                 "sides together)")
      ->capture_default_str();
  app.add_option("--max-books", seg_config.max_books, "Books the segment holds")
      ->capture_default_str();
  app.add_option("--row-slots", seg_config.row_slots, "Rows of keyed tables the segment holds")
      ->capture_default_str();
  app.add_option("--cpu", cpu, "Pin the network thread to this core");
  app.add_flag("--spin", o.spin,
               "Busy-poll the socket instead of blocking (lowest latency, one "
               "core at 100%)");
  app.add_option("--record", record_path,
                 "Also write every received frame to FILE, in bitmex-replay's format");
  app.add_option("--dump-state", dump_path,
                 "At exit, write the books and tables as JSON to FILE (bitmex-replay's schema)");
  app.add_option("--ca-file", o.ca_file,
                 "PEM file of the certificate authorities to trust (default: the system's)");
  app.add_option("--api-secret-file", secret_file,
                 "File holding the API secret (must not be group/world readable)");
  // Not an option: anything on the command line is readable by every user (/proc/PID/cmdline,
  // ps) and lands in shell history. Recognised only to say so, instead of "unexpected argument".
  std::string secret_in_argv;
  auto* secret_option = app.add_option("--api-secret,--secret", secret_in_argv)->group("");
  app.add_flag("--dead-mans-switch", o.dead_mans_switch,
               "Arm cancelAllAfter while connected (needs a key); disarmed on a clean exit");
  app.add_option("--dms-timeout-ms", o.dms_timeout_ms, "cancelAllAfter timeout")
      ->capture_default_str();
  app.add_option("--dms-interval-ms", o.dms_interval_ms, "How often the switch is re-armed")
      ->capture_default_str();
  app.add_option("--ping-after-ms", o.ping_after_ms, "Silence before sending 'ping'")
      ->capture_default_str();
  app.add_option("--dead-after-ms", o.dead_after_ms,
                 "Silence after 'ping' before the link is declared dead")
      ->capture_default_str();
  app.add_option("--backoff-min-ms", o.backoff_min_ms, "First reconnect delay")
      ->capture_default_str();
  app.add_option("--backoff-max-ms", o.backoff_max_ms, "Largest reconnect delay")
      ->capture_default_str();
  app.add_option("--repair-every-ms", o.repair_every_ms,
                 "Resubscribe a stale book's topic at most this often (0: at every staleness)")
      ->capture_default_str();
  app.add_option("--max-connections", o.max_connections,
                 "Give up (exit 1) after this many connections (0: never)")
      ->capture_default_str();
  app.add_option("--max-frame", config.max_frame_bytes,
                 "Largest frame accepted, in bytes (a larger one drops the link)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    if (secret_option->count() > 0) {
      throw std::runtime_error(
          "the API secret is never taken from the command line (every user can read it there): "
          "set BITMEX_API_SECRET or use --api-secret-file");
    }
    o.url = bmx::Url::parse(!url.empty()           ? url
                            : network == "mainnet" ? "wss://ws.bitmex.com/realtime"
                                                   : "wss://ws.testnet.bitmex.com/realtime");
    o.topics = split_topics(topics);
    if (o.topics.empty()) throw std::runtime_error("--subscribe names no topic");
    o.max_frame_bytes = config.max_frame_bytes;
    if (const char* k = std::getenv("BITMEX_API_KEY")) o.api_key = k;
    if (!secret_file.empty()) {
      o.api_secret = read_secret_file(secret_file);
    } else if (char* s = std::getenv("BITMEX_API_SECRET")) {
      o.api_secret = s;
      // Scrubbed from the environment block (what /proc/PID/environ shows) and from the
      // environment that a child would inherit: the copy above is the only one left.
      std::fill(s, s + std::strlen(s), '\0');
      ::unsetenv("BITMEX_API_SECRET");
    }
    if (!o.api_key.empty() && o.api_secret.empty()) {
      throw std::runtime_error(
          "BITMEX_API_KEY is set but no secret: set BITMEX_API_SECRET or --api-secret-file");
    }
    if (o.dead_mans_switch && o.api_key.empty()) {
      throw std::runtime_error("--dead-mans-switch needs an API key (BITMEX_API_KEY)");
    }
    if (shm_name.empty()) shm_name = "/bitmex-" + (url.empty() ? network : std::string("feed"));

    bmx::FeedEngine engine(config);
    std::optional<bmx::shm::Segment> segment;
    std::optional<bmx::shm::Writer> writer;
    if (shm_name != "none") {
      seg_config.max_symbols = std::max(seg_config.max_symbols, config.max_symbols);
      seg_config.max_tables = std::max(seg_config.max_tables, config.max_tables);
      segment.emplace(bmx::shm::Segment::create(
          shm_name, seg_config, static_cast<unsigned>(std::stoul(shm_mode, nullptr, 8))));
      writer.emplace(*segment);
      engine.publish_to(&*writer);
      writer->set_link(bmx::shm::LinkState::kStarting);
    }
    std::optional<Recorder> recorder;
    if (!record_path.empty()) {
      recorder.emplace(record_path);
      o.on_raw_frame = [&recorder](const char* d, size_t n, int64_t t) { recorder->push(d, n, t); };
    }
    o.allocation_count = &bmx::testing::allocation_count;  // null unless linked in
    fmt::print(stderr, "bitmex-feed: {} -> {} ({})\n", o.url.str(),
               shm_name == "none" ? std::string("no segment") : shm_name, topics);

    boost::asio::io_context ioc(1);
    bmx::FeedClient client(ioc, engine, writer ? &*writer : nullptr, o);
    boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& ec, int) {
      if (!ec) client.stop();
    });
    if (cpu >= 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(cpu, &set);
      if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0) {
        fmt::print(stderr, "bitmex-feed: cannot pin to core {}\n", cpu);
      }
    }
    client.start();
    client.run();
    signals.cancel();

    const auto& s = client.stats();
    const auto& es = engine.stats();
    uint64_t frames = 0;
    for (const uint64_t f : es.frames)
      frames += f;
    fmt::print(stderr,
               "bitmex-feed: {} frames; {} sessions, {} reconnects, {} refused handshakes, {} "
               "dead links, {} repairs, {} oversized frames, {} malformed frames, {} unknown "
               "levels\n",
               frames, s.sessions.load(), s.reconnects.load(), s.refused.load(),
               s.dead_links.load(), s.repairs.load(), s.oversized.load(),
               es.frames[static_cast<size_t>(bmx::FrameKind::kMalformed)], es.unknown_levels);
    if (o.allocation_count) {
      fmt::print(stderr, "bitmex-feed: {} allocations while reading and applying {} delta frames\n",
                 s.delta_allocs.load(), s.delta_frames.load());
    }
    if (recorder && recorder->dropped()) {
      fmt::print(stderr, "bitmex-feed: {} frames not recorded (recorder fell behind)\n",
                 recorder->dropped());
    }
    if (!dump_path.empty()) {
      bmx::json_out::create_private_file(dump_path);
      std::ofstream out(dump_path, std::ios::binary);
      const std::string json = bmx::dump_state(engine);
      if (!out || !out.write(json.data(), static_cast<std::streamsize>(json.size()))) {
        fmt::print(stderr, "bitmex-feed: cannot write {}\n", dump_path);
        return 1;
      }
    }
    if (segment) bmx::shm::Segment::remove(shm_name);
    return client.exit_code();
  } catch (const std::exception& e) {
    fmt::print(stderr, "bitmex-feed: {}\n", e.what());
    return 1;
  }
}

}  // namespace

// Nothing escapes main: an error that even the handlers inside run() could not report is one line.
int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bitmex-feed: %s\n", e.what());
  } catch (...) {
    std::fputs("bitmex-feed: unknown error\n", stderr);
  }
  return 1;
}
