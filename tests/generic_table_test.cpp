// GenericTable (rows of any table, as raw JSON tokens) and the json_text helpers behind its keys.
#include "engine/generic_table.hpp"

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "engine/json_text.hpp"

namespace {

using bmx::Action;
using bmx::GenericTable;
using bmx::RawField;
using Result = GenericTable::Result;

// Builds a row from (name, raw JSON token) pairs; tokens are string literals, so views stay valid.
std::vector<RawField> row(GenericTable& t,
                          std::initializer_list<std::pair<std::string_view, std::string_view>> f) {
  std::vector<RawField> out;
  uint32_t pos = 0;
  for (const auto& [name, value] : f)
    out.push_back(RawField{t.field_id(name, pos++), value});
  return out;
}

std::vector<uint32_t> keys(GenericTable& t, std::initializer_list<std::string_view> names) {
  std::vector<uint32_t> out;
  for (auto n : names)
    out.push_back(t.field_id(n, UINT32_MAX));
  return out;
}

std::string_view value(const GenericTable& t, std::string_view key, std::string_view field) {
  const GenericTable::Row* r = t.find(key);
  if (r == nullptr) return "<no row>";
  const uint32_t id = t.find_field(field);
  if (id == bmx::Interner::kNone) return "<no field>";
  return r->value(id);
}

class OrderTable : public ::testing::Test {
 protected:
  OrderTable() : t("order", 64, 16) { t.begin_partial(keys(t, {"orderID"}), {}); }
  GenericTable t;
};

TEST_F(OrderTable, KeyedInsertUpdateAndDelete) {
  EXPECT_FALSE(t.keyless());
  EXPECT_TRUE(t.has_partial());
  EXPECT_EQ(t.apply(Action::kInsert, row(t, {{"orderID", R"("a1")"}, {"price", "11390.5"}})),
            Result::kOk);
  EXPECT_EQ(t.apply(Action::kInsert, row(t, {{"orderID", R"("b2")"}, {"price", "11968.5"}})),
            Result::kOk);
  EXPECT_EQ(t.size(), 2u);
  EXPECT_EQ(value(t, "a1", "price"), "11390.5");
  EXPECT_EQ(value(t, "b2", "price"), "11968.5");
  EXPECT_EQ(value(t, "a1", "orderID"), R"("a1")") << "values stay as the exchange wrote them";

  EXPECT_EQ(t.apply(Action::kUpdate, row(t, {{"orderID", R"("a1")"}, {"price", "11391"}})),
            Result::kOk);
  EXPECT_EQ(value(t, "a1", "price"), "11391");

  EXPECT_EQ(t.apply(Action::kDelete, row(t, {{"orderID", R"("a1")"}})), Result::kOk);
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(t.find("a1"), nullptr);
  EXPECT_EQ(value(t, "b2", "price"), "11968.5");
}

TEST_F(OrderTable, UpdateMergesLongerShorterAndNewFields) {
  ASSERT_EQ(t.apply(Action::kInsert, row(t, {{"orderID", R"("a")"},
                                             {"price", "1.5"},
                                             {"text", R"("a fairly long text")"},
                                             {"ordStatus", R"("New")"}})),
            Result::kOk);
  // Longer than before.
  ASSERT_EQ(t.apply(Action::kUpdate, row(t, {{"orderID", R"("a")"}, {"price", "100000.25"}})),
            Result::kOk);
  // Shorter than before.
  ASSERT_EQ(t.apply(Action::kUpdate, row(t, {{"orderID", R"("a")"}, {"text", R"("x")"}})),
            Result::kOk);
  // A field the row never had.
  ASSERT_EQ(t.apply(Action::kUpdate, row(t, {{"orderID", R"("a")"}, {"leavesQty", "3"}})),
            Result::kOk);

  EXPECT_EQ(value(t, "a", "price"), "100000.25");
  EXPECT_EQ(value(t, "a", "text"), R"("x")");
  EXPECT_EQ(value(t, "a", "leavesQty"), "3");
  EXPECT_EQ(value(t, "a", "ordStatus"), R"("New")") << "fields not in the update are kept";
  EXPECT_EQ(t.find("a")->fields.size(), 5u);
}

TEST_F(OrderTable, JsonNullSetsTheFieldToNull) {
  ASSERT_EQ(t.apply(Action::kInsert, row(t, {{"orderID", R"("a")"}, {"price", "11390.5"}})),
            Result::kOk);
  ASSERT_EQ(t.apply(Action::kUpdate, row(t, {{"orderID", R"("a")"}, {"price", "null"}})),
            Result::kOk);
  EXPECT_EQ(value(t, "a", "price"), "null");
  // And back from null to a value longer than "null".
  ASSERT_EQ(t.apply(Action::kUpdate, row(t, {{"orderID", R"("a")"}, {"price", "11390.55"}})),
            Result::kOk);
  EXPECT_EQ(value(t, "a", "price"), "11390.55");
}

TEST_F(OrderTable, UpdateOrDeleteOfUnknownRowIsReported) {
  EXPECT_EQ(t.apply(Action::kUpdate, row(t, {{"orderID", R"("nope")"}, {"price", "1"}})),
            Result::kUnknownRow);
  EXPECT_EQ(t.apply(Action::kDelete, row(t, {{"orderID", R"("nope")"}})), Result::kUnknownRow);
  EXPECT_EQ(t.size(), 0u);
}

TEST_F(OrderTable, InsertOfAnExistingKeyReplacesTheRow) {
  ASSERT_EQ(
      t.apply(Action::kInsert, row(t, {{"orderID", R"("a")"}, {"price", "1"}, {"text", R"("t")"}})),
      Result::kOk);
  EXPECT_EQ(t.apply(Action::kInsert, row(t, {{"orderID", R"("a")"}, {"price", "2"}})),
            Result::kReplaced);
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(value(t, "a", "price"), "2");
  EXPECT_EQ(value(t, "a", "text"), "") << "an insert replaces, it does not merge";
}

TEST_F(OrderTable, RowWithoutItsKeyIsABadKey) {
  EXPECT_EQ(t.apply(Action::kInsert, row(t, {{"price", "1"}})), Result::kBadKey);
  EXPECT_EQ(t.apply(Action::kInsert, row(t, {{"orderID", R"({"a":1})"}})), Result::kBadKey);
  EXPECT_EQ(t.apply(Action::kInsert, row(t, {{"orderID", "[1,2]"}})), Result::kBadKey);
  EXPECT_EQ(t.size(), 0u);
}

TEST_F(OrderTable, EscapedAndPlainSpellingsNameTheSameRow) {
  ASSERT_EQ(t.apply(Action::kInsert, row(t, {{"orderID", R"("\u0041BC")"}, {"price", "1"}})),
            Result::kOk);
  EXPECT_NE(t.find("ABC"), nullptr);
  EXPECT_EQ(t.apply(Action::kUpdate, row(t, {{"orderID", R"("ABC")"}, {"price", "2"}})),
            Result::kOk);
  EXPECT_EQ(t.apply(Action::kUpdate, row(t, {{"orderID", R"("A\u0042C")"}, {"price", "3"}})),
            Result::kOk);
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(value(t, "ABC", "price"), "3");
  EXPECT_EQ(t.apply(Action::kDelete, row(t, {{"orderID", R"("\u0041\u0042\u0043")"}})),
            Result::kOk);
  EXPECT_EQ(t.size(), 0u);
}

// Found by fuzz_pipeline (regression update-repeating-its-key-field-moved-the-row): an update
// names its row by its key fields (the first of each); a second, different value of a key field
// must not re-key the row behind the index's back. Key fields only identify the row.
TEST_F(OrderTable, UpdateCannotChangeTheKeyFieldsOfItsRow) {
  ASSERT_EQ(t.apply(Action::kInsert, row(t, {{"orderID", R"("a1")"}, {"price", "1"}})),
            Result::kOk);
  EXPECT_EQ(t.apply(Action::kUpdate,
                    row(t, {{"orderID", R"("a1")"}, {"orderID", R"("z9")"}, {"price", "2"}})),
            Result::kOk);
  EXPECT_EQ(value(t, "a1", "orderID"), R"("a1")");
  EXPECT_EQ(value(t, "a1", "price"), "2");
  EXPECT_EQ(t.find("z9"), nullptr);
  std::string json;
  t.append_json(*t.find("a1"), json);
  EXPECT_EQ(json, R"({"orderID":"a1","price":2})");
}

TEST(GenericTable, KeylessUpdateCannotChangeTheSymbolOfItsRow) {
  GenericTable t("instrument_like", 64, 16);
  t.begin_partial({}, {});
  ASSERT_EQ(t.apply(Action::kInsert, row(t, {{"symbol", R"("XBTUSD")"}, {"price", "1"}})),
            Result::kOk);
  EXPECT_EQ(t.apply(Action::kUpdate,
                    row(t, {{"symbol", R"("XBTUSD")"}, {"symbol", R"("ETHUSD")"}, {"price", "2"}})),
            Result::kOk);
  EXPECT_EQ(value(t, "XBTUSD", "symbol"), R"("XBTUSD")");
  EXPECT_EQ(value(t, "XBTUSD", "price"), "2");
  EXPECT_EQ(t.find("ETHUSD"), nullptr);
}

TEST_F(OrderTable, ManyUpdatesCompactTheRowAndKeepEveryValue) {
  ASSERT_EQ(
      t.apply(Action::kInsert,
              row(t, {{"orderID", R"("a")"}, {"price", "1"}, {"text", R"("t")"}, {"cumQty", "0"}})),
      Result::kOk);
  const std::string_view texts[] = {R"("short")", R"("a much, much longer text value here")"};
  const std::string_view prices[] = {"1", "12345.678901"};
  for (int i = 0; i < 5000; ++i) {
    ASSERT_EQ(t.apply(Action::kUpdate, row(t, {{"orderID", R"("a")"},
                                               {"text", texts[i % 2]},
                                               {"price", prices[(i / 2) % 2]}})),
              Result::kOk);
  }
  // i = 4999: texts[1], prices[1].
  EXPECT_EQ(value(t, "a", "text"), texts[1]);
  EXPECT_EQ(value(t, "a", "price"), prices[1]);
  EXPECT_EQ(value(t, "a", "cumQty"), "0");
  EXPECT_LT(t.find("a")->text.size(), 1000u) << "dead bytes are reclaimed";
}

TEST(GenericTable, KeysJoinWithPipeInThePartialsOrder) {
  GenericTable t("orderBookL2", 64, 16);
  t.begin_partial(keys(t, {"symbol", "id", "side"}), {});
  std::string key;
  ASSERT_TRUE(t.make_key(
      row(t, {{"side", R"("Buy")"}, {"id", "8796323950"}, {"symbol", R"("XBTUSD")"}}), key));
  EXPECT_EQ(key, "XBTUSD|8796323950|Buy");
  // Numbers and literals as written.
  ASSERT_TRUE(t.make_key(row(t, {{"symbol", "true"}, {"id", "1.50"}, {"side", "null"}}), key));
  EXPECT_EQ(key, "true|1.50|null");
  // Trailing whitespace that simdjson leaves after a raw token is not part of the key.
  ASSERT_TRUE(
      t.make_key(row(t, {{"symbol", "\"X\" "}, {"id", "7\n"}, {"side", "\"Sell\"\t"}}), key));
  EXPECT_EQ(key, "X|7|Sell");
  // A missing key field.
  EXPECT_FALSE(t.make_key(row(t, {{"symbol", R"("X")"}, {"id", "7"}}), key));
}

TEST(GenericTable, KeylessTableKeepsTheLatestRowPerSymbol) {
  GenericTable t("trade", 64, 16);
  t.begin_partial({}, {});
  EXPECT_TRUE(t.keyless());
  ASSERT_EQ(
      t.apply(Action::kInsert,
              row(t, {{"symbol", R"("XBTUSD")"}, {"price", "32186.5"}, {"trdMatchID", R"("x1")"}})),
      Result::kOk);
  ASSERT_EQ(t.apply(Action::kInsert, row(t, {{"symbol", R"("XBTUSD")"}, {"price", "32187"}})),
            Result::kOk);
  ASSERT_EQ(t.apply(Action::kInsert, row(t, {{"symbol", R"("TRXU21")"}, {"price", "1.6425e-06"}})),
            Result::kOk);
  EXPECT_EQ(t.size(), 2u);
  EXPECT_EQ(value(t, "XBTUSD", "price"), "32187");
  EXPECT_EQ(value(t, "XBTUSD", "trdMatchID"), "") << "the latest row replaces the previous one";
  EXPECT_EQ(value(t, "TRXU21", "price"), "1.6425e-06");
}

TEST(GenericTable, PartialWithFilterDropsOnlyTheRowsItCovers) {
  GenericTable t("order", 64, 16);
  const auto k = keys(t, {"orderID"});
  t.begin_partial(k, {});
  ASSERT_EQ(t.apply(Action::kInsert, row(t, {{"orderID", R"("a")"}, {"account", "1"}})),
            Result::kOk);
  ASSERT_EQ(t.apply(Action::kInsert, row(t, {{"orderID", R"("b")"}, {"account", "2"}})),
            Result::kOk);
  ASSERT_EQ(t.apply(Action::kInsert, row(t, {{"orderID", R"("c")"}, {"account", "2"}})),
            Result::kOk);
  ASSERT_EQ(t.apply(Action::kInsert, row(t, {{"orderID", R"("d")"}})), Result::kOk);

  const std::vector<RawField> filter = {RawField{t.field_id("account", UINT32_MAX), "2"}};
  t.begin_partial(k, filter);
  EXPECT_EQ(t.size(), 2u);
  EXPECT_NE(t.find("a"), nullptr);
  EXPECT_EQ(t.find("b"), nullptr);
  EXPECT_EQ(t.find("c"), nullptr);
  EXPECT_NE(t.find("d"), nullptr) << "a row without the filter field is not covered";

  // Dropped rows are recycled for new ones.
  ASSERT_EQ(t.apply(Action::kInsert, row(t, {{"orderID", R"("e")"}, {"account", "2"}})),
            Result::kOk);
  EXPECT_EQ(value(t, "e", "account"), "2");

  // A partial without a filter drops everything.
  t.begin_partial(k, {});
  EXPECT_EQ(t.size(), 0u);
}

// A filter value and a row's value are JSON values: spelled with an escape or without, "XBTUSD" is
// "XBT\u0055SD". Other values stay other values, however alike their bytes.
TEST(GenericTable, PartialFilterComparesValuesNotTheirSpelling) {
  GenericTable t("order", 64, 16);
  const auto k = keys(t, {"orderID"});
  t.begin_partial(k, {});
  for (const auto& [id, symbol] :
       {std::pair{R"("a")", R"("XBT\u0055SD")"}, std::pair{R"("b")", R"("XBTUSD")"},
        std::pair{R"("c")", R"("XBTUSDT")"}, std::pair{R"("d")", R"("XBT\u0055SDT")"}}) {
    ASSERT_EQ(t.apply(Action::kInsert, row(t, {{"orderID", id}, {"symbol", symbol}})), Result::kOk);
  }
  const uint32_t symbol = t.field_id("symbol", UINT32_MAX);
  t.begin_partial(k, std::vector<RawField>{RawField{symbol, R"("XBTUSD")"}});
  EXPECT_EQ(t.find("a"), nullptr);
  EXPECT_EQ(t.find("b"), nullptr);
  EXPECT_NE(t.find("c"), nullptr);
  EXPECT_NE(t.find("d"), nullptr);
  t.begin_partial(k, std::vector<RawField>{RawField{symbol, R"("\u0058BTUSDT")"}});
  EXPECT_EQ(t.size(), 0u);
}

// Found by fuzz_frame (regression partial-with-other-keys-left-rows-unreachable): a partial that
// announced other keys kept the rows its filter did not cover, indexed by the old keys, where no
// update or delete (keyed by the new ones) could ever find them.
TEST(GenericTable, PartialWithOtherKeysDropsEveryRow) {
  GenericTable t("order", 64, 16);
  EXPECT_FALSE(t.begin_partial(keys(t, {"orderID"}), {}));
  ASSERT_EQ(t.apply(Action::kInsert, row(t, {{"orderID", R"("a")"}, {"account", "1"}})),
            Result::kOk);
  const std::vector<RawField> account2 = {RawField{t.field_id("account", UINT32_MAX), "2"}};
  EXPECT_FALSE(t.begin_partial(keys(t, {"orderID"}), account2)) << "same keys";
  EXPECT_NE(t.find("a"), nullptr) << "not covered by the filter: kept";

  EXPECT_TRUE(t.begin_partial(keys(t, {"clOrdID"}), account2));
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.find("a"), nullptr);
}

