// Word-wise copies to and from shared memory that other processes read or write concurrently.
//
// Seqlocked data is read while it may be changing; the seqlock tells the reader afterwards whether
// what it copied is whole. For that to be defined behaviour (and visible to ThreadSanitizer, which
// does not model fences) every such access is an atomic access of an aligned 8-byte word, and the
// ordering a seqlock needs comes from the accesses themselves rather than from fences:
//  - the producer's data stores are release stores, so none becomes visible before the store that
//    marked the seqlock (or ring slot) busy;
//  - the reader's data loads are acquire loads, so its closing re-read of the sequence cannot
//    happen before them.
// On x86-64 a release store and an acquire load are each one plain `mov`: this costs nothing over
// memcpy for the sizes that matter here.
//
// One exception, for speed: the producer's copies of row text (its whole words, in ring text
// slots and in the rows region) into state that a seqlock or a busy ring slot covers (copy_words)
// are a plain memcpy in normal builds, after a release fence (open_write). copy_words argues why
// that is sound. Under ThreadSanitizer they stay word-atomic and the fence is left out, so that
// the sanitizer still checks the protocol of every access. Records, book levels, trades, quotes
// and row headers are built in registers and stored word by word (store_word): as cheap as a
// memcpy there, and no argument needed.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__SANITIZE_THREAD__)
#define BMX_SHM_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define BMX_SHM_TSAN 1
#endif
#endif
#ifndef BMX_SHM_TSAN
#define BMX_SHM_TSAN 0
#endif

namespace bmx::shm {

// An 8-byte word of shared state whose bytes are also read and written as the fields of the
// structs in layout.hpp (records, levels, rows): accesses through it may alias any type, so that
// type-based alias analysis never reorders them against those fields' own accesses. The atomic
// builtins are what std::atomic_ref uses; they take the attribute where a template would drop it.
using Word = uint64_t __attribute__((may_alias));

// Stores `words` 8-byte words from `src` (private memory) into `dst` (shared). Both aligned to 8.
inline void store_words(void* dst, const void* src, size_t words) noexcept {
  auto* d = static_cast<Word*>(dst);
  const auto* s = static_cast<const unsigned char*>(src);
  for (size_t i = 0; i < words; ++i) {
    uint64_t w;
    std::memcpy(&w, s + 8 * i, 8);
    __atomic_store_n(d + i, w, __ATOMIC_RELEASE);
  }
}

// Stores one 8-byte word into shared memory: store_words for a value held in a register. The
// producer's hot paths build their records and levels this way, word by word, rather than as a
// struct in private memory copied whole: a copy whose loads are wider than the stores that just
// built the struct cannot take those stores' data from the store buffer (a failed store forward
// waits until they have reached the cache, ~a dozen cycles each time).
inline void store_word(void* dst, uint64_t w) noexcept {
  __atomic_store_n(static_cast<Word*>(dst), w, __ATOMIC_RELEASE);
}

// The last `n` (0 < n < 8) bytes of the `total` bytes at `end - total`, zero-extended into one
// little-endian word, assembled in registers (see store_word for why not in a buffer).
inline uint64_t tail_word(const char* end, size_t n, size_t total) noexcept {
  uint64_t w = 0;
  if (total >= 8) {  // one load of the 8 bytes that end at `end`, the n wanted shifted down
    std::memcpy(&w, end - 8, 8);
    return w >> (8 * (8 - n));
  }
  const char* p = end - n;
  for (size_t i = 0; i < n; ++i)
    w |= uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return w;
}

// Loads `words` 8-byte words from `src` (shared, possibly read-only) into `dst` (private).
inline void load_words(void* dst, const void* src, size_t words) noexcept {
  auto* d = static_cast<unsigned char*>(dst);
  const auto* s = static_cast<const Word*>(src);  // an atomic load never writes: read-only is fine
  for (size_t i = 0; i < words; ++i) {
    const uint64_t w = __atomic_load_n(s + i, __ATOMIC_ACQUIRE);
    std::memcpy(d + 8 * i, &w, 8);
  }
}

// After the relaxed store that marks a seqlock odd or a ring slot busy: keeps the plain stores of
// copy_words after it (see copy_words). On x86 this emits no instruction: it only
// keeps the compiler from hoisting a store above the mark. TSan does not model fences (GCC warns),
// and under TSan those stores are release stores, which need none.
inline void open_write() noexcept {
#if !BMX_SHM_TSAN
  std::atomic_thread_fence(std::memory_order_release);
#endif
}

// Copies `words` words from `src` (private) into `dst` (shared), no overlap: store_words, for a
// range a seqlock or busy ring slot covers, after open_write() and before the release store that
// closes it.
//
// Normal builds: one memcpy (vectorised; a word loop of atomic stores is not). Why a reader still
// copies whole states only, in this process or another one mapping the segment read-only:
//  - write_begin stores the odd sequence (a ring slot: kBusy) and then issues a release fence
//    (open_write), which keeps every later store after the odd one. The C++ model states that for
//    atomic stores only; for the plain stores of memcpy it holds because GCC and Clang treat the
//    fence as a compiler barrier (no store is hoisted above it) and the CPU keeps the order
//    (below). A reader that copies any byte of the copy therefore sees an odd or newer sequence
//    at its closing re-read.
//  - write_end's release store of the even sequence comes after every byte of the copy (release:
//    no earlier access may pass it). A reader that starts after it sees the whole copy.
//  - The reader's loads are 8-byte acquire loads followed by a re-read of the sequence: it may
//    copy a torn word (memcpy's vector stores need not be word-atomic), but then the sequence has
//    changed and the copy is discarded before anything looks at it.
//  - The hardware keeps it: x86 retires stores in program order (memcpy's `rep movsb` is ordered
//    as a whole with the stores around it; its non-temporal path, taken only far above our sizes,
//    ends with `sfence`); on weaker CPUs the release fence is a store barrier.
// Between threads of one process this is still a data race in the C++ sense (plain stores beside
// the reader's atomic loads), which ThreadSanitizer would rightly report and which defeats its
// check of the protocol: under TSan the copy stays word-atomic release stores.
inline void copy_words(void* dst, const void* src, size_t words) noexcept {
#if BMX_SHM_TSAN
  store_words(dst, src, words);
#else
  std::memcpy(dst, src, words * 8);
#endif
}

// Seqlock helpers. Writer: begin (odd), change with store_words/copy_words, end (even).
// Reader: s = read_begin (even, else retry), copy with load_words, read_valid(s).
inline void write_begin(std::atomic<uint64_t>& seq) noexcept {
  seq.store(seq.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  open_write();
}
inline void write_end(std::atomic<uint64_t>& seq) noexcept {
  seq.store(seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}
inline uint64_t read_begin(const std::atomic<uint64_t>& seq) noexcept {
  return seq.load(std::memory_order_acquire);
}
inline bool read_valid(const std::atomic<uint64_t>& seq, uint64_t begun) noexcept {
  return (begun & 1) == 0 && seq.load(std::memory_order_relaxed) == begun;
}

// Ring slots: after copying a slot whose sequence read `seq`, true when it still does.
inline bool slot_unchanged(const std::atomic<uint64_t>& slot_seq, uint64_t seq) noexcept {
  return slot_seq.load(std::memory_order_relaxed) == seq;
}

}  // namespace bmx::shm
