// Reverse-mode automatic differentiation.
//
// Every differentiable op that sees an input requiring a gradient records a Node: the op's name, the
// edges to the nodes of its inputs, and a backward function that maps the gradient of the output to
// the gradients of the inputs. Backward functions are written once, in terms of ops (engine/ops.h),
// so they run on whatever backend the tensors live on.
//
// Tensors that a backward function needs are kept as SavedTensor: a storage-sharing alias without
// history (so an output saved by its own node makes no reference cycle) plus the storage version at
// save time, so that an in-place write between forward and backward is reported instead of
// silently producing a wrong gradient.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace orbit {

// ------------------------------------------------------------------ grad mode
bool grad_enabled();
void set_grad_enabled(bool on);

// Disables recording for its lifetime (inference, optimizer updates, metrics).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// ------------------------------------------------------------------ saved tensors
class SavedTensor {
 public:
  SavedTensor() = default;
  explicit SavedTensor(const Tensor& t, const char* op = "");
  // The saved value; throws if its storage was modified in place after it was saved.
  Tensor get() const;
  bool defined() const { return t_.defined(); }
  void reset() { t_ = Tensor(); }

 private:
  Tensor t_;
  uint64_t version_ = 0;
  const char* op_ = "";
};

// ------------------------------------------------------------------ graph
struct Edge {
  std::shared_ptr<Node> node;  // null: the input needs no gradient
};

struct Node {
  using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

  std::string name;
  std::vector<Edge> next;          // one per input of the op
  std::vector<Shape> input_shapes;  // to check the shapes that backward returns
  std::vector<DType> input_dtypes;
  BackwardFn backward;             // empty once released
  uint64_t sequence = 0;           // creation order: later nodes run first
  bool released = false;

  // Leaf accumulators (accumulator == true) add their incoming gradient to the leaf's .grad.
  bool accumulator = false;
  std::weak_ptr<TensorImpl> leaf;
};

// True when grad mode is on and any input requires a gradient.
bool any_requires_grad(const std::vector<Tensor>& inputs);

// Records the op that produced `out` from `inputs` when grad mode is on and an input requires a
// gradient; then out.requires_grad() is true. `backward` returns one gradient per input (an
// undefined Tensor where an input gets none), each of the input's shape.
void record(const char* name, Tensor& out, const std::vector<Tensor>& inputs,
            Node::BackwardFn backward);

// Runs backward from `roots` with the given gradients (engine of Tensor::backward).
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  bool retain_graph);

// Gradients of `outputs` (seeded with `grad_outputs`) with respect to `inputs`, returned instead of
// accumulated into .grad (used by gradient checks and regularizers that need dR/dx).
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs = {}, bool retain_graph = false);

}  // namespace orbit
