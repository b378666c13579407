#include "engine/autograd.h"

#include <algorithm>
#include <atomic>
#include <unordered_map>
#include <unordered_set>

#include "engine/ops.h"

namespace orbit {

namespace {
thread_local bool g_grad_enabled = true;
std::atomic<uint64_t> g_sequence{1};
}  // namespace

bool grad_enabled() { return g_grad_enabled; }
void set_grad_enabled(bool on) { g_grad_enabled = on; }

// ====================================================================== saved tensors

SavedTensor::SavedTensor(const Tensor& t, const char* op) : op_(op) {
  if (!t.defined()) return;
  t_ = t.detach();
  version_ = t.storage()->version();
}

Tensor SavedTensor::get() const {
  if (t_.defined())
    ORBIT_CHECK(t_.storage()->version() == version_, "backward of ", op_,
                ": a tensor saved for the gradient was modified in place after it was saved (version ",
                version_, " at save, ", t_.storage()->version(),
                " now); compute the gradient before modifying it, or use an out-of-place op");
  return t_;
}

// ====================================================================== recording

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!grad_enabled()) return false;
  for (const auto& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

namespace {
std::shared_ptr<Node> gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return nullptr;
  if (t.grad_fn()) return t.grad_fn();
  TensorImpl& impl = t.impl();
  auto acc = impl.grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<Node>();
    acc->name = "AccumulateGrad";
    acc->accumulator = true;
    acc->leaf = t.impl_ptr();
    acc->sequence = g_sequence.fetch_add(1);
    acc->input_shapes = {t.shape()};
    acc->input_dtypes = {t.dtype()};
    impl.grad_accumulator = acc;
  }
  return acc;
}
}  // namespace

void record(const char* name, Tensor& out, const std::vector<Tensor>& inputs,
            Node::BackwardFn backward) {
  if (!any_requires_grad(inputs)) return;
  ORBIT_ASSERT(is_floating(out.dtype()), "op ", name, " recorded an integer output");
  auto node = std::make_shared<Node>();
  node->name = name;
  node->backward = std::move(backward);
  node->next.reserve(inputs.size());
  for (const auto& t : inputs) {
    node->next.push_back({gradient_edge(t)});
    node->input_shapes.push_back(t.defined() ? t.shape() : Shape{});
    node->input_dtypes.push_back(t.defined() ? t.dtype() : DType::F32);
  }
  node->sequence = g_sequence.fetch_add(1);
  out.impl().grad_fn = node;
  out.impl().requires_grad = true;
}

// ====================================================================== backward engine

namespace {

// Nodes reachable from the roots, latest first. Every node's inputs were created before it, so
// this order is topological: a node runs after every node that feeds it a gradient.
std::vector<Node*> topological_order(const std::vector<Node*>& roots) {
  std::vector<Node*> order, stack(roots.begin(), roots.end());
  std::unordered_set<Node*> seen(roots.begin(), roots.end());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    order.push_back(n);
    for (const auto& e : n->next)
      if (e.node && seen.insert(e.node.get()).second) stack.push_back(e.node.get());
  }
  std::sort(order.begin(), order.end(), [](Node* a, Node* b) { return a->sequence > b->sequence; });
  return order;
}

void accumulate(std::unordered_map<Node*, Tensor>& grads, Node* node, const Tensor& g) {
  auto it = grads.find(node);
  if (it == grads.end())
    grads.emplace(node, g);
  else
    it->second = add(it->second, g);
}

