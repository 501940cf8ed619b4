// FeedEngine: what each kind of websocket text frame is taken for, and how it is counted. Frames
// are real BitMEX messages (or their documented shapes), handed in with SIMDJSON_PADDING spare
// bytes.
#include <cstdint>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "engine/capture.hpp"
#include "engine/feed_engine.hpp"
#include "test_support.hpp"

namespace {

using bmx::EventKind;
using bmx::FeedEngine;
using bmx::FrameKind;
using bmxtest::count_events;
using bmxtest::drain;
using bmxtest::feed;
using bmxtest::frames_of;

constexpr std::string_view kWelcome =
    R"({"info":"Welcome to the BitMEX Realtime API.","version":"2021-07-14T01:26:29.000Z",)"
    R"("timestamp":"2021-07-22T22:36:07.865Z","docs":"https://www.bitmex.com/app/wsAPI",)"
    R"("limit":{"remaining":39}})";
constexpr std::string_view kSubscribeAck =
    R"({"success":true,"subscribe":"orderBookL2:XBTUSD","request":{"op":"subscribe",)"
    R"("args":["orderBookL2:XBTUSD"]}})";
constexpr std::string_view kUnsubscribeAck =
    R"({"success":true,"unsubscribe":"trade:XBTUSD","request":{"op":"unsubscribe",)"
    R"("args":["trade:XBTUSD"]}})";
constexpr std::string_view kAuthAck =
    R"({"success":true,"request":{"op":"authKeyExpires","args":["LAqUlngMIQkIUjXMUreyu3qn",)"
    R"(1518064237,"9f1753e2db64711e39d111bc2ecace3dc9e7f026e6f65b65c4f53d3d14a60e5f"]}})";
constexpr std::string_view kError =
    R"({"status":400,"error":"Unknown table: orderBookL3","meta":{},)"
    R"("request":{"op":"subscribe","args":["orderBookL3:XBTUSD"]}})";
constexpr std::string_view kCancelAllAfter =
    R"({"now":"2020-10-12T18:18:38.282Z","cancelTime":"2020-10-12T18:19:38.282Z",)"
    R"("request":{"op":"cancelAllAfter","args":60000}})";
constexpr std::string_view kTrade =
    R"({"table":"trade","action":"partial","keys":[],"filter":{"symbol":"XBTUSD"},"data":[)"
    R"({"timestamp":"2021-07-22T22:36:10.014Z","symbol":"XBTUSD","side":"Buy","size":100,)"
    R"("price":32187}]})";

TEST(FrameClassification, TableDataIsATableFrameWithItsAction) {
  FeedEngine e;
  const bmx::FrameResult r = feed(e, kTrade);
  EXPECT_EQ(r.kind, FrameKind::kTable);
  EXPECT_EQ(r.action, bmx::Action::kPartial);
  EXPECT_EQ(r.table, e.find_table("trade"));
  EXPECT_NE(r.table, bmx::Event::kNoTable);
  EXPECT_EQ(frames_of(e, FrameKind::kTable), 1u);
  EXPECT_EQ(e.stats().rows, 1u);
  EXPECT_EQ(e.frame_count(), 1u);
}

TEST(FrameClassification, WelcomeMessageIsInfo) {
  FeedEngine e;
  EXPECT_EQ(feed(e, kWelcome).kind, FrameKind::kInfo);
  EXPECT_EQ(frames_of(e, FrameKind::kInfo), 1u);
  EXPECT_EQ(count_events(drain(e), EventKind::kInfo), 1u);
}

TEST(FrameClassification, WebsocketHelpIsInfoEvenThoughItHasASubscribeField) {
  // From BitMEX/api-connectors: {"info":..,"usage":..,"ops":[..],"subscribe":"To subscribe, ..}
  const bmx::Capture c =
      bmx::Capture::load(bmxtest::data_path("bitmex/api-connectors-fixtures/websocketHelp.ndjson"));
  ASSERT_EQ(c.frames().size(), 1u);
  FeedEngine e;
  const auto& f = c.frames()[0];
  EXPECT_EQ(e.on_frame(f.data, f.len, c.capacity(f), 0).kind, FrameKind::kInfo);
}

TEST(FrameClassification, SubscribeAckCarriesItsTopic) {
  FeedEngine e;
  EXPECT_EQ(feed(e, kSubscribeAck).kind, FrameKind::kSubscribe);
  EXPECT_EQ(frames_of(e, FrameKind::kSubscribe), 1u);
  const auto events = drain(e);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, EventKind::kSubscribed);
  EXPECT_NE(events[0].excerpt().find("orderBookL2:XBTUSD"), std::string_view::npos);
}

