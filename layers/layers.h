// The standard layers, with PyTorch's constructor arguments, defaults, parameter / buffer names,
// default initialization and repr:
//   Conv2d, Linear, BatchNorm1d, BatchNorm2d, ReLU, SiLU, GELU, Sigmoid, Tanh, MaxPool2d, AvgPool2d,
//   AdaptiveAvgPool2d, Dropout, StochasticDepth (torchvision.ops), Flatten, Identity, and the containers Sequential and ModuleList.
// Random initialization draws from the Generator passed to the constructor (the engine's default
// generator when null), so a model built after manual_seed(s) is the same on every run.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/ops.h"
#include "engine/random.h"
#include "layers/module.h"

namespace orbit {

// ====================================================================== convolution (conv.cpp)

struct Conv2dOptions {
  int64_t in_channels = 0, out_channels = 0;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
  bool bias = true;
  ConvPadding padding_mode = ConvPadding::Zeros;
};

// weight [out, in / groups, kh, kw] and bias [out]; both from U(-1/sqrt(fan_in), 1/sqrt(fan_in))
// (kaiming_uniform_(a = sqrt 5) for the weight). Input [N, C, H, W] or unbatched [C, H, W].
class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride = 1,
         int64_t padding = 0, int64_t dilation = 1, int64_t groups = 1, bool bias = true,
         ConvPadding padding_mode = ConvPadding::Zeros, Generator* gen = nullptr);
  explicit Conv2d(const Conv2dOptions& options, Generator* gen = nullptr);

  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  void reset_parameters(Generator* gen = nullptr);
  const Conv2dOptions& options() const { return opt_; }

  Tensor weight;
  Tensor bias;  // undefined when bias = false

 private:
  Conv2dOptions opt_;
};

// ====================================================================== linear (linear.cpp)

// weight [out, in], bias [out], initialized as Conv2d. Input [..., in].
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  void reset_parameters(Generator* gen = nullptr);
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

  Tensor weight;
  Tensor bias;

 private:
  int64_t in_, out_;
};

// ====================================================================== normalization (norm.cpp)

// Shared by BatchNorm1d / BatchNorm2d. Parameters weight (ones) and bias (zeros) when affine;
// buffers running_mean (zeros), running_var (ones) and num_batches_tracked (int64 0) when
// track_running_stats. momentum nullopt means a cumulative average (factor 1 / num_batches_tracked).
//
// In training mode the batch statistics normalize the input and update the running ones
// (running_var with the unbiased variance), and num_batches_tracked counts the batches, as PyTorch.
// In eval mode the running statistics are used. freeze() selects the frozen mode used when
// fine-tuning with small batches: the running statistics are used and left unchanged (and
// num_batches_tracked is not incremented) even in training mode; weight and bias still train unless
// their requires_grad is turned off (set_requires_grad).
class BatchNorm : public Module {
 public:
  void freeze(bool on = true);
  bool is_frozen() const { return frozen_; }
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  void reset_running_stats();
  void reset_parameters();

  int64_t num_features() const { return num_features_; }
  double eps() const { return eps_; }
  std::optional<double> momentum() const { return momentum_; }
  bool affine() const { return affine_; }
  bool track_running_stats() const { return track_; }

  Tensor weight, bias;                                   // undefined unless affine
  Tensor running_mean, running_var, num_batches_tracked;  // undefined unless track_running_stats

 protected:
  BatchNorm(const char* name, int64_t num_features, double eps, std::optional<double> momentum, bool affine,
            bool track_running_stats);
  virtual void check_input(const Tensor& x) const = 0;

 private:
  int64_t num_features_;
  double eps_;
  std::optional<double> momentum_;
  bool affine_, track_, frozen_ = false;
};

// Input [N, C] or [N, C, L].
class BatchNorm1d : public BatchNorm {
 public:
  explicit BatchNorm1d(int64_t num_features, double eps = 1e-5, std::optional<double> momentum = 0.1,
                       bool affine = true, bool track_running_stats = true);

 protected:
  void check_input(const Tensor& x) const override;
};

// Input [N, C, H, W].
class BatchNorm2d : public BatchNorm {
 public:
  explicit BatchNorm2d(int64_t num_features, double eps = 1e-5, std::optional<double> momentum = 0.1,
                       bool affine = true, bool track_running_stats = true);

 protected:
  void check_input(const Tensor& x) const override;
};

// ====================================================================== activations (activation.cpp)
// `inplace` is accepted for signature and repr parity with PyTorch models (torchvision's ResNet
// prints ReLU(inplace=True)); the computation is always out of place, with the same result.

class ReLU : public Module {
 public:
  explicit ReLU(bool inplace = false);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

 private:
  bool inplace_;
};

class SiLU : public Module {
 public:
  explicit SiLU(bool inplace = false);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

 private:
  bool inplace_;
};

// approximate: "none" (exact erf form) or "tanh".
class GELU : public Module {
 public:
  explicit GELU(const std::string& approximate = "none");
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