TEST(GenericTable, PartialClearsStaleness) {
  GenericTable t("order", 64, 16);
  t.stale = true;
  t.begin_partial(keys(t, {"orderID"}), {});
  EXPECT_FALSE(t.stale);
}

TEST(GenericTable, CoverageFollowsWhatPartialsCovered) {
  GenericTable t("trade", 64, 16);
  EXPECT_FALSE(t.has_partial());
  EXPECT_FALSE(t.covers(3));
  t.cover_symbol(3);
  EXPECT_TRUE(t.covers(3));
  EXPECT_FALSE(t.covers(4));
  EXPECT_FALSE(t.covers(bmx::kNoSymbol));
  t.cover_symbol(1000);  // beyond max_symbols: ignored, not a crash
  EXPECT_FALSE(t.covers(1000));
  t.cover_all();
  EXPECT_TRUE(t.covers_all());
  EXPECT_TRUE(t.covers(4));
}

TEST(GenericTable, FieldIdsDoNotDependOnFieldOrder) {
  GenericTable t("instrument", 64, 16);
  const uint32_t a = t.field_id("symbol", 0);
  const uint32_t b = t.field_id("lastPrice", 1);
  EXPECT_NE(a, b);
  EXPECT_EQ(t.field_id("lastPrice", 0), b);
  EXPECT_EQ(t.field_id("symbol", 1), a);
  EXPECT_EQ(t.field_id("symbol", 0), a);
  EXPECT_EQ(t.find_field("lastPrice"), b);
  EXPECT_EQ(t.field_name(b), "lastPrice");
  EXPECT_EQ(t.find_field("nope"), bmx::Interner::kNone);
}

