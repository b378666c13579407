#include "engine/parallel.h"

#include "engine/error.h"

namespace orbit {

int num_threads() { return omp_get_max_threads(); }

void set_num_threads(int n) {
  ORBIT_CHECK(n >= 1, "set_num_threads: expected at least 1 thread, got ", n);
  omp_set_num_threads(n);
}

}  // namespace orbit
