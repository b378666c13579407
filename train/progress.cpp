#include "train/progress.h"

#include <unistd.h>

#include <cmath>
#include <memory>

#include "train/interrupt.h"

namespace orbit {

ProgressBar::ProgressBar(std::string label, int64_t total, std::string unit, FILE* out)
    : label_(std::move(label)), unit_(std::move(unit)), rate_unit_(unit_), total_(total), out_(out) {
  tty_ = isatty(fileno(out_));
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

ProgressBar::~ProgressBar() {
  if (!finished_) finish();
}

void ProgressBar::set_rate_scale(double items_per_step, std::string rate_unit) {
  rate_scale_ = items_per_step;
  rate_unit_ = std::move(rate_unit);
}

std::string ProgressBar::format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const long t = static_cast<long>(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  return buf;
}

std::string ProgressBar::fixed(double value, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  return buf;
}

void ProgressBar::update(int64_t n, const std::vector<std::pair<std::string, std::string>>& values) {
  done_ += n;
  if (!values.empty()) values_ = values;
  const auto now = std::chrono::steady_clock::now();
  if (tty_) {
    if (std::chrono::duration<double>(now - last_draw_).count() >= 0.1 || (total_ > 0 && done_ >= total_)) {
      last_draw_ = now;
      draw(false);
    }
  } else if (total_ > 0) {
    const int decile = static_cast<int>(10 * done_ / total_);
    if (decile != last_decile_ && decile < 10) {
      last_decile_ = decile;
      draw(false);
    }
  }
}

void ProgressBar::finish() {
  if (finished_) return;
  finished_ = true;
  draw(true);
}

void ProgressBar::draw(bool final_line) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0 ? done_ * rate_scale_ / elapsed : 0.0;
  std::string line = label_ + " ";
  if (total_ > 0) {
    const int width = 24;
    const int filled = static_cast<int>(width * std::min<double>(1.0, static_cast<double>(done_) / total_));
    line += "[" + std::string(filled, '=') + (filled < width ? ">" : "") +
            std::string(width - filled - (filled < width ? 1 : 0), ' ') + "] ";
    line += std::to_string(done_) + "/" + std::to_string(total_) + " " + unit_;
  } else {
    line += std::to_string(done_) + " " + unit_;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "  %.1f %s/s", rate, rate_unit_.c_str());
  line += buf;
  for (const auto& [k, v] : values_) line += "  " + k + " " + v;
  if (final_line)
    line += "  " + format_duration(elapsed);
  else if (total_ > 0 && done_ > 0)
    line += "  ETA " + format_duration(elapsed / done_ * (total_ - done_));
  if (tty_)
    std::fprintf(out_, "\r\033[K%s%s", line.c_str(), final_line ? "\n" : "");
  else
    std::fprintf(out_, "%s\n", line.c_str());
  std::fflush(out_);
}

std::function<void(int64_t, int64_t)> load_progress(std::string label, double after_seconds, std::string unit,
                                                    FILE* out) {
  struct State {
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    std::unique_ptr<ProgressBar> bar;
    int64_t shown = 0;  // the count the bar has been told
  };
  auto state = std::make_shared<State>();
  return [state, label = std::move(label), unit = std::move(unit), after_seconds, out](int64_t done, int64_t total) {
    if (interrupt_requested()) throw Interrupted(str_cat("interrupted at ", done, "/", total, " (", label, ")"));
    if (!state->bar) {
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - state->start).count();
      if (done >= total || waited < after_seconds) return;
      state->bar = std::make_unique<ProgressBar>(label, total, unit, out);
      state->bar->set_start(state->start);
    }
    state->bar->update(done - state->shown);
    state->shown = done;
    if (done >= total) state->bar->finish();
  };
}

std::string pace_note(int64_t made, double made_seconds, int64_t to_make, const std::string& aside) {
  if (made <= 0 || to_make <= made) return "";
  return " (" + std::to_string(made) + " made in " + ProgressBar::format_duration(made_seconds) + "; about " +
         ProgressBar::format_duration(made_seconds / static_cast<double>(made) * static_cast<double>(to_make - made)) +
         " for the " + std::to_string(to_make - made) + " left at that pace" + aside + ")";
}

}  // namespace orbit
