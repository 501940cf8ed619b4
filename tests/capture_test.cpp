// The capture-file reader's line formats, at their edges (the recorded sessions cover the rest).
#include <gtest/gtest.h>

#include <cstdint>
#include <string_view>

#include "engine/capture.hpp"

namespace {

TEST(Capture, NanosecondReceiveTimeUpToInt64MaxIsAFrame) {
  const bmx::Capture c = bmx::Capture::from_text("9223372036854775807\t{\"table\":\"trade\"}\n");
  ASSERT_EQ(c.frames().size(), 1u);
  EXPECT_EQ(c.frames()[0].recv_ns, INT64_MAX);
  EXPECT_EQ(std::string_view(c.frames()[0].data, c.frames()[0].len), "{\"table\":\"trade\"}");
}

// Found by fuzz_capture: the digits were accumulated into an int64 before being checked, which
// overflowed (undefined behaviour) for 19 digits above INT64_MAX and for non-digits.
TEST(Capture, ReceiveTimeBeyondInt64IsAnUnrecognisedLineNotAnOverflow) {
  const bmx::Capture c = bmx::Capture::from_text(
      "9223372036854775808\t{}\n9999999999999999999\t{}\n5\xf5\xf5\xf5\xf5\xf5\xf5\xf5\xf5\xf5"
      "\xf5\xf5\xf5\xf5\xf5\xf5\xf5\xf5\xf5\t{}\n");
  EXPECT_TRUE(c.frames().empty());
  EXPECT_EQ(c.unrecognized_lines(), 3u);
}

}  // namespace
