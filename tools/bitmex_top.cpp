// bitmex-top: a live terminal view of a running bitmex-shm segment. Reads the segment read-only
// (it is a reader like any strategy) and never slows the feed down.
//
//   bitmex-top --shm /bitmex-testnet                      every symbol, refreshed 4x a second
//   bitmex-top --shm /bitmex-testnet --symbol XBTUSD --depth 10   a 10-level ladder
//   bitmex-top --shm /bitmex-testnet --once [--json]      one screen (or JSON) and exit
#include <fmt/core.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <exception>
#include <map>
#include <string>
#include <thread>

#include "shm/json_out.hpp"
#include "shm/reader.hpp"

namespace {

using namespace bmx;

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) {
  g_stop = 1;
}

struct Options {
  std::string shm;
  std::string symbol;
  uint32_t depth = 0;
  double interval = 0.25;
  bool once = false;
  bool json = false;
};

// One symbol's line: the orderBookL2 book when there is one, else orderBookL2_25.
struct Row {
  std::string symbol;
  std::string table;
  uint16_t table_id = 0;
  uint32_t symbol_id = 0;
  shm::Top top;
  bool has_trade = false;
  shm::TradeQuoteBody tq{};
  double rate = -1;  // updates per second since the last screen; < 0: no earlier screen
};

std::string fmt_num(double v) {
  return fmt::format("{:.10g}", v);
}

std::vector<Row> collect(
    const shm::Reader& r,
    std::map<std::pair<uint16_t, uint32_t>, std::pair<uint64_t, int64_t>>& seen) {
  std::map<std::string, Row> by_symbol;
  const int64_t now = shm::monotonic_ns();
  for (const auto& [table, symbol] : r.books()) {
    Row row;
    row.symbol = std::string(r.symbol_name(symbol));
    row.table = std::string(r.table_name(table));
    row.table_id = table;
    row.symbol_id = symbol;
    if (!r.top(table, symbol, row.top)) continue;
    auto& [last_updates, last_ns] = seen[{table, symbol}];
    if (last_ns) {
      row.rate = static_cast<double>(row.top.updates - last_updates) * 1e9 /
                 static_cast<double>(std::max<int64_t>(now - last_ns, 1));
    }
    last_updates = row.top.updates;
    last_ns = now;
    row.has_trade = r.trade_quote(symbol, row.tq) && row.tq.has_trade;
    auto it = by_symbol.find(row.symbol);
    if (it == by_symbol.end() ||
        (it->second.table != "orderBookL2" && row.table == "orderBookL2")) {
      by_symbol[row.symbol] = row;
    }
  }
  std::vector<Row> out;
  out.reserve(by_symbol.size());
  for (auto& [name, row] : by_symbol)
    out.push_back(std::move(row));
  return out;
}

