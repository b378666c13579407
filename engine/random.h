// The engine's one seedable random generator (xoshiro256**), used for initialization, shuffling,
// dropout and augmentation, so that a run is reproducible bit for bit for a given seed, machine and
// thread count. Its whole state is four words plus a cached normal, so checkpoints can store it.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace orbit {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0x5eed) { seed_(seed); }
  void seed_(uint64_t seed);
  uint64_t next_u64();
  double next_double();  // uniform [0, 1) with 53 random bits
  float next_float();    // uniform [0, 1) with 24 random bits
  double normal();       // standard normal (Box-Muller)
  int64_t randint(int64_t n);  // uniform in [0, n), unbiased
  // A uniformly random permutation of [0, n) (Fisher-Yates).
  std::vector<int64_t> permutation(int64_t n);

  struct State {
    std::array<uint64_t, 4> s;
    bool has_spare;
    double spare;
  };
  State state() const { return {s_, has_spare_, spare_}; }
  void set_state(const State& st) {
    s_ = st.s;
    has_spare_ = st.has_spare;
    spare_ = st.spare;
  }

 private:
  std::array<uint64_t, 4> s_{};
  bool has_spare_ = false;
  double spare_ = 0.0;
};

// The process-wide default generator (used when an API takes a null Generator*).
Generator& default_generator();
// Seeds the default generator.
void manual_seed(uint64_t seed);

}  // namespace orbit
