// Spatial ops: flip, roll, rot90, affine_grid, grid_sample, rotate. Forward and backward against
// PyTorch fixtures (tests/fixtures/gen_spatial_loss.py), finite-difference gradients, the rotation
// direction conventions, and argument errors.
//
// Fixture tolerance: float32 results within 1e-4 of the reference, relative to the reference
// tensor's largest magnitude (scaled_error): both sides compute in float32 with the same formulas,
// so differences are a few ulps of the tensor scale.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "tests/test_util.h"

using namespace orbit;
using orbit::testing::expect_error;
using orbit::testing::kFixtureTol;
using orbit::testing::matches;
using orbit::testing::all_close;
using orbit::testing::Fixture;
using orbit::testing::fixture_cases;
using orbit::testing::gradcheck;
using orbit::testing::load_fixture;
using orbit::testing::random_input;
using orbit::testing::scaled_error;

namespace {

// sum(y * upstream) backward; returns the gradients of the given leaves.
std::vector<Tensor> grads_of(const Tensor& y, const Tensor& upstream, const std::vector<Tensor>& leaves) {
  return grad({y}, leaves, {upstream});
}

GridMode mode_of(const std::string& s) { return s == "nearest" ? GridMode::Nearest : GridMode::Bilinear; }
GridPadding padding_of(const std::string& s) {
  if (s == "border") return GridPadding::Border;
  if (s == "reflection") return GridPadding::Reflection;
  return GridPadding::Zeros;
}

// A float leaf copy of a fixture tensor.
Tensor leaf(const Tensor& t) { return t.clone().detach().requires_grad_(); }

}  // namespace

// ============================================================================ flip / roll / rot90

TEST(Flip, HandComputed) {
  const Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(flip(x, {1}).to_vector<double>(), (std::vector<double>{3, 2, 1, 6, 5, 4}));
  EXPECT_EQ(flip(x, {0}).to_vector<double>(), (std::vector<double>{4, 5, 6, 1, 2, 3}));
  EXPECT_EQ(flip(x, {0, -1}).to_vector<double>(), (std::vector<double>{6, 5, 4, 3, 2, 1}));
  EXPECT_EQ(flip(x, {}).to_vector<double>(), x.to_vector<double>());
  EXPECT_EQ(flip(x.t(), {1}).to_vector<double>(), (std::vector<double>{4, 1, 5, 2, 6, 3}));  // strided
  const Tensor xi = Tensor::from_vector(std::vector<int64_t>{1, 2, 3}, {3});
  EXPECT_EQ(flip(xi, {0}).to_vector<int64_t>(), (std::vector<int64_t>{3, 2, 1}));
}

TEST(Roll, HandComputedIncludingNegativeAndLargeShifts) {
  const Tensor x = Tensor::from_vector(std::vector<double>{0, 1, 2, 3, 4}, {5});
  // Element j moves to (j + shift) mod 5.
  EXPECT_EQ(roll(x, {1}, {0}).to_vector<double>(), (std::vector<double>{4, 0, 1, 2, 3}));
  EXPECT_EQ(roll(x, {-1}, {0}).to_vector<double>(), (std::vector<double>{1, 2, 3, 4, 0}));
  EXPECT_EQ(roll(x, {12}, {0}).to_vector<double>(), roll(x, {2}, {0}).to_vector<double>());
  EXPECT_EQ(roll(x, {-12}, {0}).to_vector<double>(), roll(x, {3}, {0}).to_vector<double>());
  EXPECT_EQ(roll(x, {5}, {0}).to_vector<double>(), x.to_vector<double>());
  // Without dims the flattened tensor rolls.
  const Tensor m = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(roll(m, {1}, {}).to_vector<double>(), (std::vector<double>{6, 1, 2, 3, 4, 5}));
  EXPECT_EQ(roll(m, {1}, {}).shape(), (Shape{2, 3}));
}

