// The progress bar and the pace lines of long loops: what a log (not a terminal) receives.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "train/interrupt.h"
#include "train/progress.h"

namespace orbit {
namespace {

// Everything written to `f` so far, split into lines.
std::vector<std::string> lines_of(FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::vector<std::string> lines;
  std::string cur;
  for (int c = std::fgetc(f); c != EOF; c = std::fgetc(f)) {
    if (c == '\n') {
      lines.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(static_cast<char>(c));
    }
  }
  if (!cur.empty()) lines.push_back(cur);
  return lines;
}

TEST(Progress, FormatDuration) {
  EXPECT_EQ(ProgressBar::format_duration(0), "0:00");
  EXPECT_EQ(ProgressBar::format_duration(65), "1:05");
  EXPECT_EQ(ProgressBar::format_duration(59.6), "1:00");  // rounded to the second
  EXPECT_EQ(ProgressBar::format_duration(3723), "1:02:03");
  EXPECT_EQ(ProgressBar::format_duration(-1), "?");
  EXPECT_EQ(ProgressBar::format_duration(std::nan("")), "?");
}

TEST(Progress, PaceNote) {
  EXPECT_EQ(pace_note(0, 0, 5), "");  // nothing made yet: no pace to go by
  EXPECT_EQ(pace_note(2, 120, 5), " (2 made in 2:00; about 3:00 for the 3 left at that pace)");
  EXPECT_EQ(pace_note(1, 30, 3, ", cross-validation aside"), " (1 made in 0:30; about 1:00 for the 2 left at that pace, cross-validation aside)");
  EXPECT_EQ(pace_note(5, 100, 5), "");  // none left
}

// Not a terminal: a plain line at each tenth of the way (so a log stays short), each with its ETA, and
// a closing line with the elapsed time instead.
TEST(Progress, ALogGetsATenthOfTheWayPerLine) {
  FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressBar bar("epoch 1/2", 20, "batch", f);
    for (int i = 0; i < 20; ++i) bar.update(1, {{"loss", ProgressBar::fixed(0.5, 4)}});
  }  // the destructor prints the closing line
  const std::vector<std::string> lines = lines_of(f);
  std::fclose(f);
  ASSERT_EQ(lines.size(), 11u);
  EXPECT_EQ(lines[0].rfind("epoch 1/2 [", 0), 0u) << lines[0];
  EXPECT_NE(lines[0].find("] 1/20 batch"), std::string::npos) << lines[0];
  EXPECT_NE(lines[9].find("] 18/20 batch"), std::string::npos) << lines[9];
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_NE(lines[i].find("  ETA "), std::string::npos) << lines[i];
    EXPECT_NE(lines[i].find("  loss 0.5000"), std::string::npos) << lines[i];
  }
  EXPECT_NE(lines[10].find("[========================] 20/20 batch"), std::string::npos) << lines[10];
  EXPECT_EQ(lines[10].find("ETA"), std::string::npos) << lines[10];
  EXPECT_NE(lines[10].find(" batch/s"), std::string::npos) << lines[10];
}

TEST(Progress, UnknownTotalCountsWithoutABar) {
  FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressBar bar("reading", 0, "file", f);
    bar.set_rate_scale(100, "img");
    for (int i = 0; i < 5; ++i) bar.update();
    bar.finish();
    bar.finish();  // a second finish prints nothing more
  }
  const std::vector<std::string> lines = lines_of(f);
  std::fclose(f);
  ASSERT_EQ(lines.size(), 1u);  // no tenths without a total: only the closing line
  EXPECT_EQ(lines[0].rfind("reading 5 file  ", 0), 0u) << lines[0];
  EXPECT_NE(lines[0].find(" img/s"), std::string::npos) << lines[0];
  EXPECT_EQ(lines[0].find('['), std::string::npos) << lines[0];
}

// A load's callback: nothing for a quick load; for a long one the same tenth-of-the-way lines as a bar,
// finished (closing line with the elapsed time) when the last item is told, not when it is destroyed.
// "Quick" is timed; the two cases take the extremes (never long, long at once) so the test does not
// depend on the machine's speed.
TEST(Progress, LoadProgressShowsLongLoadsOnly) {
  FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    auto quick = load_progress("read quick", 1e9, "img", f);
    for (int64_t i = 1; i <= 99; ++i) quick(i, 99);
  }
  EXPECT_TRUE(lines_of(f).empty());
  auto slow = load_progress("read folder:x/train", 0.0, "img", f);
  auto copy = slow;  // copies share one bar
  for (int64_t i = 1; i <= 200; ++i) (i % 2 ? slow : copy)(i, 200);
  const std::vector<std::string> lines = lines_of(f);
  std::fclose(f);
  ASSERT_EQ(lines.size(), 11u);
  EXPECT_EQ(lines[0].rfind("read folder:x/train [", 0), 0u) << lines[0];
  EXPECT_NE(lines[0].find("] 1/200 img"), std::string::npos) << lines[0];
  EXPECT_NE(lines[5].find("] 100/200 img"), std::string::npos) << lines[5];
  EXPECT_NE(lines[10].find("[========================] 200/200 img"), std::string::npos) << lines[10];
  EXPECT_EQ(lines[10].find("ETA"), std::string::npos) << lines[10];
}

// After a Ctrl-C (here asked for without a signal) a load stops at its next item.
TEST(Progress, LoadProgressStopsWhenInterrupted) {
  auto progress = load_progress("read folder:x/train", 1e9);
  progress(1, 10);
  request_interrupt();
  EXPECT_THROW(progress(2, 10), Interrupted);
  clear_interrupt();
  progress(3, 10);
}

}  // namespace
}  // namespace orbit
