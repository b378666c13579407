// Neural-network ops: 2-D convolution, max / average / adaptive-average pooling and batch
// normalization, with PyTorch's semantics (torch.nn.functional), NCHW layout. The kernels are the
// backend's (engine/cpu/cpu_conv.cpp, cpu_pool.cpp, cpu_norm.cpp on the CPU). dropout is defined
// with the losses in ops_loss.cpp.
#include <cmath>

#include "engine/op_utils.h"

namespace orbit {

using namespace detail;

namespace {

// ====================================================================== convolution

// Output length of a convolution or pooling window sweep without ceil mode; the caller has checked
// that the dilated kernel fits into the padded input, so the numerator is not negative.
int64_t conv_out_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation) {
  return (in + 2 * pad - dilation * (kernel - 1) - 1) / stride + 1;
}

// The convolution with zero padding `p` (bias fused), recorded as one node over {x, w, b}.
Tensor conv2d_zero_padded(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p) {
  const int64_t N = x.size(0), O = w.size(0);
  const int64_t Ho = conv_out_size(x.size(2), w.size(2), p.stride_h, p.pad_h, p.dilation_h);
  const int64_t Wo = conv_out_size(x.size(3), w.size(3), p.stride_w, p.pad_w, p.dilation_w);
  const Tensor xc = contiguous_data(x), wc = contiguous_data(w);
  Tensor out = empty_like(x, {N, O, Ho, Wo});
  Backend& be = backend_of(x);
  be.conv2d(xc, wc, p, out);
  if (b.defined()) {
    // In place: every output element reads only itself and its channel's bias.
    be.binary(BinaryOp::Add, out, expanded(b.reshape({1, O, 1, 1}), out.shape()), out);
  }
  const bool need_x = x.requires_grad(), need_w = w.requires_grad();
  const bool need_b = b.defined() && b.requires_grad();
  SavedTensor sx(need_w ? xc : Tensor(), "conv2d"), sw(need_x ? wc : Tensor(), "conv2d");
  const Shape x_shape = x.shape(), w_shape = w.shape();
  record("conv2d", out, {x, w, b},
         [sx, sw, p, need_x, need_w, need_b, x_shape, w_shape](const Tensor& g) -> std::vector<Tensor> {
           const Tensor gc = contiguous_data(g);
           Tensor gx, gw, gb;
           if (need_x) {
             gx = empty_like(gc, x_shape);
             backend_of(gc).conv2d_backward_input(gc, sw.get(), p, gx);
           }
           if (need_w) {
             gw = empty_like(gc, w_shape);
             backend_of(gc).conv2d_backward_weight(sx.get(), gc, p, gw);
           }
           if (need_b) gb = sum(gc, {0, 2, 3});
           return {gx, gw, gb};
         });
  return out;
}

// ====================================================================== pooling

// floor(a / b) for b > 0 and any sign of a.
int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// PyTorch's pooling_output_shape: with ceil_mode the last window may hang over the end, but it must
// start inside the input or its left padding.
int64_t pool_out_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation,
                      bool ceil_mode) {
  const int64_t span = in + 2 * pad - dilation * (kernel - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  int64_t out = floor_div(span, stride) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

// Checks the pooling parameters for x [N, C, H, W] and returns the output shape.
Shape pool_shape(const char* op, const Tensor& x4, const Pool2dParams& p, bool has_dilation) {
  ORBIT_CHECK(p.kernel_h >= 1 && p.kernel_w >= 1, op, ": kernel size must be positive, got (",
              p.kernel_h, ", ", p.kernel_w, ")");
  ORBIT_CHECK(p.stride_h >= 1 && p.stride_w >= 1, op, ": stride must be positive, got (", p.stride_h,
              ", ", p.stride_w, ")");
  ORBIT_CHECK(p.pad_h >= 0 && p.pad_w >= 0, op, ": padding must be non-negative, got (", p.pad_h,
              ", ", p.pad_w, ")");
  ORBIT_CHECK(p.pad_h <= p.kernel_h / 2 && p.pad_w <= p.kernel_w / 2, op, ": padding (", p.pad_h,
              ", ", p.pad_w, ") must be at most half the kernel size (", p.kernel_h, ", ", p.kernel_w,
              ")");
  if (has_dilation) {
    ORBIT_CHECK(p.dilation_h >= 1 && p.dilation_w >= 1, op, ": dilation must be positive, got (",
                p.dilation_h, ", ", p.dilation_w, ")");
  } else {
    ORBIT_CHECK(p.dilation_h == 1 && p.dilation_w == 1, op, ": dilation is not supported, got (",
                p.dilation_h, ", ", p.dilation_w, "); expected (1, 1)");
  }
  const int64_t H = x4.size(2), W = x4.size(3);
  const int64_t Ho = pool_out_size(H, p.kernel_h, p.stride_h, p.pad_h, p.dilation_h, p.ceil_mode);
  const int64_t Wo = pool_out_size(W, p.kernel_w, p.stride_w, p.pad_w, p.dilation_w, p.ceil_mode);
  ORBIT_CHECK(Ho >= 1 && Wo >= 1, op, ": output size ", Ho, "x", Wo, " is too small for input ",
              shape_str(x4.shape()), " with kernel (", p.kernel_h, ", ", p.kernel_w, "), stride (",
              p.stride_h, ", ", p.stride_w, "), padding (", p.pad_h, ", ", p.pad_w, "), dilation (",
              p.dilation_h, ", ", p.dilation_w, ")");
  return {x4.size(0), x4.size(1), Ho, Wo};
}

// Pooling accepts [N, C, H, W] and unbatched [C, H, W] (as PyTorch); returns the 4-D view.
Tensor pool_input(const char* op, const Tensor& x) {
  check_defined(x, op, "input");
  check_floating(x, op);
  ORBIT_CHECK(x.dim() == 3 || x.dim() == 4, op, ": input must be 3-D [C, H, W] or 4-D [N, C, H, W], got ",
              shape_str(x.shape()));
  return x.dim() == 3 ? x.unsqueeze(0) : x;
}

Tensor pool_output(const Tensor& x, const Tensor& out4) { return x.dim() == 3 ? out4.squeeze(0) : out4; }

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p,
              ConvPadding padding_mode) {
  check_defined(x, "conv2d", "input");
  check_defined(w, "conv2d", "weight");
  check_same(x, w, "conv2d");
  check_floating(x, "conv2d");
  ORBIT_CHECK(x.dim() == 4, "conv2d: input must be 4-D [N, C, H, W], got ", shape_str(x.shape()));
  ORBIT_CHECK(w.dim() == 4, "conv2d: weight must be 4-D [out_channels, in_channels / groups, kh, kw], got ",
              shape_str(w.shape()));
  ORBIT_CHECK(p.stride_h >= 1 && p.stride_w >= 1, "conv2d: stride must be positive, got (", p.stride_h,
              ", ", p.stride_w, ")");
  ORBIT_CHECK(p.dilation_h >= 1 && p.dilation_w >= 1, "conv2d: dilation must be positive, got (",
              p.dilation_h, ", ", p.dilation_w, ")");
  ORBIT_CHECK(p.pad_h >= 0 && p.pad_w >= 0, "conv2d: padding must be non-negative, got (", p.pad_h,
              ", ", p.pad_w, ")");
  ORBIT_CHECK(p.groups >= 1, "conv2d: groups must be positive, got ", p.groups);
  const int64_t C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t O = w.size(0), kh = w.size(2), kw = w.size(3);
  ORBIT_CHECK(kh >= 1 && kw >= 1 && O >= 1, "conv2d: weight ", shape_str(w.shape()),
              " has an empty dimension");
  ORBIT_CHECK(O % p.groups == 0, "conv2d: out_channels ", O, " (weight ", shape_str(w.shape()),
              ") is not divisible by groups = ", p.groups);
  ORBIT_CHECK(C == w.size(1) * p.groups, "conv2d: input ", shape_str(x.shape()), " has ", C,
              " channels, but weight ", shape_str(w.shape()), " with groups = ", p.groups, " expects ",
              w.size(1) * p.groups, " (in_channels / groups = weight.size(1))");
  if (b.defined()) {
    check_same(x, b, "conv2d");
    ORBIT_CHECK(b.dim() == 1 && b.size(0) == O, "conv2d: bias must be [", O, "] (out_channels), got ",
                shape_str(b.shape()));
  }
  const int64_t ext_h = p.dilation_h * (kh - 1) + 1, ext_w = p.dilation_w * (kw - 1) + 1;
  ORBIT_CHECK(ext_h <= H + 2 * p.pad_h && ext_w <= W + 2 * p.pad_w, "conv2d: kernel ", kh, "x", kw,
              " (", ext_h, "x", ext_w, " with dilation (", p.dilation_h, ", ", p.dilation_w,
              ")) is larger than the padded input ", H + 2 * p.pad_h, "x", W + 2 * p.pad_w,
              " (input ", shape_str(x.shape()), ", padding (", p.pad_h, ", ", p.pad_w, "))");
  if (padding_mode == ConvPadding::Zeros) return conv2d_zero_padded(x, w, b, p);

  // Circular: wrap the image around (a differentiable pad), then convolve without padding.
  ORBIT_CHECK(p.pad_h <= H && p.pad_w <= W, "conv2d: circular padding (", p.pad_h, ", ", p.pad_w,
              ") must not exceed the input size ", H, "x", W);
  Conv2dParams q = p;
  q.pad_h = q.pad_w = 0;
  const Tensor xp =
      (p.pad_h || p.pad_w) ? pad(x, {p.pad_w, p.pad_w, p.pad_h, p.pad_h}, PadMode::Circular) : x;
  return conv2d_zero_padded(xp, w, b, q);
}

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int64_t stride, int64_t padding,
              int64_t dilation, int64_t groups, ConvPadding padding_mode) {
  Conv2dParams p;
  p.stride_h = p.stride_w = stride;
  p.pad_h = p.pad_w = padding;
  p.dilation_h = p.dilation_w = dilation;
  p.groups = groups;
  return conv2d(x, w, b, p, padding_mode);
}