TEST(SpatialTransforms, MatchPyTorchFixtures) {
  const Fixture fx = load_fixture("spatial_transforms");
  const Tensor x = fx.at("x");
  const auto cases = fixture_cases(fx);
  ASSERT_GE(cases.size(), 50u);
  for (const auto& c : cases) {
    const std::string name = c["name"], op = c["op"];
    SCOPED_TRACE(name);
    Tensor xl = leaf(x);
    Tensor y;
    if (op == "rot90")
      y = rot90(xl, c["k"].get<int64_t>(), c["dims"].get<std::vector<int64_t>>());
    else if (op == "flip")
      y = flip(xl, c["dims"].get<std::vector<int64_t>>());
    else
      y = roll(xl, c["shifts"].get<std::vector<int64_t>>(), c["dims"].get<std::vector<int64_t>>());
    // Permutations of the elements: exact.
    EXPECT_TRUE(all_close(y, fx.at(name + "/y"), 0));
    const auto g = grads_of(y, fx.at(name + "/upstream"), {xl});
    EXPECT_TRUE(all_close(g[0], fx.at(name + "/gx"), 0));
  }
}

TEST(SpatialTransforms, Gradients) {
  auto check = [](auto f) { EXPECT_TRUE(gradcheck(f, {random_input({2, 3, 4}, 31)})); };
  check([](const std::vector<Tensor>& in) { return flip(in[0], {0, 2}); });
  check([](const std::vector<Tensor>& in) { return roll(in[0], {-5, 2}, {2, 1}); });
  check([](const std::vector<Tensor>& in) { return roll(in[0], {7}, {}); });
  for (int64_t k = -1; k <= 3; ++k)
    check([k](const std::vector<Tensor>& in) { return rot90(in[0], k, {1, 2}); });
}

TEST(Rot90, GroupLaws) {
  const Tensor x = random_input({2, 3, 4}, 32).detach();
  const std::vector<int64_t> d = {1, 2};
  EXPECT_TRUE(all_close(rot90(rot90(x, 1, d), -1, d), x, 0));
  EXPECT_TRUE(all_close(rot90(x, 4, d), x, 0));
  EXPECT_TRUE(all_close(rot90(x, 1, d), rot90(x, -3, d), 0));
  EXPECT_TRUE(all_close(rot90(rot90(x, 1, d), 1, d), rot90(x, 2, d), 0));
  // Swapping the dims reverses the direction.
  EXPECT_TRUE(all_close(rot90(x, 1, {2, 1}), rot90(x, -1, d), 0));
  EXPECT_EQ(rot90(x, 1, d).shape(), (Shape{2, 4, 3}));
}

TEST(Rot90, TurnsCounterClockwiseAsDisplayed) {
  // Row 0 on top: rot90(x, 1) on the last two dims sends the top-right corner to the top-left.
  // [[1, 2],      [[2, 4],
  //  [3, 4]]  ->   [1, 3]]
  const Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3, 4}, {2, 2});
  EXPECT_EQ(rot90(x, 1).to_vector<double>(), (std::vector<double>{2, 4, 1, 3}));
}

TEST(SpatialTransforms, Errors) {
  const Tensor x = random_input({2, 3, 4}, 33).detach();
  expect_error([&] { flip(x, {0, 0}); }, {"flip", "more than once"});
  expect_error([&] { flip(x, {3}); }, {"flip"});
  expect_error([&] { roll(x, {1, 2}, {0}); }, {"roll", "one shift per dim"});
  expect_error([&] { roll(x, {1, 2}, {}); }, {"roll", "exactly one shift"});
  expect_error([&] { roll(x, {1}, {5}); }, {"roll"});
  expect_error([&] { rot90(x, 1, {0}); }, {"rot90", "two rotation dims"});
  expect_error([&] { rot90(x, 1, {1, -2}); }, {"rot90", "must differ"});
  expect_error([&] { rot90(Tensor::zeros({3}), 1); }, {"rot90", "at least 2 dims"});
}

// ============================================================================ affine_grid

