// Timestamps: expected values are computed by hand (days since 1970 * 86400 + time of day), and
// cross-checked once against Python's calendar.timegm.
#include "engine/timestamp.hpp"

#include <cstdint>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

namespace {

constexpr int64_t kSecond = 1'000'000'000;

int64_t parse_or_sentinel(std::string_view s) {
  int64_t ns = -42;
  return bmx::parse_timestamp(s, ns) ? ns : -42;
}

TEST(Timestamp, ParsesBitmexMillisecondsToNanosecondsSinceEpoch) {
  // 2021-07-22: 51 years since 1970 with 13 leap days = 18628 days, + 202 days into 2021 = 18830.
  // 18830 * 86400 + 22:36:10 (81370 s) = 1626993370 s.
  EXPECT_EQ(parse_or_sentinel("2021-07-22T22:36:10.014Z"), 1626993370 * kSecond + 14'000'000);
}

TEST(Timestamp, EpochIsZeroAndTheSecondBeforeIsNegative) {
  EXPECT_EQ(parse_or_sentinel("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parse_or_sentinel("1970-01-01T00:00:00.000000001Z"), 1);
  EXPECT_EQ(parse_or_sentinel("1969-12-31T23:59:59Z"), -kSecond);
}

TEST(Timestamp, AcceptsZeroToNineFractionalDigits) {
  const int64_t base = 1626993370 * kSecond;
  EXPECT_EQ(parse_or_sentinel("2021-07-22T22:36:10Z"), base);
  EXPECT_EQ(parse_or_sentinel("2021-07-22T22:36:10.1Z"), base + 100'000'000);
  EXPECT_EQ(parse_or_sentinel("2021-07-22T22:36:10.123456Z"), base + 123'456'000);
  EXPECT_EQ(parse_or_sentinel("2021-07-22T22:36:10.123456789Z"), base + 123'456'789);
}

TEST(Timestamp, AcceptsExplicitUtcOffset) {
  EXPECT_EQ(parse_or_sentinel("2021-07-22T22:36:10.014+00:00"), 1626993370 * kSecond + 14'000'000);
}

TEST(Timestamp, HandlesLeapYears) {
  // 2020-02-29: 50 years with 12 leap days = 18262 days, + 31 + 28 = 18321 days.
  EXPECT_EQ(parse_or_sentinel("2020-02-29T00:00:00Z"), int64_t{18321} * 86400 * kSecond);
  // The day after is 1 March, one day later.
  EXPECT_EQ(parse_or_sentinel("2020-03-01T00:00:00Z"), int64_t{18322} * 86400 * kSecond);
  // 2000 is a leap year (divisible by 400): 2000-01-01 is 10957 days, + 59 = 11016.
  EXPECT_EQ(parse_or_sentinel("2000-02-29T12:00:00Z"),
            (int64_t{11016} * 86400 + 12 * 3600) * kSecond);
  // 2024-11-24T08:15:38.704Z (the nautilus trade row): 54 years with 13 leap days = 19723 days,
  // + 305 (Jan..Oct of a leap year) + 23 = 20051 days; + 29738 s.
  EXPECT_EQ(parse_or_sentinel("2024-11-24T08:15:38.704Z"),
            (int64_t{20051} * 86400 + 29738) * kSecond + 704'000'000);
}

TEST(Timestamp, RejectsDatesThatDoNotExist) {
  EXPECT_EQ(parse_or_sentinel("2021-02-29T00:00:00Z"), -42);  // 2021 is not a leap year
  EXPECT_EQ(parse_or_sentinel("1900-02-29T00:00:00Z"), -42);  // centuries are not, unless /400
  EXPECT_EQ(parse_or_sentinel("2021-04-31T00:00:00Z"), -42);
  EXPECT_EQ(parse_or_sentinel("2021-00-10T00:00:00Z"), -42);
  EXPECT_EQ(parse_or_sentinel("2021-13-10T00:00:00Z"), -42);
  EXPECT_EQ(parse_or_sentinel("2021-07-00T00:00:00Z"), -42);
  EXPECT_EQ(parse_or_sentinel("2021-07-32T00:00:00Z"), -42);
  EXPECT_EQ(parse_or_sentinel("2021-07-22T24:00:00Z"), -42);
  EXPECT_EQ(parse_or_sentinel("2021-07-22T22:60:00Z"), -42);
  EXPECT_EQ(parse_or_sentinel("2021-07-22T22:36:61Z"), -42);
}

TEST(Timestamp, RejectsMalformedText) {
  for (std::string_view bad : {
           "",
           "2021-07-22",
           "2021-07-22T22:36:10",              // no zone
           "2021-07-22T22:36:10.014",          // no zone
           "2021-07-22T22:36:10.Z",            // a dot without digits
           "2021-07-22T22:36:10.0123456789Z",  // ten fractional digits
           "2021-07-22T22:36:10.014+01:00",    // only UTC is accepted
           "2021-07-22T22:36:10.014z",
           "2021-07-22T22:36:10.014Z ",  // trailing junk
           "2021-07-22T22:36:10.014ZZ",
           "2021-7-22T22:36:10.014Z",  // missing zero padding
           "2021/07/22T22:36:10.014Z",
           "2021-07-22X22:36:10.014Z",
           "2021-07-22T22-36-10.014Z",
           "20a1-07-22T22:36:10.014Z",
           "2021-07-22T22:36:1a.014Z",
           "2021-07-22T22:36:10.01aZ",
           "-021-07-22T22:36:10.014Z",
       }) {
    int64_t ns = 7;
    EXPECT_FALSE(bmx::parse_timestamp(bad, ns)) << bad;
    EXPECT_EQ(ns, 7) << "a rejected timestamp must leave the output alone: " << bad;
  }
}

// BitMEX's own form ("....mmmZ", 24 characters) is read by a fixed-position fast path; the same
// instant written any other way goes through the general parser. Both must agree, and the fast
// path must refuse what the general one refuses.
TEST(Timestamp, BitmexFormAgreesWithTheGeneralParser) {
  for (const std::string_view ts :
       {"2021-04-05T18:41:15.515Z", "1970-01-01T00:00:00.000Z", "1969-12-31T23:59:59.999Z",
        "2020-02-29T23:59:60.001Z", "2000-02-29T12:00:00.000Z", "2262-04-11T23:47:16.854Z",
        "1677-09-21T00:12:43.146Z"}) {
    std::string longer(ts);
    longer.insert(23, "000");  // ".515Z" -> ".515000Z": same instant, general path
    EXPECT_NE(parse_or_sentinel(ts), -42) << ts;
    EXPECT_EQ(parse_or_sentinel(ts), parse_or_sentinel(longer)) << ts;
  }
  // Every character of the form, changed to a byte the form does not allow there, is refused,
  // except what the general parser also accepts (a space for the 'T').
  const std::string good = "2021-04-05T18:41:15.515Z";
  for (size_t i = 0; i < good.size(); ++i) {
    for (const char c : {'/', ':', 'x', '\xff', '\0'}) {
      std::string bad = good;
      bad[i] = c;
      if (bad == good) continue;
      EXPECT_EQ(parse_or_sentinel(bad), -42) << i << " " << static_cast<int>(c);
    }
  }
  EXPECT_EQ(parse_or_sentinel("2021-04-05 18:41:15.515Z"), parse_or_sentinel(good));
  EXPECT_EQ(parse_or_sentinel("2021-02-29T00:00:00.000Z"), -42);
  EXPECT_EQ(parse_or_sentinel("2021-04-31T00:00:00.000Z"), -42);
  EXPECT_EQ(parse_or_sentinel("2021-04-30T24:00:00.000Z"), -42);
  EXPECT_EQ(parse_or_sentinel("2021-00-10T00:00:00.000Z"), -42);
}

// The minute-remembering reader of BitMEX's form gives what the general parser gives, text for
// text, in any order: within a remembered minute it still refuses what the general parser refuses
// (seconds past 60, a non-digit, a wrong separator), and near the ends of int64 it neither
// overflows nor remembers a minute it could overflow in. Expected values: the general parser, on
// the same instant written with six fractional digits (which the fixed-form path does not take).
TEST(Timestamp, RememberingTheMinuteChangesNoResult) {
  auto general = [](std::string_view ts) {
    if (ts.size() != 24) return parse_or_sentinel(ts);
    std::string longer(ts);
    longer.insert(23, "000");
    return parse_or_sentinel(longer);
  };
  bmx::BitmexTimestamps fast;
  int checked = 0;
  for (const std::string_view ts :
       {"2021-04-05T18:41:15.515Z", "2021-04-05T18:41:15.516Z", "2021-04-05T18:41:59.999Z",
        "2021-04-05T18:41:60.000Z", "2021-04-05T18:41:61.000Z", "2021-04-05T18:41:99.000Z",
        "2021-04-05T18:41:1x.000Z", "2021-04-05T18:41:15,515Z", "2021-04-05T18:41:15.515",
        "2021-04-05T18:41:00.000Z", "2021-04-05T18:42:00.001Z", "2021-04-05T18:41:15.515Z",
        "2021-04-31T00:00:00.000Z", "2021-04-05T18:41:15.515Z", "1969-12-31T23:59:59.999Z",
        "1969-12-31T23:59:00.001Z", "1970-01-01T00:00:00.000Z", "2262-04-11T23:47:16.854Z",
        "2262-04-11T23:47:17.000Z", "2262-04-11T23:47:59.000Z", "2262-04-11T23:46:59.999Z",
        "2262-04-11T23:47:16.854Z", "1677-09-21T00:12:43.146Z", "1677-09-21T00:12:43.145Z",
        "1677-09-21T00:12:59.000Z", "1677-09-21T00:12:44.000Z"}) {
    int64_t ns = -42;
    const int64_t got = fast.parse(ts, ns) ? ns : -42;
    EXPECT_EQ(got, general(ts)) << ts;
    checked += got != -42;
  }
  EXPECT_EQ(checked, 17);  // the valid ones above, so that the comparison is not of refusals only
}

// int64 nanoseconds since 1970 end in 2262 (and begin in 1677): instants beyond are refused,
// in either form, instead of overflowing.
TEST(Timestamp, RejectsInstantsThatInt64NanosecondsCannotHold) {
  EXPECT_EQ(parse_or_sentinel("2262-04-11T23:47:16.854775807Z"), INT64_MAX);
  EXPECT_EQ(parse_or_sentinel("2262-04-11T23:47:16.854775808Z"), -42);
  EXPECT_EQ(parse_or_sentinel("2262-04-11T23:47:17.000Z"), -42);
  EXPECT_EQ(parse_or_sentinel("9999-12-31T23:59:59.999Z"), -42);
  EXPECT_EQ(parse_or_sentinel("9999-12-31T23:59:59Z"), -42);
  EXPECT_EQ(parse_or_sentinel("1677-09-21T00:12:43.145224192Z"), INT64_MIN);
  EXPECT_EQ(parse_or_sentinel("1677-09-21T00:12:43.145Z"), -42);
  EXPECT_EQ(parse_or_sentinel("0000-01-01T00:00:00.000Z"), -42);
}

TEST(Timestamp, IsUsableAtCompileTime) {
  constexpr int64_t kNs = [] {
    int64_t ns = 0;
    return bmx::parse_timestamp("1970-01-02T00:00:00Z", ns) ? ns : -1;
  }();
  static_assert(kNs == 86400 * kSecond);
  SUCCEED();
}

int64_t unix_or_sentinel(std::string_view s) {
  int64_t ns = -42;
  return bmx::parse_unix_seconds(s, ns) ? ns : -42;
}

TEST(UnixSeconds, ParsesCryptofeedReceiveTimesExactly) {
  // A double cannot hold 1626993367.875267 exactly; the integer parse must.
  EXPECT_EQ(unix_or_sentinel("1626993367.875267"), 1626993367875267000);
  EXPECT_EQ(unix_or_sentinel("1626993367"), 1626993367 * kSecond);
  EXPECT_EQ(unix_or_sentinel("0.000000001"), 1);
  EXPECT_EQ(unix_or_sentinel("1.5"), 1'500'000'000);
}

TEST(UnixSeconds, TruncatesDigitsPastNanoseconds) {
  EXPECT_EQ(unix_or_sentinel("1.1234567899"), 1'123'456'789);
}

TEST(UnixSeconds, RejectsNonNumbers) {
  for (std::string_view bad : {"", ".5", "-1", "1.5x", "abc", "1,5", " 1", "1 ", "1e9",
                               "1234567890123" /* 13 digits of seconds */}) {
    int64_t ns = 7;
    EXPECT_FALSE(bmx::parse_unix_seconds(bad, ns)) << bad;
    EXPECT_EQ(ns, 7) << bad;
  }
}

// Found by fuzz_capture (regression unix-seconds-overflow-int64-ns): seconds * 10^9 overflowed
// int64 (undefined behaviour) for up to twelve digits of seconds.
TEST(UnixSeconds, BeyondInt64NanosecondsIsRejectedNotOverflowed) {
  EXPECT_EQ(unix_or_sentinel("9223372036.854775807"), INT64_MAX);
  EXPECT_EQ(unix_or_sentinel("9223372036.854775808"), -42);
  EXPECT_EQ(unix_or_sentinel("9223372037"), -42);
  EXPECT_EQ(unix_or_sentinel("10617648073.1"), -42);
  EXPECT_EQ(unix_or_sentinel("999999999999.999999999"), -42);
}

}  // namespace
