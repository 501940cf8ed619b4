// A counting global operator new, linked into the binaries that prove "no allocation on the hot
// path" (tests/alloc_tests and bench/bench_engine). Link the bmx_counting_new object library;
// exactly one replacement per binary.
#pragma once

#include <cstdint>

namespace bmx::testing {

// Heap allocations made by any thread since the process started (relaxed reads).
uint64_t allocation_count() noexcept;

}  // namespace bmx::testing