TEST(AffineGrid, MatchesPyTorchFixtures) {
  const Fixture fx = load_fixture("spatial_affine_grid");
  const Tensor theta = fx.at("theta");
  for (const auto& c : fixture_cases(fx)) {
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    const int64_t H = c["H"], W = c["W"];
    Tensor tl = leaf(theta);
    const Tensor grid = affine_grid(tl, 2, H, W, c["align_corners"].get<bool>());
    EXPECT_TRUE(matches(grid, fx.at(name + "/grid")));
    const auto g = grads_of(grid, fx.at("upstream_" + std::to_string(H) + "x" + std::to_string(W)), {tl});
    EXPECT_TRUE(matches(g[0], fx.at(name + "/gtheta")));
  }
}

TEST(AffineGrid, GradientAndErrors) {
  for (bool ac : {false, true})
    EXPECT_TRUE(gradcheck([ac](const std::vector<Tensor>& in) { return affine_grid(in[0], 2, 3, 5, ac); },
                          {random_input({2, 2, 3}, 34)}));
  expect_error([] { affine_grid(Tensor::zeros({2, 3, 3}), 2, 4, 4); }, {"affine_grid", "[2, 2, 3]"});
  expect_error([] { affine_grid(Tensor::zeros({1, 2, 3}), 2, 4, 4); }, {"affine_grid", "[2, 2, 3]"});
  expect_error([] { affine_grid(Tensor::zeros({1, 2, 3}), 1, 0, 4); }, {"affine_grid", "positive"});
}

// ============================================================================ grid_sample

TEST(GridSample, MatchesPyTorchFixturesForEveryModePaddingAndAlignment) {
  const Fixture fx = load_fixture("spatial_grid_sample");
  const auto cases = fixture_cases(fx);
  ASSERT_EQ(cases.size(), 24u);
  for (const auto& c : cases) {
    const std::string name = c["name"], set = c["set"];
    SCOPED_TRACE(name);
    Tensor xl = leaf(fx.at(set + "/x")), gl = leaf(fx.at(set + "/grid"));
    const Tensor y = grid_sample(xl, gl, mode_of(c["mode"]), padding_of(c["padding"]),
                                 c["align_corners"].get<bool>());
    EXPECT_TRUE(matches(y, fx.at(name + "/y")));
    const auto g = grads_of(y, fx.at(set + "/upstream"), {xl, gl});
    EXPECT_TRUE(matches(g[0], fx.at(name + "/gx")));
    EXPECT_TRUE(matches(g[1], fx.at(name + "/ggrid")));
  }
}

TEST(GridSample, BilinearGradientsInInputAndGrid) {
  // Grid points in [-1.6, 1.6] cover the inside, the padding region and (for reflection) one fold;
  // kinks (pixel boundaries, clip edges) are masked by gradcheck.
  for (GridPadding pad : {GridPadding::Zeros, GridPadding::Border, GridPadding::Reflection})
    for (bool ac : {false, true}) {
      SCOPED_TRACE(static_cast<int>(pad) * 2 + ac);
      Tensor grid = random_input({2, 3, 2, 2}, 35);
      {
        NoGradGuard ng;
        grid = clamp(mul(grid, 0.8), -1.6, 1.6).detach().requires_grad_();
      }
      EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) {
        return grid_sample(in[0], in[1], GridMode::Bilinear, pad, ac);
      }, {random_input({2, 2, 3, 4}, 36), grid}));
    }
}

TEST(GridSample, NearestGradientGoesToInputOnly) {
  const Tensor grid = random_input({1, 3, 3, 2}, 37).detach();
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) {
    return grid_sample(in[0], grid, GridMode::Nearest, GridPadding::Border, false);
  }, {random_input({1, 2, 3, 4}, 38)}));
  // The grid's gradient is zero, as PyTorch.
  Tensor gl = leaf(grid);
  Tensor xl = random_input({1, 2, 3, 4}, 39);
  sum(grid_sample(xl, gl, GridMode::Nearest)).backward();
  EXPECT_TRUE(all_close(gl.grad(), Tensor::zeros(grid.shape(), DType::F64), 0));
}