TEST(FrameClassification, UnsubscribeAckCarriesItsTopic) {
  FeedEngine e;
  EXPECT_EQ(feed(e, kUnsubscribeAck).kind, FrameKind::kUnsubscribe);
  EXPECT_EQ(frames_of(e, FrameKind::kUnsubscribe), 1u);
  const auto events = drain(e);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, EventKind::kUnsubscribed);
  EXPECT_NE(events[0].excerpt().find("trade:XBTUSD"), std::string_view::npos);
}

TEST(FrameClassification, AuthKeyExpiresAckIsAuth) {
  FeedEngine e;
  EXPECT_EQ(feed(e, kAuthAck).kind, FrameKind::kAuth);
  EXPECT_EQ(frames_of(e, FrameKind::kAuth), 1u);
  EXPECT_EQ(count_events(drain(e), EventKind::kAuth), 1u);
}

TEST(FrameClassification, ErrorWithStatusIsErrorAndKeepsStatusAndMessage) {
  FeedEngine e;
  EXPECT_EQ(feed(e, kError).kind, FrameKind::kError);
  EXPECT_EQ(frames_of(e, FrameKind::kError), 1u);
  const auto events = drain(e);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, EventKind::kErrorFrame);
  EXPECT_EQ(events[0].value, 400);
  EXPECT_NE(events[0].excerpt().find("Unknown table: orderBookL3"), std::string_view::npos);
}

TEST(FrameClassification, ErrorWithoutStatusIsStillAnError) {
  FeedEngine e;
  EXPECT_EQ(feed(e, R"({"error":"Not authenticated"})").kind, FrameKind::kError);
  const auto events = drain(e);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].value, 0);
}

TEST(FrameClassification, CancelAllAfterReplyIsRecognised) {
  FeedEngine e;
  EXPECT_EQ(feed(e, kCancelAllAfter).kind, FrameKind::kCancelAllAfter);
  EXPECT_EQ(frames_of(e, FrameKind::kCancelAllAfter), 1u);
  EXPECT_EQ(count_events(drain(e), EventKind::kCancelAllAfter), 1u);
  // The disarm reply ({"args":0}) has the same shape.
  EXPECT_EQ(feed(e, R"({"now":"2020-10-12T18:18:38.282Z","cancelTime":0})").kind,
            FrameKind::kCancelAllAfter);
}

TEST(FrameClassification, BarePongIsPong) {
  FeedEngine e;
  EXPECT_EQ(feed(e, "pong").kind, FrameKind::kPong);
  EXPECT_EQ(frames_of(e, FrameKind::kPong), 1u);
  EXPECT_TRUE(drain(e).empty()) << "a pong is not worth an event";
  // Only the exact text: a JSON string "pong" is not the heartbeat reply.
  EXPECT_NE(feed(e, R"("pong")").kind, FrameKind::kPong);
  EXPECT_NE(feed(e, "pong ").kind, FrameKind::kPong);
  EXPECT_EQ(frames_of(e, FrameKind::kPong), 1u);
}

TEST(FrameClassification, ValidJsonWithNoKnownShapeIsUnknown) {
  FeedEngine e;
  EXPECT_EQ(feed(e, R"({"foo":1,"bar":[1,2,{"baz":null}]})").kind, FrameKind::kUnknown);
  EXPECT_EQ(feed(e, "{}").kind, FrameKind::kUnknown);
  EXPECT_EQ(feed(e, R"({"success":false})").kind, FrameKind::kUnknown);
  EXPECT_EQ(frames_of(e, FrameKind::kUnknown), 3u);
  EXPECT_EQ(count_events(drain(e), EventKind::kUnknownFrame), 3u);
}

TEST(FrameClassification, TableFrameWithoutActionOrDataIsUnknown) {
  FeedEngine e;
  EXPECT_EQ(feed(e, R"({"table":"trade","data":[]})").kind, FrameKind::kUnknown);
  EXPECT_EQ(feed(e, R"({"table":"trade","action":"partial"})").kind, FrameKind::kUnknown);
  EXPECT_EQ(feed(e, R"({"table":"trade","action":"upsert","data":[]})").kind, FrameKind::kUnknown);
  EXPECT_EQ(frames_of(e, FrameKind::kUnknown), 3u);
  EXPECT_EQ(frames_of(e, FrameKind::kTable), 0u);
}

