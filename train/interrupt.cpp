#include "train/interrupt.h"

#include <unistd.h>

#include <csignal>

namespace orbit {

namespace {
volatile std::sig_atomic_t g_requested = 0;

extern "C" void on_stop_signal(int) {
  // Only async-signal-safe calls here: a flag and write(2). SA_RESETHAND has already restored the
  // default action, so a second signal ends the process.
  g_requested = 1;
  static const char kMessage[] =
      "\norbit: stopping at the next batch (a run keeps the checkpoint of its last finished epoch, which the same "
      "command resumes from); Ctrl-C again stops at once\n";
  const ssize_t ignored = ::write(STDERR_FILENO, kMessage, sizeof kMessage - 1);
  (void)ignored;
}
}  // namespace

void install_interrupt_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND | SA_RESTART;
  for (int sig : {SIGINT, SIGTERM}) {
    // A signal the parent set to be ignored (a shell script's background job ignores SIGINT) stays
    // ignored, as the shell meant it.
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
    ::sigaction(sig, &sa, nullptr);
  }
}

std::string kept_after_interrupt(const std::string& checkpoint_path, int64_t epochs_done) {
  if (epochs_done <= 0) return "no epoch had finished, so nothing was saved; the same command starts the run again";
  return str_cat("its checkpoint after epoch ", epochs_done, " is kept (", checkpoint_path,
                 "); the same command resumes from it");
}

void stop_if_interrupted(int64_t epoch, int64_t epochs, const std::string& out_dir, const std::string& checkpoint_path) {
  if (!interrupt_requested()) return;
  throw Interrupted(str_cat("interrupted in epoch ", epoch + 1, "/", epochs, " of ", out_dir, "; ",
                            kept_after_interrupt(checkpoint_path, epoch)));
}

void stop_evaluation_if_interrupted(const std::string& dataset) {
  if (interrupt_requested()) throw Interrupted(str_cat("interrupted while evaluating on ", dataset));
}

bool interrupt_requested() { return g_requested != 0; }
void request_interrupt() { g_requested = 1; }
void clear_interrupt() { g_requested = 0; }

}  // namespace orbit