TEST(GridSample, IdentityGridReproducesTheInput) {
  const Tensor x = random_input({2, 3, 5, 4}, 40).detach();
  const Tensor id = Tensor::from_vector(std::vector<double>{1, 0, 0, 0, 1, 0}, {1, 2, 3}).expand({2, 2, 3}).contiguous();
  for (bool ac : {false, true})
    for (GridMode m : {GridMode::Bilinear, GridMode::Nearest})
      EXPECT_TRUE(all_close(grid_sample(x, affine_grid(id, 2, 5, 4, ac), m, GridPadding::Zeros, ac), x, 1e-12, 1e-12));
}

TEST(GridSample, LargeBatchIsDeterministicAndMatchesPerSample) {
  Generator g(41);
  const Tensor x = Tensor::randn({8, 4, 16, 16}, &g);
  const Tensor grid = Tensor::uniform({8, 20, 20, 2}, -1.2, 1.2, &g);
  const Tensor up = Tensor::randn({8, 4, 20, 20}, &g);
  auto run = [&](const Tensor& xi, const Tensor& gi, const Tensor& ui) {
    Tensor xl = leaf(xi), gl = leaf(gi);
    Tensor y = grid_sample(xl, gl, GridMode::Bilinear, GridPadding::Reflection, false);
    auto gr = grads_of(y, ui, {xl, gl});
    return std::vector<Tensor>{y, gr[0], gr[1]};
  };
  const auto a = run(x, grid, up), b = run(x, grid, up);
  for (int k = 0; k < 3; ++k) EXPECT_EQ(a[k].to_vector<float>(), b[k].to_vector<float>());
  for (int64_t n : {0, 5}) {
    const auto s = run(x.narrow(0, n, 1), grid.narrow(0, n, 1), up.narrow(0, n, 1));
    for (int k = 0; k < 3; ++k) EXPECT_TRUE(all_close(a[k].narrow(0, n, 1), s[k], 0));
  }
}

TEST(GridSample, Errors) {
  const Tensor x = Tensor::zeros({2, 3, 4, 4}), grid = Tensor::zeros({2, 5, 5, 2});
  expect_error([&] { grid_sample(Tensor::zeros({3, 4, 4}), grid); }, {"grid_sample", "[N, C, H, W]"});
  expect_error([&] { grid_sample(x, Tensor::zeros({2, 5, 5, 3})); }, {"grid_sample", "[N, Ho, Wo, 2]"});
  expect_error([&] { grid_sample(x, Tensor::zeros({1, 5, 5, 2})); }, {"grid_sample", "batch"});
  expect_error([&] { grid_sample(x, grid.to(DType::F64)); }, {"grid_sample", "dtype"});
  expect_error([&] { grid_sample(Tensor::zeros({2, 3, 0, 4}), grid); }, {"grid_sample", "empty"});
}

// ============================================================================ rotate

TEST(Rotate, MatchesTorchvisionRotate) {
  // torchvision.transforms.functional.rotate: counter-clockwise for positive angles, bilinear,
  // zero fill, the same sampling as align_corners = false; a non-square image checks the aspect.
  const Fixture fx = load_fixture("spatial_rotate");
  const Tensor x = fx.at("x");
  for (const auto& c : fixture_cases(fx)) {
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    EXPECT_TRUE(matches(rotate(x, c["degrees"].get<double>(), false), fx.at(name + "/y")));
  }
}

TEST(Rotate, QuarterTurnsEqualRot90OnSquareImages) {
  // With one align_corners value used for both affine_grid and grid_sample, a quarter turn of a
  // square image maps pixel centres onto pixel centres under either value (the normalized centre
  // coordinates form the same symmetric set on both axes), and quarter turns use exact cos / sin,
  // so only float rounding of the sampling positions remains: ~1e-6 relative in float32, ~1e-14
  // in float64. rotate(x, 90 k) == rot90(x, k): both turn counter-clockwise as displayed.
  for (int64_t n : {5, 4})
    for (bool ac : {false, true})
      for (DType dt : {DType::F32, DType::F64}) {
        SCOPED_TRACE(std::to_string(n) + (ac ? " ac " : " noac ") + dtype_name(dt));
        const Tensor x = random_input({2, 3, n, n}, 42).detach().to(dt);
        const double tol = dt == DType::F32 ? 2e-6 : 1e-13;
        for (int64_t k : {-1, 1, 2, 3, 4, 5})
          EXPECT_TRUE(all_close(rotate(x, 90.0 * k, ac), rot90(x, k).contiguous(), 0, tol))
              << "k = " << k;
      }
}

