// Spatial ops, the group actions on images: flip, roll, rot90 (composed of flip and transpose),
// affine_grid (a matmul of a fixed base grid with theta^T), grid_sample, and rotate (affine_grid +
// grid_sample with a rotation theta).
//
// Direction conventions, for images [..., H, W] displayed with row 0 at the top and column 0 at the
// left:
// - rot90(x, 1) (dims {-2, -1}) turns the image 90 degrees counter-clockwise as displayed:
//   out[i][j] = x[j][W-1-i], so the top-right corner becomes the top-left one (as torch.rot90).
// - rotate(x, a) turns it by a degrees counter-clockwise as displayed (torchvision's rotate
//   convention), so rotate(x, 90) == rot90(x, 1) and rotate(x, -90) == rot90(x, -1) on square
//   images (exactly, up to float rounding of the sampling positions).
#include <cmath>

#include "engine/op_utils.h"

namespace orbit {

using namespace detail;

namespace {

// Normalizes dims for flip / rot90, rejecting duplicates (an empty list stays empty).
std::vector<int64_t> normalize_dims(const std::vector<int64_t>& dims, int64_t ndim, const char* op) {
  std::vector<int64_t> out;
  std::vector<bool> seen(std::max<int64_t>(ndim, 1), false);
  for (int64_t d : dims) {
    const int64_t nd = normalize_dim(d, ndim, op);
    ORBIT_CHECK(!seen[nd], op, ": dim ", d, " appears more than once in dims ", shape_str(dims));
    seen[nd] = true;
    out.push_back(nd);
  }
  return out;
}

}  // namespace

Tensor flip(const Tensor& x, const std::vector<int64_t>& dims) {
  check_defined(x, "flip", "x");
  const std::vector<int64_t> nd = normalize_dims(dims, x.dim(), "flip");
  Tensor out = empty_like(x, x.shape());
  backend_of(x).flip(contiguous_data(x), nd, out);
  record("flip", out, {x}, [nd](const Tensor& g) -> std::vector<Tensor> { return {flip(g, nd)}; });
  return out;
}

Tensor roll(const Tensor& x, const std::vector<int64_t>& shifts, const std::vector<int64_t>& dims) {
  check_defined(x, "roll", "x");
  if (dims.empty()) {
    // As torch.roll: without dims the flattened tensor is rolled by a single shift.
    ORBIT_CHECK(shifts.size() == 1, "roll: without dims, expected exactly one shift, got ",
                shifts.size(), " shifts ", shape_str(shifts));
    return roll(x.reshape({x.numel()}), shifts, {0}).reshape(x.shape());
  }
  ORBIT_CHECK(shifts.size() == dims.size(), "roll: got ", shifts.size(), " shifts ", shape_str(shifts),
              " for ", dims.size(), " dims ", shape_str(dims), "; give one shift per dim");
  std::vector<int64_t> nd;
  for (int64_t d : dims) nd.push_back(normalize_dim(d, x.dim(), "roll"));
  Tensor out = empty_like(x, x.shape());
  backend_of(x).roll(contiguous_data(x), shifts, nd, out);
  std::vector<int64_t> back;
  for (int64_t s : shifts) back.push_back(-s);
  record("roll", out, {x}, [back, nd](const Tensor& g) -> std::vector<Tensor> {
    return {roll(g, back, nd)};
  });
  return out;
}

Tensor rot90(const Tensor& x, int64_t k, std::vector<int64_t> dims) {
  check_defined(x, "rot90", "x");
  ORBIT_CHECK(dims.size() == 2, "rot90: expected two rotation dims, got ", shape_str(dims));
  ORBIT_CHECK(x.dim() >= 2, "rot90: expected a tensor with at least 2 dims, got shape ",
              shape_str(x.shape()));
  const int64_t d0 = normalize_dim(dims[0], x.dim(), "rot90");
  const int64_t d1 = normalize_dim(dims[1], x.dim(), "rot90");
  ORBIT_CHECK(d0 != d1, "rot90: the two rotation dims must differ, got ", shape_str(dims));
  // As torch.rot90: one quarter turn "from d0 towards d1" is flip(d1) then transpose(d0, d1), so
  // out[.., i, .., j, ..] = x[.., j, .., n1-1-i, ..]; three quarter turns flip d0 instead.
  switch (((k % 4) + 4) % 4) {
    case 1: return flip(x, {d1}).transpose(d0, d1);
    case 2: return flip(x, {d0, d1});
    case 3: return flip(x, {d0}).transpose(d0, d1);
    default: return x.clone();
  }
}

Tensor affine_grid(const Tensor& theta, int64_t N, int64_t H, int64_t W, bool align_corners) {
  check_defined(theta, "affine_grid", "theta");
  check_floating(theta, "affine_grid");
  ORBIT_CHECK(N > 0 && H > 0 && W > 0, "affine_grid: expected a positive size, got N = ", N,
              ", H = ", H, ", W = ", W);
  ORBIT_CHECK(theta.shape() == Shape({N, 2, 3}), "affine_grid: expected a batch of 2-D affine "
              "matrices of shape [", N, ", 2, 3] for size [", N, ", C, ", H, ", ", W, "], got ",
              shape_str(theta.shape()));
  // Normalized coordinates of pixel centres: -1 and 1 at the border pixel centres
  // (align_corners) or at the image edges (the centres are then (2i + 1) / n - 1).
  auto coords = [align_corners](int64_t n) {
    std::vector<double> v(n, 0.0);  // a single pixel sits at 0
    if (n > 1)
      for (int64_t i = 0; i < n; ++i) {
        v[i] = -1.0 + 2.0 * static_cast<double>(i) / static_cast<double>(n - 1);
        if (!align_corners) v[i] *= static_cast<double>(n - 1) / static_cast<double>(n);
      }
    return v;
  };
  const std::vector<double> xs = coords(W), ys = coords(H);
  // Base grid [H*W, 3] of rows (x_j, y_i, 1); grid[n] = base @ theta[n]^T.
  std::vector<double> base;
  base.reserve(H * W * 3);
  for (int64_t i = 0; i < H; ++i)
    for (int64_t j = 0; j < W; ++j) {
      base.push_back(xs[j]);
      base.push_back(ys[i]);
      base.push_back(1.0);
    }
  const Tensor b = Tensor::from_vector(base, {H * W, 3}).to(theta.dtype()).to(theta.device());
  return matmul(b, theta.transpose(1, 2)).reshape({N, H, W, 2});
}

Tensor grid_sample(const Tensor& x, const Tensor& grid, GridMode mode, GridPadding padding,
                   bool align_corners) {
  check_same(x, grid, "grid_sample");
  check_floating(x, "grid_sample");
  ORBIT_CHECK(x.dim() == 4, "grid_sample: expected an input [N, C, H, W], got ", shape_str(x.shape()));
  ORBIT_CHECK(grid.dim() == 4 && grid.shape()[3] == 2, "grid_sample: expected a grid [N, Ho, Wo, 2], got ",
              shape_str(grid.shape()));
  ORBIT_CHECK(grid.shape()[0] == x.shape()[0], "grid_sample: the input ", shape_str(x.shape()),
              " and the grid ", shape_str(grid.shape()), " have different batch sizes");
  ORBIT_CHECK(x.shape()[2] > 0 && x.shape()[3] > 0, "grid_sample: the input ", shape_str(x.shape()),
              " has an empty spatial size");
  const int64_t N = x.shape()[0], C = x.shape()[1], Ho = grid.shape()[1], Wo = grid.shape()[2];
  Tensor out = empty_like(x, {N, C, Ho, Wo});
  const Tensor xc = contiguous_data(x), gc = contiguous_data(grid);
  if (out.numel() > 0) backend_of(x).grid_sample(xc, gc, mode, padding, align_corners, out);
  const bool want_ggrid = grid.requires_grad();
  SavedTensor sx(xc, "grid_sample"), sg(gc, "grid_sample");
  record("grid_sample", out, {x, grid},
         [sx, sg, mode, padding, align_corners, want_ggrid](const Tensor& g) -> std::vector<Tensor> {
           const Tensor x = sx.get(), grid = sg.get();
           Tensor gx = empty_like(x, x.shape());
           Tensor ggrid = want_ggrid ? empty_like(grid, grid.shape()) : Tensor();
           if (g.numel() == 0) {
             gx.detach().fill_(0.0);
             if (ggrid.defined()) ggrid.detach().fill_(0.0);
           } else {
             backend_of(g).grid_sample_backward(contiguous_data(g), x, grid, mode, padding,
                                                align_corners, gx, ggrid);
           }
           return {gx, ggrid};
         });
  return out;
}

Tensor rotate(const Tensor& x, double degrees, bool align_corners) {
  check_defined(x, "rotate", "x");
  check_floating(x, "rotate");
  ORBIT_CHECK(x.dim() == 4, "rotate: expected images [N, C, H, W], got ", shape_str(x.shape()));
  ORBIT_CHECK(std::isfinite(degrees), "rotate: the angle must be finite, got ", degrees);
  const int64_t N = x.shape()[0], H = x.shape()[2], W = x.shape()[3];
  ORBIT_CHECK(!align_corners || (H > 1 && W > 1), "rotate: with align_corners the images need at "
              "least 2 pixels per side, got ", shape_str(x.shape()), "; use align_corners = false");
  // Exact values for quarter turns, so that they sample pixel centres without cos(90) ~ 6e-17 noise.
  double r = std::fmod(degrees, 360.0);
  if (r < 0) r += 360.0;
  double c, s;
  if (r == 0.0) { c = 1; s = 0; }
  else if (r == 90.0) { c = 0; s = 1; }
  else if (r == 180.0) { c = -1; s = 0; }
  else if (r == 270.0) { c = 0; s = -1; }
  else {
    c = std::cos(r * M_PI / 180.0);
    s = std::sin(r * M_PI / 180.0);
  }
  // In pixel units about the centre, with y pointing down (row 0 on top), a counter-clockwise turn
  // as displayed is p' = R p with R = [[c, s], [-s, c]]. grid_sample pulls: output p reads input
  // R^-1 p, R^-1 = [[c, -s], [s, c]]. Pixel offsets are normalized coordinates times
  // (sx, sy) = (W/2, H/2), or ((W-1)/2, (H-1)/2) with align_corners, so in normalized coordinates
  // theta = diag(1/sx, 1/sy) R^-1 diag(sx, sy), which keeps the turn rigid on non-square images.
  const double sx = align_corners ? (W - 1) / 2.0 : W / 2.0;
  const double sy = align_corners ? (H - 1) / 2.0 : H / 2.0;
  const std::vector<double> t = {c, -s * sy / sx, 0.0, s * sx / sy, c, 0.0};
  const Tensor theta =
      Tensor::from_vector(t, {1, 2, 3}).expand({N, 2, 3}).contiguous().to(x.dtype()).to(x.device());
  const Tensor grid = affine_grid(theta, N, H, W, align_corners);
  return grid_sample(x, grid, GridMode::Bilinear, GridPadding::Zeros, align_corners);
}

}  // namespace orbit