// ====================================================================== pooling

Tensor max_pool2d(const Tensor& x, const Pool2dParams& p) {
  const Tensor x4 = pool_input("max_pool2d", x);
  const Shape out_shape = pool_shape("max_pool2d", x4, p, true);
  const Tensor xc = contiguous_data(x4);
  Tensor out = empty_like(x4, out_shape);
  Tensor indices = Tensor::empty(out_shape, DType::I64, x.device());
  backend_of(x4).max_pool2d(xc, p, out, indices);
  SavedTensor si(indices, "max_pool2d");
  const Shape in_shape = x4.shape();
  record("max_pool2d", out, {x4}, [si, in_shape](const Tensor& g) -> std::vector<Tensor> {
    Tensor gx = empty_like(g, in_shape);
    backend_of(g).max_pool2d_backward(contiguous_data(g), si.get(), gx);
    return {gx};
  });
  return pool_output(x, out);
}

Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding, int64_t dilation,
                  bool ceil_mode) {
  Pool2dParams p;
  p.kernel_h = p.kernel_w = kernel;
  p.stride_h = p.stride_w = stride == 0 ? kernel : stride;
  p.pad_h = p.pad_w = padding;
  p.dilation_h = p.dilation_w = dilation;
  p.ceil_mode = ceil_mode;
  return max_pool2d(x, p);
}

