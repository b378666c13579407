// Joining, splitting and padding.
#include <algorithm>

#include "engine/op_utils.h"

namespace orbit {

using namespace detail;

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  ORBIT_CHECK(!tensors.empty(), "cat: expected at least one tensor, got none");
  const Tensor& first = tensors[0];
  check_defined(first, "cat", "tensors[0]");
  ORBIT_CHECK(first.dim() > 0, "cat: zero-dimensional tensors cannot be concatenated");
  const int64_t d = normalize_dim(dim, first.dim(), "cat");
  Shape out_shape = first.shape();
  out_shape[d] = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    check_defined(t, "cat", "tensors[i]");
    check_same(first, t, "cat");
    ORBIT_CHECK(t.dim() == first.dim(), "cat: tensor ", i, " has rank ", t.dim(), " (shape ",
                shape_str(t.shape()), "), expected rank ", first.dim());
    for (int64_t k = 0; k < t.dim(); ++k)
      ORBIT_CHECK(k == d || t.shape()[k] == first.shape()[k], "cat: tensor ", i, " has shape ",
                  shape_str(t.shape()), ", expected ", shape_str(first.shape()),
                  " in every dim except dim ", d);
    out_shape[d] += t.shape()[d];
  }
  Tensor out = empty_like(first, out_shape);
  std::vector<int64_t> sizes;
  int64_t at = 0;
  for (const Tensor& t : tensors) {
    const int64_t n = t.shape()[d];
    if (n > 0) backend_of(out).copy(t.detach(), out.detach().narrow(d, at, n));
    sizes.push_back(n);
    at += n;
  }
  record("cat", out, tensors, [sizes, d](const Tensor& g) -> std::vector<Tensor> {
    std::vector<Tensor> grads;
    int64_t at = 0;
    for (int64_t n : sizes) {
      grads.push_back(g.narrow(d, at, n));
      at += n;
    }
    return grads;
  });
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  ORBIT_CHECK(!tensors.empty(), "stack: expected at least one tensor, got none");
  const int64_t d = normalize_dim(dim, tensors[0].dim() + 1, "stack");
  std::vector<Tensor> parts;
  for (size_t i = 0; i < tensors.size(); ++i) {
    ORBIT_CHECK(tensors[i].shape() == tensors[0].shape(), "stack: tensor ", i, " has shape ",
                shape_str(tensors[i].shape()), ", expected ", shape_str(tensors[0].shape()));
    parts.push_back(tensors[i].unsqueeze(d));
  }
  return cat(parts, d);
}

std::vector<Tensor> split(const Tensor& x, int64_t size, int64_t dim) {
  ORBIT_CHECK(size > 0, "split: expected a split size > 0, got ", size);
  const int64_t d = normalize_dim(dim, x.dim(), "split");
  std::vector<Tensor> parts;
  for (int64_t at = 0; at < x.shape()[d]; at += size)
    parts.push_back(x.narrow(d, at, std::min(size, x.shape()[d] - at)));
  return parts;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  ORBIT_CHECK(chunks > 0, "chunk: expected chunks > 0, got ", chunks);
  const int64_t d = normalize_dim(dim, x.dim(), "chunk");
  const int64_t n = x.shape()[d];
  return split(x, std::max<int64_t>(1, (n + chunks - 1) / chunks), d);
}

Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, PadMode mode, double value) {
  check_defined(x, "pad", "x");
  ORBIT_CHECK(pads.size() % 2 == 0 && static_cast<int64_t>(pads.size()) <= 2 * x.dim(),
              "pad: expected an even number of pads, at most 2 * rank = ", 2 * x.dim(), ", got ",
              pads.size(), " for shape ", shape_str(x.shape()));
  for (int64_t p : pads) ORBIT_CHECK(p >= 0, "pad: negative padding ", p, " in ", shape_str(pads));
  const int64_t npadded = static_cast<int64_t>(pads.size()) / 2;

  if (mode == PadMode::Constant) {
    Shape out_shape = x.shape();
    for (int64_t i = 0; i < npadded; ++i) out_shape[x.dim() - 1 - i] += pads[2 * i] + pads[2 * i + 1];
    Tensor out = Tensor::full(out_shape, value, x.dtype(), x.device());
    Tensor inner = out.detach();
    for (int64_t i = 0; i < npadded; ++i)
      inner = inner.narrow(x.dim() - 1 - i, pads[2 * i], x.shape()[x.dim() - 1 - i]);
    backend_of(out).copy(x.detach(), inner);
    const int64_t rank = x.dim();
    const Shape in_shape = x.shape();
    record("pad", out, {x}, [pads, npadded, rank, in_shape](const Tensor& g) -> std::vector<Tensor> {
      Tensor gi = g;
      for (int64_t i = 0; i < npadded; ++i)
        gi = gi.narrow(rank - 1 - i, pads[2 * i], in_shape[rank - 1 - i]);
      return {gi};
    });
    return out;
  }

  // Circular, reflect and replicate padding are compositions of views, flips and cat, so they are
  // differentiable without a kernel of their own.
  Tensor y = x;
  for (int64_t i = 0; i < npadded; ++i) {
    const int64_t d = x.dim() - 1 - i;
    const int64_t left = pads[2 * i], right = pads[2 * i + 1], n = y.shape()[d];
    if (left == 0 && right == 0) continue;
    std::vector<Tensor> parts;
    switch (mode) {
      case PadMode::Circular:
        ORBIT_CHECK(left <= n && right <= n, "pad (circular): padding (", left, ", ", right,
                    ") exceeds the size ", n, " of dim ", d);
        if (left) parts.push_back(y.narrow(d, n - left, left));
        parts.push_back(y);
        if (right) parts.push_back(y.narrow(d, 0, right));
        break;
      case PadMode::Reflect:
        ORBIT_CHECK(left < n && right < n, "pad (reflect): padding (", left, ", ", right,
                    ") must be smaller than the size ", n, " of dim ", d);
        if (left) parts.push_back(flip(y.narrow(d, 1, left), {d}));
        parts.push_back(y);
        if (right) parts.push_back(flip(y.narrow(d, n - 1 - right, right), {d}));
        break;
      case PadMode::Replicate: {
        ORBIT_CHECK(n > 0, "pad (replicate): dim ", d, " is empty");
        Shape ls = y.shape(), rs = y.shape();
        ls[d] = left;
        rs[d] = right;
        if (left) parts.push_back(y.narrow(d, 0, 1).expand(ls));
        parts.push_back(y);
        if (right) parts.push_back(y.narrow(d, n - 1, 1).expand(rs));
        break;
      }
      case PadMode::Constant: break;
    }
    y = cat(parts, d);
  }
  return y;
}

}  // namespace orbit