TEST(GenericTable, MoreDistinctFieldsThanConfiguredAreRefused) {
  GenericTable t("wide", 4, 16);  // "symbol" is interned by the constructor
  EXPECT_NE(t.field_id("a", 0), bmx::Interner::kNone);
  EXPECT_NE(t.field_id("b", 1), bmx::Interner::kNone);
  EXPECT_NE(t.field_id("c", 2), bmx::Interner::kNone);
  EXPECT_EQ(t.field_id("d", 3), bmx::Interner::kNone);
}

// ---- json_text ------------------------------------------------------------------------------

std::string key_part(std::string_view raw) {
  std::string out = "<";
  if (!bmx::json::append_key_part(raw, out)) return "FAIL";
  return out.substr(1);
}

TEST(JsonText, TrimTokenStripsTrailingWhitespaceOnly) {
  EXPECT_EQ(bmx::json::trim_token("123 \t\r\n"), "123");
  EXPECT_EQ(bmx::json::trim_token(" 123"), " 123");
  EXPECT_EQ(bmx::json::trim_token(""), "");
  EXPECT_EQ(bmx::json::trim_token(" \n"), "");
}

TEST(JsonText, KeyPartOfScalarsIsTheirText) {
  EXPECT_EQ(key_part("8796323950"), "8796323950");
  EXPECT_EQ(key_part("-1.5e-06"), "-1.5e-06");
  EXPECT_EQ(key_part("true"), "true");
  EXPECT_EQ(key_part("null"), "null");
  EXPECT_EQ(key_part(R"("XBTUSD")"), "XBTUSD");
  EXPECT_EQ(key_part(R"("")"), "");
}