// Runs the graph; when `capture` is non-empty, gradients arriving at those nodes are returned and
// leaves' .grad is left untouched.
std::unordered_map<Node*, Tensor> execute(const std::vector<Tensor>& roots,
                                          const std::vector<Tensor>& root_grads, bool retain_graph,
                                          const std::unordered_set<Node*>& capture) {
  ORBIT_CHECK(roots.size() == root_grads.size(), "backward: ", roots.size(), " outputs but ",
              root_grads.size(), " gradients");
  NoGradGuard no_grad;
  std::unordered_map<Node*, Tensor> grads;
  std::vector<std::shared_ptr<Node>> keep_alive;
  std::vector<Node*> root_nodes;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    ORBIT_CHECK(r.requires_grad(), "backward: output ", i, " does not require grad");
    const Tensor& g = root_grads[i];
    ORBIT_CHECK(g.defined() && g.shape() == r.shape(), "backward: gradient for output ", i,
                " has shape ", g.defined() ? shape_str(g.shape()) : "undefined",
                ", expected the output's shape ", shape_str(r.shape()));
    auto node = gradient_edge(r);
    keep_alive.push_back(node);
    root_nodes.push_back(node.get());
    accumulate(grads, node.get(), g.to(r.dtype()));
  }

  std::unordered_map<Node*, Tensor> captured;
  for (Node* node : topological_order(root_nodes)) {
    auto it = grads.find(node);
    if (it == grads.end()) continue;  // no gradient flows through this node
    Tensor g = it->second;
    grads.erase(it);
    if (capture.count(node)) {
      captured[node] = g;
      if (node->accumulator) continue;
    }
    if (node->accumulator) {
      if (!capture.empty()) continue;
      auto leaf = node->leaf.lock();
      if (!leaf) continue;
      Tensor leaf_t(leaf);
      Tensor prev = leaf_t.grad();
      leaf_t.impl().grad = prev.defined() ? add(prev, g).impl_ptr() : g.clone().impl_ptr();
      continue;
    }
    ORBIT_CHECK(!node->released, "backward through the graph a second time: the saved tensors of ",
                node->name, " were freed by the first backward; pass retain_graph = true to it");
    std::vector<Tensor> input_grads = node->backward(g);
    ORBIT_ASSERT(input_grads.size() == node->next.size(), "backward of ", node->name, " returned ",
                 input_grads.size(), " gradients for ", node->next.size(), " inputs");
    for (size_t i = 0; i < input_grads.size(); ++i) {
      const Edge& e = node->next[i];
      if (!e.node || !input_grads[i].defined()) continue;
      const Tensor& gi = input_grads[i];
      ORBIT_ASSERT(gi.shape() == node->input_shapes[i], "backward of ", node->name,
                   " returned a gradient of shape ", shape_str(gi.shape()), " for input ", i,
                   " of shape ", shape_str(node->input_shapes[i]));
      ORBIT_ASSERT(gi.dtype() == node->input_dtypes[i], "backward of ", node->name,
                   " returned a ", dtype_name(gi.dtype()), " gradient for a ",
                   dtype_name(node->input_dtypes[i]), " input ", i);
      accumulate(grads, e.node.get(), gi);
    }
    if (!retain_graph) {
      node->backward = nullptr;
      node->released = true;
    }
  }
  return captured;
}

}  // namespace

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  bool retain_graph) {
  execute(roots, grads, retain_graph, {});
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs, bool retain_graph) {
  std::vector<Tensor> seeds = grad_outputs;
  if (seeds.empty()) {
    for (const auto& o : outputs) {
      ORBIT_CHECK(o.numel() == 1, "grad: an implied gradient needs one-element outputs, got shape ",
                  shape_str(o.shape()), "; pass grad_outputs");
      seeds.push_back(Tensor::ones(o.shape(), o.dtype(), o.device()));
    }
  }
  std::unordered_set<Node*> capture;
  std::vector<std::shared_ptr<Node>> nodes;
  for (const auto& in : inputs) {
    ORBIT_CHECK(in.requires_grad(), "grad: an input does not require grad (", in.str(), ")");
    nodes.push_back(gradient_edge(in));
    capture.insert(nodes.back().get());
  }
  auto captured = execute(outputs, seeds, retain_graph, capture);
  std::vector<Tensor> result;
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto it = captured.find(nodes[i].get());
    result.push_back(it != captured.end() ? it->second
                                          : Tensor::zeros(inputs[i].shape(), inputs[i].dtype(),
                                                          inputs[i].device()));
  }
  return result;
}

}  // namespace orbit
