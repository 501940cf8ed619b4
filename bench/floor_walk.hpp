// The floor the engine is measured against: a plain simdjson On-Demand walk that reads every
// field of every row of a frame (keys unescaped, strings, numbers as their type, booleans, nulls)
// and does nothing else. Shared by bench_engine and delta_counts so both measure the same floor.
//
// Everything is in an anonymous namespace on purpose: with external linkage GCC stops optimising
// the recursive walk and the floor runs about twice as slow.
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <string_view>

#include "engine/capture.hpp"

namespace {

namespace floor_od = simdjson::ondemand;

struct Sink {
  uint64_t n = 0;
  double x = 0;
};

// At the start of a page, like bench_engine's floor_pass: code elsewhere in the binary must not
// move the floor (see floor_pass).
[[gnu::aligned(4096)]] simdjson::error_code walk(floor_od::value v, Sink& sink) noexcept {
  floor_od::json_type type;
  if (auto e = v.type().get(type)) return e;
  switch (type) {
    case floor_od::json_type::object: {
      floor_od::object obj;
      if (auto e = v.get_object().get(obj)) return e;
      for (auto field_result : obj) {
        floor_od::field field;
        if (auto e = std::move(field_result).get(field)) return e;
        std::string_view key;
        if (auto e = field.unescaped_key().get(key)) return e;
        sink.n += key.size();
        if (auto e = walk(field.value(), sink)) return e;
      }
      return simdjson::SUCCESS;
    }
    case floor_od::json_type::array: {
      floor_od::array arr;
      if (auto e = v.get_array().get(arr)) return e;
      for (auto element_result : arr) {
        floor_od::value element;
        if (auto e = std::move(element_result).get(element)) return e;
        if (auto e = walk(element, sink)) return e;
      }
      return simdjson::SUCCESS;
    }
    case floor_od::json_type::string: {
      std::string_view s;
      if (auto e = v.get_string().get(s)) return e;
      sink.n += s.size();
      return simdjson::SUCCESS;
    }
    case floor_od::json_type::number: {
      floor_od::number num;
      if (auto e = v.get_number().get(num)) return e;
      switch (num.get_number_type()) {
        case floor_od::number_type::signed_integer:
          sink.n += static_cast<uint64_t>(num.get_int64());
          break;
        case floor_od::number_type::unsigned_integer:
          sink.n += num.get_uint64();
          break;
        case floor_od::number_type::floating_point_number:
          sink.x += num.get_double();
          break;
      }
      return simdjson::SUCCESS;
    }
    case floor_od::json_type::boolean: {
      bool b = false;
      if (auto e = v.get_bool().get(b)) return e;
      sink.n += b;
      return simdjson::SUCCESS;
    }
    case floor_od::json_type::null: {
      bool is_null = false;
      if (auto e = v.is_null().get(is_null)) return e;
      sink.n += is_null;
      return simdjson::SUCCESS;
    }
  }
  return simdjson::INCORRECT_TYPE;
}

[[nodiscard]] bool walk_frame(floor_od::parser& parser, const bmx::Capture& cap,
                              const bmx::CapturedFrame& f, Sink& sink) noexcept {
  floor_od::document doc;
  floor_od::value root;
  if (parser.iterate(simdjson::padded_string_view(f.data, f.len, cap.capacity(f))).get(doc) ||
      doc.get_value().get(root)) {
    return false;
  }
  return walk(root, sink) == simdjson::SUCCESS;
}

}  // namespace
