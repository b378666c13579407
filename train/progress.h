// A progress bar for long loops: count, rate, ETA and a few named values (loss, accuracy).
// On a terminal it redraws one line (at most 10 times a second); otherwise (CI logs, files) it
// prints a plain line every 10% so logs stay short.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace orbit {

class ProgressBar {
 public:
  // `unit` names what is counted ("batch", "img"); `total` may be 0 when unknown.
  ProgressBar(std::string label, int64_t total, std::string unit = "it", FILE* out = stderr);
  ~ProgressBar();

  // Advances by n and updates the shown values (name -> formatted value).
  void update(int64_t n = 1, const std::vector<std::pair<std::string, std::string>>& values = {});
  // Prints the final line (called by the destructor if not called before).
  void finish();

  // Extra count used for the rate, e.g. images when the bar counts batches.
  void set_rate_scale(double items_per_step, std::string rate_unit);
  // Counts the rate and ETA from `start` (before this bar was made: a bar shown once a loop turns out
  // to be long), not from the construction.
  void set_start(std::chrono::steady_clock::time_point start) { start_ = start; }

  static std::string format_duration(double seconds);  // "1:02:03", "4:05"
  static std::string fixed(double value, int decimals);  // "0.4123"

 private:
  void draw(bool final_line);

  std::string label_, unit_, rate_unit_;
  int64_t total_, done_ = 0;
  double rate_scale_ = 1.0;
  FILE* out_;
  bool tty_, finished_ = false;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point start_, last_draw_;
  std::vector<std::pair<std::string, std::string>> values_;
};

// A callback for a load told (done, total) after each item (data::LoadProgress): once the load has
// taken `after_seconds` (counted from this call) with items still to come, it shows a bar labelled
// `label` counting `unit` (its rate and ETA from that same start), finished when done reaches total.
// A quicker load shows nothing. Copies share the bar. After a Ctrl-C (train/interrupt.h) it throws
// Interrupted, so a long load stops at the next item.
std::function<void(int64_t, int64_t)> load_progress(std::string label, double after_seconds = 2.0,
                                                    std::string unit = "img", FILE* out = stderr);

// The pace of a loop of long runs, for its per-run line: " (3 made in 4:05; about 9:30 for the 7 left
// at that pace<aside>)", or "" before the first run is made or when none is left.
std::string pace_note(int64_t made, double made_seconds, int64_t to_make, const std::string& aside = "");

}  // namespace orbit
