// Pooling layers over the engine's pooling ops (4-D input [N, C, H, W] or unbatched [C, H, W]).
#include "layers/layers.h"

namespace orbit {

namespace {

Pool2dParams square_params(int64_t kernel, int64_t stride, int64_t padding, int64_t dilation, bool ceil_mode,
                           bool count_include_pad) {
  Pool2dParams p;
  p.kernel_h = p.kernel_w = kernel;
  p.stride_h = p.stride_w = stride == 0 ? kernel : stride;
  p.pad_h = p.pad_w = padding;
  p.dilation_h = p.dilation_w = dilation;
  p.ceil_mode = ceil_mode;
  p.count_include_pad = count_include_pad;
  return p;
}

void check_params(const Pool2dParams& p, const char* name) {
  ORBIT_CHECK(p.kernel_h > 0 && p.kernel_w > 0, name, ": kernel_size must be positive, got ",
              detail::py_pair(p.kernel_h, p.kernel_w));
  ORBIT_CHECK(p.stride_h > 0 && p.stride_w > 0, name, ": stride must be positive, got ",
              detail::py_pair(p.stride_h, p.stride_w));
  ORBIT_CHECK(p.pad_h >= 0 && p.pad_w >= 0, name, ": padding must be non-negative, got ",
              detail::py_pair(p.pad_h, p.pad_w));
  ORBIT_CHECK(p.dilation_h > 0 && p.dilation_w > 0, name, ": dilation must be positive, got ",
              detail::py_pair(p.dilation_h, p.dilation_w));
}

// An int when both sides agree (as a layer built from ints prints), else a tuple.
std::string size_repr(int64_t h, int64_t w) { return h == w ? std::to_string(h) : detail::py_pair(h, w); }

void check_input(const Tensor& x, const char* name) {
  ORBIT_CHECK(x.defined() && (x.dim() == 3 || x.dim() == 4), name,
              ": expected a 3-D (unbatched) or 4-D input [N, C, H, W], got ",
              x.defined() ? shape_str(x.shape()) : std::string("an undefined tensor"));
}

// Runs a 4-D op on an unbatched input by adding and removing the batch dim.
template <class F>
Tensor batched(const Tensor& x, F&& f) {
  return x.dim() == 3 ? f(x.unsqueeze(0)).squeeze(0) : f(x);
}

}  // namespace

MaxPool2d::MaxPool2d(int64_t kernel_size, int64_t stride, int64_t padding, int64_t dilation, bool ceil_mode)
    : MaxPool2d(square_params(kernel_size, stride, padding, dilation, ceil_mode, true)) {}

MaxPool2d::MaxPool2d(const Pool2dParams& params) : Module("MaxPool2d"), p_(params) {
  check_params(p_, "MaxPool2d");
}

Tensor MaxPool2d::forward(const Tensor& x) {
  check_input(x, "MaxPool2d");
  return batched(x, [&](const Tensor& t) { return max_pool2d(t, p_); });
}

std::string MaxPool2d::extra_repr() const {
  return str_cat("kernel_size=", size_repr(p_.kernel_h, p_.kernel_w), ", stride=", size_repr(p_.stride_h, p_.stride_w),
                 ", padding=", size_repr(p_.pad_h, p_.pad_w), ", dilation=",
                 size_repr(p_.dilation_h, p_.dilation_w), ", ceil_mode=", detail::py_bool(p_.ceil_mode));
}

AvgPool2d::AvgPool2d(int64_t kernel_size, int64_t stride, int64_t padding, bool ceil_mode, bool count_include_pad)
    : AvgPool2d(square_params(kernel_size, stride, padding, 1, ceil_mode, count_include_pad)) {}

AvgPool2d::AvgPool2d(const Pool2dParams& params) : Module("AvgPool2d"), p_(params) {
  check_params(p_, "AvgPool2d");
  ORBIT_CHECK(p_.dilation_h == 1 && p_.dilation_w == 1, "AvgPool2d: dilation is not supported (got ",
              detail::py_pair(p_.dilation_h, p_.dilation_w), ")");
}

Tensor AvgPool2d::forward(const Tensor& x) {
  check_input(x, "AvgPool2d");
  return batched(x, [&](const Tensor& t) { return avg_pool2d(t, p_); });
}

std::string AvgPool2d::extra_repr() const {
  return str_cat("kernel_size=", size_repr(p_.kernel_h, p_.kernel_w), ", stride=", size_repr(p_.stride_h, p_.stride_w),
                 ", padding=", size_repr(p_.pad_h, p_.pad_w));
}

AdaptiveAvgPool2d::AdaptiveAvgPool2d(int64_t output_size) : AdaptiveAvgPool2d(output_size, output_size) {
  as_int_ = true;
}

AdaptiveAvgPool2d::AdaptiveAvgPool2d(int64_t out_h, int64_t out_w)
    : Module("AdaptiveAvgPool2d"), out_h_(out_h), out_w_(out_w), as_int_(false) {
  ORBIT_CHECK(out_h > 0 && out_w > 0, "AdaptiveAvgPool2d: output_size must be positive, got ",
              detail::py_pair(out_h, out_w));
}

Tensor AdaptiveAvgPool2d::forward(const Tensor& x) {
  check_input(x, "AdaptiveAvgPool2d");
  return batched(x, [&](const Tensor& t) { return adaptive_avg_pool2d(t, out_h_, out_w_); });
}

std::string AdaptiveAvgPool2d::extra_repr() const {
  return "output_size=" + (as_int_ ? std::to_string(out_h_) : detail::py_pair(out_h_, out_w_));
}

}  // namespace orbit