TEST(JsonText, KeyPartDecodesEscapesToOneCanonicalForm) {
  EXPECT_EQ(key_part(R"("\u0041")"), "A");
  EXPECT_EQ(key_part(R"("A")"), "A");
  EXPECT_EQ(key_part(R"("\/")"), "/");
  EXPECT_EQ(key_part(R"("a\"b")"), R"(a\"b)");
  EXPECT_EQ(key_part(R"("a\u0022b")"), R"(a\"b)");
  EXPECT_EQ(key_part(R"("back\\slash")"), R"(back\\slash)");
  EXPECT_EQ(key_part(R"("\u005c")"), R"(\\)");
  EXPECT_EQ(key_part(R"("tab\there")"), R"(tab\there)");
  EXPECT_EQ(key_part(R"("\u0009")"), R"(\t)");
  EXPECT_EQ(key_part(R"("\u0001")"), R"(\u0001)");
  EXPECT_EQ(key_part(R"("\u00e9")"), "\xc3\xa9");                // é, two UTF-8 bytes
  EXPECT_EQ(key_part(R"("\u20AC")"), "\xe2\x82\xac");            // €, three
  EXPECT_EQ(key_part(R"("\ud83d\ude00")"), "\xf0\x9f\x98\x80");  // U+1F600, a surrogate pair
  EXPECT_EQ(key_part("\"\xc3\xa9\""), "\xc3\xa9") << "raw UTF-8 is already canonical";
}

TEST(JsonText, KeyPartRefusesCompositesAndBrokenStrings) {
  EXPECT_EQ(key_part(R"({"a":1})"), "FAIL");
  EXPECT_EQ(key_part("[1]"), "FAIL");
  EXPECT_EQ(key_part(""), "FAIL");
  EXPECT_EQ(key_part(R"("abc)"), "FAIL");
  EXPECT_EQ(key_part(R"(")"), "FAIL");
  EXPECT_EQ(key_part(R"("\x")"), "FAIL");
  EXPECT_EQ(key_part(R"("\u00g1")"), "FAIL");
  EXPECT_EQ(key_part(R"("\u12")"), "FAIL");
  EXPECT_EQ(key_part(R"("\ude00")"), "FAIL");        // a lone low surrogate
  EXPECT_EQ(key_part(R"("\ud83d")"), "FAIL");        // a high surrogate without its pair
  EXPECT_EQ(key_part(R"("\ud83d\u0041")"), "FAIL");  // paired with a non-surrogate
}

TEST(JsonText, AppendEscapedEscapesWhatJsonRequires) {
  std::string out;
  bmx::json::append_escaped("plain", out);
  EXPECT_EQ(out, "plain");
  out.clear();
  bmx::json::append_escaped("q\"b\\n\nr\rt\tb\bf\f", out);
  EXPECT_EQ(out, R"(q\"b\\n\nr\rt\tb\bf\f)");
  out.clear();
  bmx::json::append_escaped(std::string_view("\x01\x1f\0", 3), out);
  EXPECT_EQ(out, R"(\u0001\u001f\u0000)");
  out.clear();
  bmx::json::append_escaped("\xe2\x82\xac/", out);
  EXPECT_EQ(out, "\xe2\x82\xac/") << "UTF-8 and '/' pass through";
}

}  // namespace