Tensor avg_pool2d(const Tensor& x, const Pool2dParams& p) {
  const Tensor x4 = pool_input("avg_pool2d", x);
  const Shape out_shape = pool_shape("avg_pool2d", x4, p, false);
  Tensor out = empty_like(x4, out_shape);
  backend_of(x4).avg_pool2d(contiguous_data(x4), p, out);
  const Shape in_shape = x4.shape();
  record("avg_pool2d", out, {x4}, [p, in_shape](const Tensor& g) -> std::vector<Tensor> {
    Tensor gx = empty_like(g, in_shape);
    backend_of(g).avg_pool2d_backward(contiguous_data(g), p, gx);
    return {gx};
  });
  return pool_output(x, out);
}

Tensor avg_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding, bool ceil_mode,
                  bool count_include_pad) {
  Pool2dParams p;
  p.kernel_h = p.kernel_w = kernel;
  p.stride_h = p.stride_w = stride == 0 ? kernel : stride;
  p.pad_h = p.pad_w = padding;
  p.ceil_mode = ceil_mode;
  p.count_include_pad = count_include_pad;
  return avg_pool2d(x, p);
}

Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  const Tensor x4 = pool_input("adaptive_avg_pool2d", x);
  ORBIT_CHECK(out_h >= 1 && out_w >= 1, "adaptive_avg_pool2d: output size must be positive, got ",
              out_h, "x", out_w);
  ORBIT_CHECK(x4.size(2) >= 1 && x4.size(3) >= 1, "adaptive_avg_pool2d: input ", shape_str(x.shape()),
              " has an empty spatial dimension");
  Tensor out = empty_like(x4, {x4.size(0), x4.size(1), out_h, out_w});
  backend_of(x4).adaptive_avg_pool2d(contiguous_data(x4), out);
  const Shape in_shape = x4.shape();
  record("adaptive_avg_pool2d", out, {x4}, [in_shape](const Tensor& g) -> std::vector<Tensor> {
    Tensor gx = empty_like(g, in_shape);
    backend_of(g).adaptive_avg_pool2d_backward(contiguous_data(g), gx);
    return {gx};
  });
  return pool_output(x, out);
}

