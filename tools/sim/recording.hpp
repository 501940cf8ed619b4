// The session bitmex-sim serves: the table frames of one or more captures, in recorded order, each
// with its table, action and the symbols of its rows, indexed once at start-up.
//
// Frames stay where Capture put them (padded, never copied): the sim sends them byte for byte.
// Control frames of the recording (welcome, acks, errors, pong) are not part of the session: the
// sim answers the connected client itself.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/capture.hpp"

namespace bmx::sim {

inline constexpr uint32_t kNoPos = UINT32_MAX;

struct RecordedFrame {
  std::string_view text;
  size_t capacity = 0;  // readable bytes from text.data() (for FeedEngine::on_frame)
  int64_t recv_ns = 0;  // 0 when the capture line carries no time
  uint16_t table = 0;
  bool partial = false;
  bool whole = false;  // a partial without a symbol filter: it covers the rows it lists
  // Distinct row symbols; for a partial with a symbol filter, that symbol (even with no rows).
  std::vector<uint32_t> symbols;
};

class Recording {
 public:
  // Loads and indexes every capture, in order. Throws std::runtime_error naming a file that
  // cannot be read or that holds no table frame at all.
  static Recording load(const std::vector<std::string>& paths);

  [[nodiscard]] const std::vector<RecordedFrame>& frames() const noexcept { return frames_; }
  [[nodiscard]] std::optional<uint16_t> find_table(std::string_view name) const;
  [[nodiscard]] std::optional<uint32_t> find_symbol(std::string_view name) const;
  [[nodiscard]] const std::string& table_name(uint16_t t) const { return tables_[t]; }
  [[nodiscard]] const std::string& symbol_name(uint32_t s) const { return symbols_[s]; }
  [[nodiscard]] static bool is_book_table(std::string_view name) noexcept {
    return name == "orderBookL2" || name == "orderBookL2_25";
  }
  // Positions of the partial frames of table `t`, in order.
  [[nodiscard]] const std::vector<uint32_t>& partials(uint16_t t) const { return partials_[t]; }
  // Does partial frame `pos` cover `symbol`?
  [[nodiscard]] bool covers(uint32_t pos, uint32_t symbol) const;
  // The partial of table `t` covering `symbol` to serve at cursor `cursor`: the last one before
  // the cursor, else the first after it; kNoPos when none.
  [[nodiscard]] uint32_t partial_for(uint16_t t, uint32_t symbol, uint32_t cursor) const;
  // Every symbol some partial of table `t` covers, in order of first appearance.
  [[nodiscard]] std::vector<uint32_t> symbols_of(uint16_t t) const;
  // Receive time of the first frame that has one (0 when none does): the session's clock origin.
  [[nodiscard]] int64_t first_recv_ns() const noexcept { return first_recv_ns_; }

 private:
  uint16_t table_id(std::string_view name);
  uint32_t symbol_id(std::string_view name);

  std::vector<Capture> captures_;
  std::vector<RecordedFrame> frames_;
  std::vector<std::string> tables_;
  std::vector<std::string> symbols_;
  std::unordered_map<std::string, uint16_t> table_ids_;
  std::unordered_map<std::string, uint32_t> symbol_ids_;
  std::vector<std::vector<uint32_t>> partials_;
  int64_t first_recv_ns_ = 0;
};

}  // namespace bmx::sim