 private:
  std::string approximate_;
};

class Sigmoid : public Module {
 public:
  Sigmoid();
  Tensor forward(const Tensor& x) override;
};

class Tanh : public Module {
 public:
  Tanh();
  Tensor forward(const Tensor& x) override;
};

// ====================================================================== pooling (pool.cpp)
// Square windows print as ints and non-square ones as tuples, matching the repr of a PyTorch layer
// built from ints resp. tuples.

class MaxPool2d : public Module {
 public:
  // stride 0 (PyTorch's None) means stride = kernel_size.
  MaxPool2d(int64_t kernel_size, int64_t stride = 0, int64_t padding = 0, int64_t dilation = 1,
            bool ceil_mode = false);
  explicit MaxPool2d(const Pool2dParams& params);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  const Pool2dParams& params() const { return p_; }

 private:
  Pool2dParams p_;
};

class AvgPool2d : public Module {
 public:
  AvgPool2d(int64_t kernel_size, int64_t stride = 0, int64_t padding = 0, bool ceil_mode = false,
            bool count_include_pad = true);
  explicit AvgPool2d(const Pool2dParams& params);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  const Pool2dParams& params() const { return p_; }

 private:
  Pool2dParams p_;
};

class AdaptiveAvgPool2d : public Module {
 public:
  explicit AdaptiveAvgPool2d(int64_t output_size);  // square; repr "output_size=1"
  AdaptiveAvgPool2d(int64_t out_h, int64_t out_w);   // repr "output_size=(1, 1)"
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

 private:
  int64_t out_h_, out_w_;
  bool as_int_;
};

// ====================================================================== others (misc.cpp)

// Zeroes elements with probability p in training mode (scaling the rest by 1 / (1 - p)); the
// identity in eval mode. Draws from `gen` (the default generator when null), which must outlive
// the layer.
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5, bool inplace = false, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  double p() const { return p_; }
  void set_generator(Generator* gen) { gen_ = gen; }

 private:
  double p_;
  bool inplace_;
  Generator* gen_;
};

// torchvision.ops.StochasticDepth: in training mode, zeroes whole rows (mode "row": each sample of
// the batch) or the whole input (mode "batch") with probability p and scales the rest by 1 / (1 - p);
// the identity in eval mode or at p = 0. Used on the residual branch of EfficientNet's MBConv.
// Draws from `gen` (the default generator when null), which must outlive the layer.
class StochasticDepth : public Module {
 public:
  explicit StochasticDepth(double p, const std::string& mode = "row", Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  double p() const { return p_; }
  void set_generator(Generator* gen) { gen_ = gen; }

 private:
  double p_;
  std::string mode_;
  Generator* gen_;
};

class Flatten : public Module {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

 private:
  int64_t start_, end_;
};

class Identity : public Module {
 public:
  Identity();
  Tensor forward(const Tensor& x) override { return x; }
};

// ====================================================================== containers (sequential.cpp)

// Applies its children in order. Children added without a name are named by position ("0", "1",
// ...), as torch.nn.Sequential; named children (as from an OrderedDict) keep their names.
class Sequential : public Module {
 public:
  Sequential();
  Sequential(std::initializer_list<std::shared_ptr<Module>> modules);
  explicit Sequential(const std::vector<std::shared_ptr<Module>>& modules);

  template <class M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
    return push_back(std::to_string(modules_.size()), std::move(module));
  }
  template <class M>
  std::shared_ptr<M> push_back(const std::string& name, std::shared_ptr<M> module) {
    register_module(name, module);
    modules_.push_back(module);
    return module;
  }

  Tensor forward(const Tensor& x) override;

  size_t size() const { return modules_.size(); }
  bool empty() const { return modules_.empty(); }
  // Negative indices count from the end, as in Python.
  std::shared_ptr<Module> operator[](int64_t index) const;
  template <class M>
  std::shared_ptr<M> at(int64_t index) const {
    auto m = std::dynamic_pointer_cast<M>((*this)[index]);
    ORBIT_CHECK(m != nullptr, "Sequential: child ", index, " (", (*this)[index]->name(),
                ") is not of the requested type");
    return m;
  }
  std::vector<std::shared_ptr<Module>>::const_iterator begin() const { return modules_.begin(); }
  std::vector<std::shared_ptr<Module>>::const_iterator end() const { return modules_.end(); }

 protected:
  explicit Sequential(const char* name) : Module(name) {}
  void set_child(const std::string& name, std::shared_ptr<Module> module) override;
  std::vector<std::shared_ptr<Module>> modules_;
};

// Holds children named "0", "1", ... without a forward (for blocks that the model calls itself).
class ModuleList : public Sequential {
 public:
  ModuleList();
  ModuleList(std::initializer_list<std::shared_ptr<Module>> modules);
  Tensor forward(const Tensor& x) override;  // throws, as PyTorch's ModuleList
};

}  // namespace orbit