TEST(Rotate, DirectionOfASinglePixel) {
  // A bright pixel right of the centre (row 2, col 4 of a 5x5 image) goes up after a
  // counter-clockwise quarter turn: to row 0, col 2.
  std::vector<double> v(25, 0.0);
  v[2 * 5 + 4] = 1.0;
  const Tensor x = Tensor::from_vector(v, {1, 1, 5, 5});
  const auto y = rotate(x, 90.0).to_vector<double>();
  EXPECT_NEAR(y[0 * 5 + 2], 1.0, 1e-12);
  EXPECT_NEAR(sum(rotate(x, 90.0)).item(), 1.0, 1e-12);
}

TEST(Rotate, HalfTurnIsAFlipOnNonSquareImages) {
  const Tensor x = random_input({1, 2, 5, 8}, 43).detach();
  for (bool ac : {false, true})
    EXPECT_TRUE(all_close(rotate(x, 180.0, ac), flip(x, {2, 3}), 0, 1e-13));
}

TEST(Rotate, QuarterTurnIsRigidOnNonSquareImages) {
  // A 5 x 9 image (the width minus the height is even, so the turn maps pixel centres onto pixel
  // centres): the central 5 x 5 block of the rotated image is the rotated central block.
  const Tensor x = random_input({1, 2, 5, 9}, 44).detach();
  for (bool ac : {false, true}) {
    const Tensor y = rotate(x, 90.0, ac).narrow(3, 2, 5);
    EXPECT_TRUE(all_close(y, rot90(x.narrow(3, 2, 5), 1).contiguous(), 0, 1e-13)) << ac;
  }
}

TEST(Rotate, ForwardThenBackRestoresTheCentre) {
  // A smooth image: a Gaussian bump of sigma = 4 px, off the centre, plus a gentle ramp. Bilinear
  // resampling errs by at most (|f_xx| + |f_yy|) / 8 <= 2 / (8 sigma^2) ~ 0.016 per pass, so two
  // passes stay below 0.035; outside the central disc the corners are lost to the zero fill.
  // A single turn moves the off-centre bump by far more, so the check can fail.
  const int64_t n = 21;
  std::vector<double> v(n * n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const double dy = i - 9.0, dx = j - 11.5;
      v[i * n + j] = std::exp(-(dx * dx + dy * dy) / (2 * 16.0)) + 0.02 * j;
    }
  const Tensor x = Tensor::from_vector(v, {1, 1, n, n});
  auto central_error = [&](const Tensor& y) {
    const auto yv = y.to_vector<double>();
    double worst = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j)
        if ((i - 10) * (i - 10) + (j - 10) * (j - 10) <= 36)
          worst = std::max(worst, std::abs(yv[i * n + j] - v[i * n + j]));
    return worst;
  };
  for (double a : {30.0, -50.0, 137.0}) {
    EXPECT_LT(central_error(rotate(rotate(x, a), -a)), 0.035) << "angle " << a;
    EXPECT_GT(central_error(rotate(x, a)), 0.1) << "angle " << a;
  }
}

TEST(Rotate, GradientAndErrors) {
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return rotate(in[0], 33.0); },
                        {random_input({1, 2, 4, 5}, 45)}));
  expect_error([] { rotate(Tensor::zeros({3, 4, 4}), 10.0); }, {"rotate", "[N, C, H, W]"});
  expect_error([] { rotate(Tensor::zeros({1, 1, 1, 4}), 10.0, true); }, {"rotate", "align_corners"});
  expect_error([] { rotate(Tensor::zeros({1, 1, 4, 4}), NAN); }, {"rotate", "finite"});
}
