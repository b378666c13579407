// Stopping a long command cleanly: the first Ctrl-C (SIGINT) or SIGTERM asks the training and evaluation
// loops to stop at their next batch, where they throw Interrupted naming what was kept (the checkpoint of
// the last finished epoch, which the same command resumes from); a second signal ends the process at
// once, as without the handler. Nothing is saved mid-epoch: a checkpoint holds whole epochs, so that a
// resumed run ends with the same weights as an uninterrupted one.
#pragma once

#include <cstdint>
#include <string>

#include "engine/error.h"

namespace orbit {

// What a loop throws when asked to stop; the CLI prints it and exits with 130 (128 + SIGINT).
class Interrupted : public Error {
 public:
  explicit Interrupted(const std::string& what) : Error(what) {}
};

// What an interrupted run keeps, for the message: "its checkpoint after epoch K is kept (PATH); the same
// command resumes from it", or that nothing was saved when no epoch had finished.
std::string kept_after_interrupt(const std::string& checkpoint_path, int64_t epochs_done);

// Throws Interrupted when a stop was asked for during epoch `epoch` (0-based) of `epochs` of the run in
// `out_dir`, naming the checkpoint kept (kept_after_interrupt); the training loops call it per batch.
void stop_if_interrupted(int64_t epoch, int64_t epochs, const std::string& out_dir, const std::string& checkpoint_path);
// Throws Interrupted ("interrupted while evaluating on DATASET") when a stop was asked for; the
// evaluation loops call it per batch, and the run that evaluates adds what it kept.
void stop_evaluation_if_interrupted(const std::string& dataset);

// Installs the handler for SIGINT and SIGTERM (the CLI does, for the commands that train or evaluate),
// except for a signal the process inherited as ignored. Without it the signals end the process as usual
// and interrupt_requested() stays false.
void install_interrupt_handler();
// Whether a stop was asked for since the handler was installed (or request_interrupt was called).
bool interrupt_requested();
// Asks for a stop as the signal does, and withdraws the request (for tests, without signals).
void request_interrupt();
void clear_interrupt();

}  // namespace orbit