// ====================================================================== batch normalization

Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& weight, const Tensor& bias, bool training, double momentum,
                  double eps) {
  check_defined(x, "batch_norm", "input");
  check_floating(x, "batch_norm");
  ORBIT_CHECK(x.dim() >= 2, "batch_norm: input must have at least 2 dims [N, C, ...], got ",
              shape_str(x.shape()));
  const int64_t C = x.size(1);
  auto check_channels = [&](const Tensor& t, const char* name) {
    if (!t.defined()) return;
    check_same(x, t, "batch_norm");
    ORBIT_CHECK(t.dim() == 1 && t.size(0) == C, "batch_norm: ", name, " must be [", C,
                "] (the channels of input ", shape_str(x.shape()), "), got ", shape_str(t.shape()));
  };
  check_channels(running_mean, "running_mean");
  check_channels(running_var, "running_var");
  check_channels(weight, "weight");
  check_channels(bias, "bias");
  ORBIT_CHECK(running_mean.defined() == running_var.defined(),
              "batch_norm: running_mean and running_var must both be given or both be undefined");
  ORBIT_CHECK(training || running_mean.defined(),
              "batch_norm: running_mean and running_var are required when training = false");
  ORBIT_CHECK(eps >= 0, "batch_norm: eps must be non-negative, got ", eps);
  const int64_t count = C == 0 ? 0 : x.numel() / C;  // values per channel
  ORBIT_CHECK(!training || count > 1, "batch_norm: expected more than 1 value per channel when "
              "training, got input of shape ", shape_str(x.shape()));

  const Tensor xc = contiguous_data(x);
  Backend& be = backend_of(x);
  const Tensor wc = weight.defined() ? contiguous_data(weight) : Tensor();
  const Tensor bc = bias.defined() ? contiguous_data(bias) : Tensor();
  Tensor y = empty_like(x, x.shape());
  Tensor mean, invstd;
  bool fused = false;  // y computed with the statistics by the backend
  {
    NoGradGuard ng;
    if (training) {
      mean = empty_like(x, {C});
      Tensor var = empty_like(x, {C});
      invstd = empty_like(x, {C});
      fused = be.batch_norm_train_fused(xc, wc, bc, eps, y, mean, var, invstd);
      if (!fused) {
        be.batch_norm_stats(xc, mean, var);
        invstd = rsqrt(add(var, eps));
      }
      if (running_mean.defined()) {
        // running = (1 - m) running + m batch, with the unbiased variance (as PyTorch).
        running_mean.mul_(1.0 - momentum).add_(mean, momentum);
        running_var.mul_(1.0 - momentum)
            .add_(var, momentum * static_cast<double>(count) / static_cast<double>(count - 1));
      }
    } else {
      // Copies, so that a later in-place update of the buffers cannot touch the saved values.
      mean = running_mean.detach().clone();
      invstd = rsqrt(add(running_var.detach(), eps));
    }
  }
  if (!fused) be.batch_norm_apply(xc, mean, invstd, wc, bc, y);

  const bool need_w = weight.defined() && weight.requires_grad();
  const bool need_b = bias.defined() && bias.requires_grad();
  SavedTensor sx(xc, "batch_norm"), sm(mean, "batch_norm"), si(invstd, "batch_norm"),
      sw(wc, "batch_norm");
  record("batch_norm", y, {x, weight, bias},
         [sx, sm, si, sw, training, need_w, need_b](const Tensor& g) -> std::vector<Tensor> {
           const Tensor x = sx.get();
           const int64_t C = x.size(1);
           Tensor gx = empty_like(x, x.shape());
           Tensor gw = need_w ? empty_like(x, {C}) : Tensor();
           Tensor gb = need_b ? empty_like(x, {C}) : Tensor();
           backend_of(x).batch_norm_backward(x, contiguous_data(g), sm.get(), si.get(), sw.get(),
                                             training, gx, gw, gb);
           return {gx, gw, gb};
         });
  return y;
}

}  // namespace orbit