TEST(FrameClassification, TextThatIsNotJsonIsMalformed) {
  FeedEngine e;
  EXPECT_EQ(feed(e, "hello").kind, FrameKind::kMalformed);
  EXPECT_EQ(feed(e, R"({"table":"trade",)").kind, FrameKind::kMalformed);
  EXPECT_EQ(feed(e, R"({"table":"trade" "action":"insert"})").kind, FrameKind::kMalformed);
  EXPECT_EQ(feed(e, "").kind, FrameKind::kMalformed);
  EXPECT_EQ(frames_of(e, FrameKind::kMalformed), 4u);
  EXPECT_EQ(count_events(drain(e), EventKind::kMalformedFrame), 4u);
}

TEST(FrameClassification, FrameLongerThanTheLimitIsOversizedAndNotParsed) {
  bmx::EngineConfig config;
  config.max_frame_bytes = 64;
  FeedEngine e(config);
  const std::string big = std::string(R"({"info":")") + std::string(100, 'x') + "\"}";
  EXPECT_EQ(feed(e, big).kind, FrameKind::kOversized);
  EXPECT_EQ(frames_of(e, FrameKind::kOversized), 1u);
  EXPECT_EQ(frames_of(e, FrameKind::kInfo), 0u);
  EXPECT_EQ(count_events(drain(e), EventKind::kOversizedFrame), 1u);
  // Exactly at the limit is fine.
  std::string fits = R"({"info":")";
  fits += std::string(64 - fits.size() - 2, 'x') + "\"}";
  ASSERT_EQ(fits.size(), 64u);
  EXPECT_EQ(feed(e, fits).kind, FrameKind::kInfo);
}

TEST(FrameClassification, EveryKindIsCountedSeparately) {
  FeedEngine e;
  for (std::string_view f : {kWelcome, kSubscribeAck, kSubscribeAck, kUnsubscribeAck, kAuthAck,
                             kError, kCancelAllAfter, std::string_view("pong"), kTrade})
    feed(e, f);
  EXPECT_EQ(frames_of(e, FrameKind::kInfo), 1u);
  EXPECT_EQ(frames_of(e, FrameKind::kSubscribe), 2u);
  EXPECT_EQ(frames_of(e, FrameKind::kUnsubscribe), 1u);
  EXPECT_EQ(frames_of(e, FrameKind::kAuth), 1u);
  EXPECT_EQ(frames_of(e, FrameKind::kError), 1u);
  EXPECT_EQ(frames_of(e, FrameKind::kCancelAllAfter), 1u);
  EXPECT_EQ(frames_of(e, FrameKind::kPong), 1u);
  EXPECT_EQ(frames_of(e, FrameKind::kTable), 1u);
  EXPECT_EQ(frames_of(e, FrameKind::kMalformed), 0u);
  EXPECT_EQ(e.frame_count(), 9u);
  EXPECT_EQ(e.stats().bytes, kWelcome.size() + 2 * kSubscribeAck.size() + kUnsubscribeAck.size() +
                                 kAuthAck.size() + kError.size() + kCancelAllAfter.size() + 4 +
                                 kTrade.size());
}

TEST(FrameClassification, ControlFramesLeaveTablesAlone) {
  FeedEngine e;
  feed(e, kTrade);
  for (std::string_view f :
       {kWelcome, kSubscribeAck, kUnsubscribeAck, kAuthAck, kError, kCancelAllAfter})
    feed(e, f);
  ASSERT_NE(e.last_trade("XBTUSD"), nullptr);
  EXPECT_EQ(e.last_trade("XBTUSD")->price, 32187.0);
  EXPECT_EQ(e.stats().rows, 1u);
}

TEST(FrameClassification, NamesOfKindsAreStable) {
  EXPECT_EQ(bmx::to_string(FrameKind::kTable), "table");
  EXPECT_EQ(bmx::to_string(FrameKind::kPong), "pong");
  EXPECT_EQ(bmx::to_string(FrameKind::kOversized), "oversized");
  EXPECT_EQ(bmx::to_string(FrameKind::kCancelAllAfter), "cancelAllAfter");
}

}  // namespace
