// Conv2d: parameters, PyTorch's default initialization and repr; the computation is engine conv2d.
#include <cmath>

#include "layers/init.h"
#include "layers/layers.h"

namespace orbit {

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride,
               int64_t padding, int64_t dilation, int64_t groups, bool bias, ConvPadding padding_mode,
               Generator* gen)
    : Conv2d(Conv2dOptions{in_channels, out_channels, kernel_size, kernel_size, stride, stride, padding,
                           padding, dilation, dilation, groups, bias, padding_mode},
             gen) {}

Conv2d::Conv2d(const Conv2dOptions& o, Generator* gen) : Module("Conv2d"), opt_(o) {
  ORBIT_CHECK(o.in_channels > 0 && o.out_channels > 0, "Conv2d: in_channels and out_channels must be positive, got ",
              o.in_channels, " and ", o.out_channels);
  ORBIT_CHECK(o.groups > 0, "Conv2d: groups must be positive, got ", o.groups);
  ORBIT_CHECK(o.in_channels % o.groups == 0, "Conv2d: in_channels (", o.in_channels,
              ") must be divisible by groups (", o.groups, ")");
  ORBIT_CHECK(o.out_channels % o.groups == 0, "Conv2d: out_channels (", o.out_channels,
              ") must be divisible by groups (", o.groups, ")");
  ORBIT_CHECK(o.kernel_h > 0 && o.kernel_w > 0, "Conv2d: kernel_size must be positive, got ",
              detail::py_pair(o.kernel_h, o.kernel_w));
  ORBIT_CHECK(o.stride_h > 0 && o.stride_w > 0, "Conv2d: stride must be positive, got ",
              detail::py_pair(o.stride_h, o.stride_w));
  ORBIT_CHECK(o.pad_h >= 0 && o.pad_w >= 0, "Conv2d: padding must be non-negative, got ",
              detail::py_pair(o.pad_h, o.pad_w));
  ORBIT_CHECK(o.dilation_h > 0 && o.dilation_w > 0, "Conv2d: dilation must be positive, got ",
              detail::py_pair(o.dilation_h, o.dilation_w));
  weight = register_parameter(
      "weight", Tensor::empty({o.out_channels, o.in_channels / o.groups, o.kernel_h, o.kernel_w}));
  if (o.bias) bias = register_parameter("bias", Tensor::empty({o.out_channels}));
  reset_parameters(gen);
}

void Conv2d::reset_parameters(Generator* gen) {
  // kaiming_uniform_(a = sqrt 5): gain sqrt(2 / 6), bound = sqrt(3) * gain / sqrt(fan_in) = 1 / sqrt(fan_in).
  init::kaiming_uniform_(weight, std::sqrt(5.0), "fan_in", "leaky_relu", gen);
  if (bias.defined()) {
    const double fan_in = static_cast<double>(init::calculate_fan_in_and_fan_out(weight).first);
    const double bound = fan_in > 0 ? 1.0 / std::sqrt(fan_in) : 0.0;
    init::uniform_(bias, -bound, bound, gen);
  }
}

Tensor Conv2d::forward(const Tensor& x) {
  ORBIT_CHECK(x.defined() && (x.dim() == 3 || x.dim() == 4), "Conv2d: expected a 3-D (unbatched) or 4-D input "
              "[N, C, H, W], got ", x.defined() ? shape_str(x.shape()) : std::string("an undefined tensor"));
  const int64_t c = x.size(-3);
  ORBIT_CHECK(c == opt_.in_channels, "Conv2d(", opt_.in_channels, ", ", opt_.out_channels, "): expected input with ",
              opt_.in_channels, " channels, got shape ", shape_str(x.shape()));
  Conv2dParams p;
  p.stride_h = opt_.stride_h;
  p.stride_w = opt_.stride_w;
  p.pad_h = opt_.pad_h;
  p.pad_w = opt_.pad_w;
  p.dilation_h = opt_.dilation_h;
  p.dilation_w = opt_.dilation_w;
  p.groups = opt_.groups;
  if (x.dim() == 3) return conv2d(x.unsqueeze(0), weight, bias, p, opt_.padding_mode).squeeze(0);
  return conv2d(x, weight, bias, p, opt_.padding_mode);
}

std::string Conv2d::extra_repr() const {
  // torch.nn.Conv2d stores tuples, so sizes always print as pairs.
  std::string s = str_cat(opt_.in_channels, ", ", opt_.out_channels,
                          ", kernel_size=", detail::py_pair(opt_.kernel_h, opt_.kernel_w),
                          ", stride=", detail::py_pair(opt_.stride_h, opt_.stride_w));
  if (opt_.pad_h != 0 || opt_.pad_w != 0) s += ", padding=" + detail::py_pair(opt_.pad_h, opt_.pad_w);
  if (opt_.dilation_h != 1 || opt_.dilation_w != 1)
    s += ", dilation=" + detail::py_pair(opt_.dilation_h, opt_.dilation_w);
  if (opt_.groups != 1) s += str_cat(", groups=", opt_.groups);
  if (!bias.defined()) s += ", bias=False";
  if (opt_.padding_mode == ConvPadding::Circular) s += ", padding_mode=circular";
  return s;
}

}  // namespace orbit