std::string age_of(int64_t recv_ns) {
  if (recv_ns <= 0) return "-";
  const double ms = static_cast<double>(shm::realtime_ns() - recv_ns) / 1e6;
  if (ms < 0) return "0ms";
  if (ms < 10'000) return fmt::format("{:.0f}ms", ms);
  return fmt::format("{:.0f}s", ms / 1000);
}

std::string render_table(const shm::Reader& r, const std::vector<Row>& rows) {
  std::string s = fmt::format("{:<14} {:>10} {:>14} {:>14} {:>10} {:>10} {:>22} {:>8} {:>7} {}\n",
                              "symbol", "bid size", "bid", "ask", "ask size", "spread",
                              "last trade", "upd/s", "age", "state");
  for (const Row& row : rows) {
    const auto& t = row.top;
    std::string trade = "-";
    if (row.has_trade) {
      trade = fmt::format("{} {}@{}", row.tq.trade_side ? "S" : "B", row.tq.trade_size,
                          fmt_num(row.tq.trade_price));
    }
    // One screen (--once) has no earlier one to take a rate from: "-", not a made-up 0.
    const std::string rate = row.rate < 0 ? "-" : fmt::format("{:.1f}", row.rate);
    s += fmt::format("{:<14} {:>10} {:>14} {:>14} {:>10} {:>10} {:>22} {:>8} {:>7} {}\n",
                     row.symbol, t.has_bid ? std::to_string(t.bid.size) : "-",
                     t.has_bid ? fmt_num(t.bid.price) : "-", t.has_ask ? fmt_num(t.ask.price) : "-",
                     t.has_ask ? std::to_string(t.ask.size) : "-",
                     t.has_bid && t.has_ask ? fmt_num(t.ask.price - t.bid.price) : "-", trade, rate,
                     age_of(t.last_recv_ns), t.stale ? "STALE" : "ok");
  }
  (void)r;
  return s;
}

std::string render_ladder(const shm::Reader& r, const Options& o) {
  const auto sym = r.symbol_id(o.symbol);
  if (!sym) return fmt::format("no symbol {} in this segment\n", o.symbol);
  auto table = r.table_id("orderBookL2");
  shm::BookCopy c;
  if (!table || !r.copy_book(*table, *sym, c)) {
    table = r.table_id("orderBookL2_25");
    if (!table || !r.copy_book(*table, *sym, c)) return fmt::format("no book for {}\n", o.symbol);
  }
  std::string s = fmt::format("{} {}{}\n{:>14} {:>16} {:>14}\n", o.symbol, r.table_name(*table),
                              c.stale ? "  STALE" : "", "bid size", "price", "ask size");
  const size_t n = o.depth;
  for (size_t i = std::min(n, c.asks.size()); i-- > 0;)
    s += fmt::format("{:>14} {:>16} {:>14}\n", "", fmt_num(c.asks[i].price), c.asks[i].size);
  s += fmt::format("{:>14} {:>16} {:>14}\n", "", "------", "");
  for (size_t i = 0; i < std::min(n, c.bids.size()); ++i)
    s += fmt::format("{:>14} {:>16} {:>14}\n", c.bids[i].size, fmt_num(c.bids[i].price), "");
  return s;
}

std::string render_footer(const shm::Reader& r) {
  const shm::Stats& st = r.stats();
  static constexpr const char* kLink[] = {"starting",  "connecting", "live",   "reconnecting",
                                          "replaying", "finished",   "stopped"};
  const auto link = static_cast<uint32_t>(r.link_state());
  std::string stale_tables;  // named, since a strategy may read its orders or positions there
  for (uint32_t i = 0; i < r.table_count(); ++i) {
    const auto t = static_cast<uint16_t>(i);
    if (r.table_kind(t) == shm::TableKind::kBook || !r.table_stale(t)) continue;
    stale_tables += stale_tables.empty() ? " | STALE tables: " : ",";
    stale_tables += r.table_name(t);
  }
  return fmt::format(
      "producer pid {} {} ({}) | seq {} | frames {} records {} | drops {} bad {} stale books {} "
      "resyncs {} reconnects {} | recv->publish {} ns{}\n",
      r.header().producer_pid, shm::to_string(r.liveness()), link < 7 ? kLink[link] : "?", r.head(),
      st.frames.load(), st.records.load(), st.drops.load(), st.bad.load(), st.stale_books.load(),
      st.resyncs.load(), st.reconnects.load(), st.last_recv_to_publish_ns.load(), stale_tables);
}

std::string render_json(const shm::Reader& r, const std::vector<Row>& rows) {
  auto side = [](bool has, const shm::Level& l) {
    return has ? fmt::format("[{},{}]", fmt_num(l.price), l.size) : std::string("null");
  };
  std::string s = "{\"symbols\":{";
  bool first = true;
  for (const Row& row : rows) {
    if (!first) s += ',';
    first = false;
    const auto& t = row.top;
    std::string trade = "null";
    if (row.has_trade) {
      trade = fmt::format("[{},{},\"{}\"]", fmt_num(row.tq.trade_price), row.tq.trade_size,
                          row.tq.trade_side ? "Sell" : "Buy");
    }
    s += fmt::format(
        "\"{}\":{{\"bid\":{},\"ask\":{},\"spread\":{},\"last_trade\":{},\"updates\":{},"
        "\"last_recv_ns\":{},\"stale\":{},\"table\":\"{}\"}}",
        row.symbol, side(t.has_bid, t.bid), side(t.has_ask, t.ask),
        t.has_bid && t.has_ask ? fmt_num(t.ask.price - t.bid.price) : "null", trade, t.updates,
        t.last_recv_ns, t.stale ? "true" : "false", row.table);
  }
  const shm::Stats& st = r.stats();
  std::string stale_tables;
  for (uint32_t i = 0; i < r.table_count(); ++i) {
    const auto t = static_cast<uint16_t>(i);
    if (r.table_kind(t) == shm::TableKind::kBook || !r.table_stale(t)) continue;
    if (!stale_tables.empty()) stale_tables += ',';
    stale_tables += '"';
    json_out::append_escaped(r.table_name(t), stale_tables);
    stale_tables += '"';
  }
  s += fmt::format(
      "}},\"producer\":{{\"pid\":{},\"liveness\":\"{}\",\"link\":{}}},\"seq\":{},\"frames\":{},"
      "\"records\":{},\"drops\":{},\"stale_books\":{},\"stale_tables\":[{}],"
      "\"recv_to_publish_ns\":{}}}\n",
      r.header().producer_pid, shm::to_string(r.liveness()), static_cast<uint32_t>(r.link_state()),
      r.head(), st.frames.load(), st.records.load(), st.drops.load(), st.stale_books.load(),
      stale_tables, st.last_recv_to_publish_ns.load());
  return s;
}

int run(const Options& o) {
  shm::Reader r = shm::Reader::attach(o.shm, std::chrono::milliseconds(o.once ? 2000 : 5000));
  std::map<std::pair<uint16_t, uint32_t>, std::pair<uint64_t, int64_t>> seen;
  const bool ladder = !o.symbol.empty() && o.depth > 0;
  for (;;) {
    const std::vector<Row> rows = collect(r, seen);
    std::string screen;
    if (o.json) {
      screen = render_json(r, rows);
    } else {
      screen = ladder ? render_ladder(r, o) : render_table(r, rows);
      screen += render_footer(r);
    }
    if (o.once) {
      fmt::print("{}", screen);
      const shm::Liveness l = r.liveness();
      if (l == shm::Liveness::kDead || l == shm::Liveness::kStale) {
        fmt::print(stderr,
                   "bitmex-top: the producer of {} is {}; the data shown is its last state\n",
                   o.shm, shm::to_string(l));
        return 3;
      }
      return 0;
    }
    fmt::print("\x1b[H\x1b[2J{}", screen);
    std::fflush(stdout);
    if (r.liveness() == shm::Liveness::kRestarted) {
      r = shm::Reader::attach(o.shm, std::chrono::milliseconds(5000));
      seen.clear();
    }
    for (int i = 0; i < 10 && !g_stop; ++i)  // wake often enough to quit promptly
      std::this_thread::sleep_for(std::chrono::duration<double>(o.interval / 10));
    if (g_stop) return 0;
  }
}

int run(int argc, char** argv) {
  CLI::App app{"bitmex-top: live top of book of a bitmex-shm segment (read-only)."};
  Options o;
  app.add_option("--shm", o.shm, "Segment name, as given to the feed's --shm")->required();
  app.add_option("--symbol", o.symbol, "With --depth: show a ladder for this symbol");
  app.add_option("--depth", o.depth, "Levels per side of the ladder (with --symbol)");
  app.add_option("--interval", o.interval, "Seconds between refreshes")->capture_default_str();
  app.add_flag("--once", o.once, "Print one screen and exit");
  app.add_flag("--json", o.json,
               "Print JSON instead: {\"symbols\": {SYMBOL: {\"bid\": [price, size], \"ask\": "
               "[price, size], ...}}, ...} (null for an empty side); with --once for scripts");
  CLI11_PARSE(app, argc, argv);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  try {
    return run(o);
  } catch (const shm::AttachError& e) {
    fmt::print(stderr, "bitmex-top: {}\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "bitmex-top: {}\n", e.what());
    return 2;
  }
}

}  // namespace

// Nothing escapes main: an error that even the handlers inside run() could not report is one line.
int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bitmex-top: %s\n", e.what());
  } catch (...) {
    std::fputs("bitmex-top: unknown error\n", stderr);
  }
  return 1;
}
