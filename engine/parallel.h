// Thread control and a static parallel-for over OpenMP. Work is split into equal contiguous chunks
// per thread, so results are deterministic for a given thread count.
#pragma once

#include <algorithm>
#include <cstdint>

#include <omp.h>

namespace orbit {

// Number of threads the engine uses (default: OpenMP's default, usually the number of cores).
int num_threads();
void set_num_threads(int n);

// Calls f(chunk_begin, chunk_end) over [begin, end) split across threads; runs inline when the range
// is at most `grain` long, when one thread is configured, or inside another parallel region.
template <class F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
  const int64_t n = end - begin;
  if (n <= 0) return;
  const int nt = omp_in_parallel() ? 1 : static_cast<int>(std::min<int64_t>(num_threads(), (n + grain - 1) / std::max<int64_t>(grain, 1)));
  if (nt <= 1) {
    f(begin, end);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
    const int64_t chunk = (n + T - 1) / T;
    const int64_t b = begin + t * chunk, e = std::min(end, b + chunk);
    if (b < e) f(b, e);
  }
}

}  // namespace orbit
