// groups/group.h and groups/action.h: group axioms, composition against the affine maps, parsing and
// names; the actions on scalar, pseudo-scalar and vector fields and on boxes against independent
// pixel-by-pixel references, the composition law act(g, act(h, x)) == act(g∘h, x), representation
// matrices, finite-difference gradients and argument errors.
//
// Tolerances: the exact groups (rotations by multiples of 90°, flips, periodic translations) permute
// pixels and negate or swap vector components, so their results are compared bit for bit. Bilinear
// rotations (C8) are compared within an interpolation bound derived next to the test.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "groups/action.h"
#include "groups/group.h"
#include "tests/test_util.h"

using namespace orbit;
using namespace orbit::groups;
using orbit::testing::all_close;
using orbit::testing::expect_error;
using orbit::testing::gradcheck;
using orbit::testing::random_input;
using orbit::testing::randn;

namespace {

::testing::AssertionResult bitwise_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape())
    return ::testing::AssertionFailure() << "shape " << shape_str(a.shape()) << " vs " << shape_str(b.shape());
  const auto x = a.to_vector<double>(), y = b.to_vector<double>();
  for (size_t i = 0; i < x.size(); ++i)
    if (!(x[i] == y[i]))
      return ::testing::AssertionFailure() << "element " << i << ": " << x[i] << " vs " << y[i];
  return ::testing::AssertionSuccess();
}

int64_t signed_rep(int64_t s, int64_t p) { return 2 * s > p ? s - p : s; }

// (g·x)(P) = x(g⁻¹ P) evaluated pixel by pixel from the header's definition g(P) = R F P + t, with
// P the pixel centre in display coordinates (X = j + 1/2 - W/2, Y = H/2 - i - 1/2): subtract t, turn
// back by the quarter turns, undo the flip, read the source pixel (wrapped for Periodic, zero outside
// for Zeros, whose shift uses the signed step counts). For Vector the components at the source pixel
// are then mapped by F (v_x -> -v_x) and the quarter turns ((v_x, v_y) -> (-v_y, v_x)); PseudoScalar
// values change sign under reflections. x: float64 [C, H, W]; exact groups only.
Tensor reference_act(const Group& G, int64_t g, const Tensor& x, FieldKind kind) {
  const Element& e = G.element(g);
  const int64_t C = x.size(0), H = x.size(1), W = x.size(2), p = G.translation_steps();
  const int64_t q = e.rotation * 4 / G.rotations();
  EXPECT_EQ(e.rotation * 4 % G.rotations(), 0) << "reference_act handles quarter turns only";
  const bool zeros = G.boundary() == Boundary::Zeros;
  const double tX = static_cast<double>((zeros ? signed_rep(e.tx, p) : e.tx) * (W / p));
  const double tY = static_cast<double>((zeros ? signed_rep(e.ty, p) : e.ty) * (H / p));
  const std::vector<double> in = x.to_vector<double>();
  std::vector<double> out(in.size(), 0.0);
  for (int64_t i = 0; i < H; ++i)
    for (int64_t j = 0; j < W; ++j) {
      double U = j + 0.5 - W / 2.0 - tX, V = H / 2.0 - i - 0.5 - tY;
      for (int64_t k = 0; k < q; ++k) {  // R⁻¹: a clockwise quarter turn (u, v) -> (v, -u)
        const double u = V, v = -U;
        U = u;
        V = v;
      }
      if (e.reflect) U = -U;
      int64_t js = std::llround(U - 0.5 + W / 2.0), is = std::llround(H / 2.0 - 0.5 - V);
      if (zeros && (js < 0 || js >= W || is < 0 || is >= H)) continue;
      js = ((js % W) + W) % W;
      is = ((is % H) + H) % H;
      for (int64_t c = 0; c < C; ++c) out[(c * H + i) * W + j] = in[(c * H + is) * W + js];
      if (kind == FieldKind::PseudoScalar && e.reflect)
        for (int64_t c = 0; c < C; ++c) out[(c * H + i) * W + j] = -out[(c * H + i) * W + j];
      if (kind == FieldKind::Vector)
        for (int64_t c = 0; c < C; c += 2) {
          double vx = out[(c * H + i) * W + j], vy = out[((c + 1) * H + i) * W + j];
          if (e.reflect) vx = -vx;
          for (int64_t k = 0; k < q; ++k) {
            const double nx = -vy, ny = vx;
            vx = nx;
            vy = ny;
          }
          out[(c * H + i) * W + j] = vx;
          out[((c + 1) * H + i) * W + j] = vy;
        }
    }
  return Tensor::from_vector(out, x.shape());
}

// The 3x3 integer matrix of element g acting on homogeneous step coordinates (x, y, 1):
// [[L, t], [0, 1]] with L = R(quarter turns) F^reflect.
using Mat3 = std::array<std::array<int64_t, 3>, 3>;
Mat3 affine_matrix(const Group& G, int64_t g) {
  const Element& e = G.element(g);
  const int64_t q = e.rotation * 4 / G.rotations();
  const int64_t c[4] = {1, 0, -1, 0}, s[4] = {0, 1, 0, -1};
  const int64_t f = e.reflect ? -1 : 1;
  return Mat3{{{c[q] * f, -s[q], e.tx}, {s[q] * f, c[q], e.ty}, {0, 0, 1}}};
}

Mat3 matmul_mod(const Mat3& a, const Mat3& b, int64_t p) {
  Mat3 r{};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      int64_t v = 0;
      for (int k = 0; k < 3; ++k) v += a[i][k] * b[k][j];
      r[i][j] = v;
    }
  for (int i = 0; i < 2; ++i) r[i][2] = ((r[i][2] % p) + p) % p;  // translations live in Z_p
  return r;
}

}  // namespace

// ============================================================================ groups

TEST(Group, Orders) {
  EXPECT_EQ(Group::parse("C8").order(), 8);
  EXPECT_EQ(Group::parse("D4").order(), 8);
  EXPECT_EQ(Group::parse("T4xD4").order(), 128);
  EXPECT_EQ(Group::parse("flips").order(), 2);
  EXPECT_EQ(Group::parse("trivial").order(), 1);
  EXPECT_EQ(Group::parse("T4").order(), 16);
  EXPECT_EQ(Group::parse("T2xC2").order(), 8);
  EXPECT_EQ(Group(3, true).order(), 6);
}

TEST(Group, AxiomsForEveryGroup) {
  for (const char* spec : {"trivial", "flips", "C2", "C3", "C4", "C8", "D1", "D3", "D4", "D8", "T2", "T3xD1",
                           "T2xC2", "T3xC4", "T4xD4"}) {
    SCOPED_TRACE(spec);
    const Group G = Group::parse(spec);
    const int64_t N = G.order();
    const auto table = G.cayley_table();
    ASSERT_EQ(static_cast<int64_t>(table.size()), N);
    for (int64_t a = 0; a < N; ++a) {
      // Closure and Latin square: every row and column is a permutation of the group.
      std::set<int64_t> row, col;
      for (int64_t b = 0; b < N; ++b) {
        ASSERT_GE(table[a][b], 0);
        ASSERT_LT(table[a][b], N);
        row.insert(table[a][b]);
        col.insert(table[b][a]);
      }
      EXPECT_EQ(static_cast<int64_t>(row.size()), N);
      EXPECT_EQ(static_cast<int64_t>(col.size()), N);
      // Identity and inverses.
      EXPECT_EQ(G.compose(G.identity(), a), a);
      EXPECT_EQ(G.compose(a, G.identity()), a);
      EXPECT_EQ(G.compose(a, G.inverse(a)), G.identity());
      EXPECT_EQ(G.compose(G.inverse(a), a), G.identity());
    }
    for (int64_t a = 0; a < N; ++a)
      for (int64_t b = 0; b < N; ++b)
        for (int64_t c = 0; c < N; ++c)
          ASSERT_EQ(table[table[a][b]][c], table[a][table[b][c]]) << a << " " << b << " " << c;
  }
}

TEST(Group, ElementOrderAndIdentity) {
  const Group G = Group::parse("T3xD4");
  EXPECT_EQ(G.element(0), Element{});
  for (int64_t i = 0; i < G.order(); ++i) {
    const Element& e = G.element(i);
    EXPECT_EQ(i, e.rotation + 4 * ((e.reflect ? 1 : 0) + 2 * (e.tx + 3 * e.ty)));
    EXPECT_EQ(G.index_of(e), i);
  }
  const Group C = Group::parse("T2xC2");
  for (int64_t i = 0; i < C.order(); ++i) {
    const Element& e = C.element(i);
    EXPECT_FALSE(e.reflect);
    EXPECT_EQ(i, e.rotation + 2 * (e.tx + 2 * e.ty));
  }
}

TEST(Group, CompositionIsCompositionOfAffineMaps) {
  // The semidirect product T ⋊ D_n: the matrix of g∘h is the product of the matrices (g after h).
  for (const char* spec : {"D4", "C4", "T4xD4", "T3xC2", "T5xD1"}) {
    SCOPED_TRACE(spec);
    const Group G = Group::parse(spec);
    for (int64_t a = 0; a < G.order(); ++a)
      for (int64_t b = 0; b < G.order(); ++b)
        ASSERT_EQ(affine_matrix(G, G.compose(a, b)),
                  matmul_mod(affine_matrix(G, a), affine_matrix(G, b), G.translation_steps()))
            << G.element_name(a) << " ∘ " << G.element_name(b);
  }
  // Non-quarter-turn rotations: angles add, and a reflection reverses the angle it is composed with.
  const Group D8 = Group::parse("D8");
  for (int64_t a = 0; a < 16; ++a)
    for (int64_t b = 0; b < 16; ++b) {
      const Element &x = D8.element(a), &y = D8.element(b), &z = D8.element(D8.compose(a, b));
      EXPECT_EQ(z.reflect, x.reflect != y.reflect);
      EXPECT_EQ(z.rotation, (((x.reflect ? x.rotation - y.rotation : x.rotation + y.rotation) % 8) + 8) % 8);
    }
}

TEST(Group, FlipThenRotateIsRotateBackThenFlip) {
  // F R(θ) = R(-θ) F: "f" after "r90" is the element "r270f".
  const Group G = Group::parse("D4");
  const int64_t f = G.index_of(Element{0, true, 0, 0}), r90 = G.index_of(Element{1, false, 0, 0});
  EXPECT_EQ(G.element_name(G.compose(f, r90)), "r270f");
  EXPECT_EQ(G.element_name(G.compose(r90, f)), "r90f");
}

TEST(Group, ParseRoundTripAndCanonicalNames) {
  for (const char* spec : {"C1", "C4", "C8", "D1", "D4", "D8", "T4", "T4xC2", "T4xC4", "T4xD1", "T4xD4", "T2xD2"}) {
    const Group G = Group::parse(spec);
    EXPECT_EQ(G.name(), spec);
    const Group H = Group::parse(G.name());
    EXPECT_EQ(H.order(), G.order());
    EXPECT_EQ(H.rotations(), G.rotations());
    EXPECT_EQ(H.has_reflections(), G.has_reflections());
    EXPECT_EQ(H.translation_steps(), G.translation_steps());
  }
  EXPECT_EQ(Group::parse("flips").name(), "D1");
  EXPECT_EQ(Group::parse("trivial").name(), "C1");
  // The label adds the config's word only where the canonical name alone is obscure.
  EXPECT_EQ(Group::parse("flips").label(), "D1 (flips)");
  EXPECT_EQ(Group::parse("trivial").label(), "C1 (trivial)");
  EXPECT_EQ(Group::parse("T4xD1").label(), "T4xD1");
  EXPECT_EQ(Group::parse("D4").label(), "D4");
  EXPECT_EQ(Group::parse("T4xC1").name(), "T4");
  EXPECT_EQ(Group::parse("T1xD4").name(), "D4");
  EXPECT_EQ(Group(4, true, 4).name(), "T4xD4");
  EXPECT_EQ(Group::parse("T4", Boundary::Zeros).boundary(), Boundary::Zeros);
  const Group T = Group::parse("T4xD4");
  EXPECT_EQ(T.rotations(), 4);
  EXPECT_TRUE(T.has_reflections());
  EXPECT_EQ(T.translation_steps(), 4);
  EXPECT_TRUE(T.exact_on_pixels());
  EXPECT_FALSE(Group::parse("C8").exact_on_pixels());
  EXPECT_TRUE(Group::parse("C4").needs_square_input());
  EXPECT_FALSE(Group::parse("T2xD2").needs_square_input());
}

TEST(Group, ParseErrorsNameTheSpecAndTheAcceptedForms) {
  for (const char* bad : {"C0", "Q4", "T3xC8", "D", "", "c4", "T4x", "TxC4", "C4x", "D-2"}) {
    SCOPED_TRACE(bad);
    expect_error([&] { Group::parse(bad); }, {"'" + std::string(bad) + "'", Group::accepted_specs()});
  }
  expect_error([] { Group::parse("T3xC8"); }, {"n = 8", "{1, 2, 4}"});
  expect_error([] { Group(0, false); }, {"n = 0"});
  expect_error([] { Group(4, false, 0); }, {"p = 0"});
  expect_error([] { Group(8, true, 2); }, {"translations", "n = 8"});
}

TEST(Group, ElementNamesAndAngles) {
  const Group D4 = Group::parse("D4");
  const std::vector<std::string> names = {"e", "r90", "r180", "r270", "f", "r90f", "r180f", "r270f"};
  for (int64_t i = 0; i < 8; ++i) EXPECT_EQ(D4.element_name(i), names[static_cast<size_t>(i)]);
  const Group C8 = Group::parse("C8");
  for (int64_t i = 0; i < 8; ++i) EXPECT_DOUBLE_EQ(C8.angle_degrees(i), 45.0 * i);
  EXPECT_EQ(C8.element_name(1), "r45");
  EXPECT_EQ(C8.element_name(3), "r135");
  EXPECT_DOUBLE_EQ(D4.angle_degrees(5), 90.0);
  EXPECT_DOUBLE_EQ(Group(3, false).angle_degrees(2), 240.0);
  const Group T = Group::parse("T4xD4");
  EXPECT_EQ(T.element_name(T.index_of(Element{1, true, 1, 0})), "t(1,0)r90f");
  EXPECT_EQ(T.element_name(T.index_of(Element{0, false, 2, 3})), "t(2,3)");
  EXPECT_EQ(T.element_name(0), "e");
  // All names of a group are distinct.
  std::set<std::string> seen;
  for (int64_t i = 0; i < T.order(); ++i) seen.insert(T.element_name(i));
  EXPECT_EQ(static_cast<int64_t>(seen.size()), T.order());
}

TEST(Group, IndexErrors) {
  const Group G = Group::parse("C4");
  expect_error([&] { G.element(4); }, {"C4", "4", "0 <= index < 4"});
  expect_error([&] { G.element(-1); }, {"C4", "-1"});
  expect_error([&] { G.compose(0, 7); }, {"C4", "7"});
  expect_error([&] { G.inverse(9); }, {"C4", "9"});
  expect_error([&] { G.index_of(Element{0, true, 0, 0}); }, {"C4", "reflect"});
  expect_error([&] { G.index_of(Element{5, false, 0, 0}); }, {"C4", "rotation 5"});
}

// ============================================================================ actions

TEST(Action, FieldKindNames) {
  for (FieldKind k : {FieldKind::Invariant, FieldKind::Scalar, FieldKind::PseudoScalar, FieldKind::Vector,
                      FieldKind::Boxes})
    EXPECT_EQ(parse_field_kind(field_kind_name(k)), k);
  EXPECT_EQ(parse_field_kind("logits"), FieldKind::Invariant);
  EXPECT_EQ(parse_field_kind("image"), FieldKind::Scalar);
  expect_error([] { parse_field_kind("tensor"); }, {"'tensor'", "invariant", "pseudo_scalar", "vector", "boxes"});
}

TEST(Action, DirectionsByHand) {
  // One bright pixel at the top-right corner of a 4x4 image (row 0, column 3).
  std::vector<float> v(16, 0.f);
  v[3] = 1.f;
  const Tensor x = Tensor::from_vector(v, {1, 4, 4});
  auto where_is = [](const Tensor& t) {
    const auto d = t.to_vector<float>();
    for (size_t i = 0; i < d.size(); ++i)
      if (d[i] == 1.f) return static_cast<int64_t>(i);
    return int64_t{-1};
  };
  const Group D4 = Group::parse("D4");
  EXPECT_EQ(where_is(act(D4, 1, x, FieldKind::Scalar)), 0);       // r90 (CCW): top-right -> top-left
  EXPECT_EQ(where_is(act(D4, 3, x, FieldKind::Scalar)), 15);      // r270: -> bottom-right
  EXPECT_EQ(where_is(act(D4, 4, x, FieldKind::Scalar)), 0);       // f: left-right flip
  EXPECT_EQ(where_is(act(D4, 5, x, FieldKind::Scalar)), 12);      // r90f: flip to top-left, then -> bottom-left
  const Group T = Group::parse("T2");                             // steps of 2 pixels
  EXPECT_EQ(where_is(act(T, T.index_of(Element{0, false, 1, 0}), x, FieldKind::Scalar)), 1);   // right 2, wraps
  EXPECT_EQ(where_is(act(T, T.index_of(Element{0, false, 0, 1}), x, FieldKind::Scalar)), 11);  // up 2, wraps
  const Group Tz = Group::parse("T2", Boundary::Zeros);
  EXPECT_EQ(where_is(act(Tz, Tz.index_of(Element{0, false, 1, 0}), x, FieldKind::Scalar)), -1);  // pushed out
  // A constant field pointing right, v = (1, 0): turned by 90° it points up, (0, 1); flipped, left.
  const Tensor right = Tensor::from_vector(std::vector<float>{1, 1, 1, 1, 0, 0, 0, 0}, {2, 2, 2});
  EXPECT_EQ(act(D4, 1, right, FieldKind::Vector).to_vector<float>(), (std::vector<float>{0, 0, 0, 0, 1, 1, 1, 1}));
  EXPECT_EQ(act(D4, 4, right, FieldKind::Vector).to_vector<float>(),
            (std::vector<float>{-1, -1, -1, -1, 0, 0, 0, 0}));
  EXPECT_EQ(vector_matrix(D4, 1), (std::vector<double>{0, -1, 1, 0}));
  EXPECT_EQ(vector_matrix(D4, 4), (std::vector<double>{-1, 0, 0, 1}));
  EXPECT_EQ(sign_of(D4, 4), -1);
  EXPECT_EQ(sign_of(D4, 2), 1);
}

TEST(Action, MatchesPixelReference) {
  struct Case {
    const char* spec;
    Boundary boundary;
    int64_t H, W;
  };
  for (const Case& c : {Case{"T4xD4", Boundary::Periodic, 8, 8}, Case{"T4xD4", Boundary::Zeros, 8, 8},
                        Case{"T3xD4", Boundary::Zeros, 6, 6}, Case{"T2xD2", Boundary::Periodic, 4, 6},
                        Case{"T3xD2", Boundary::Zeros, 6, 9}, Case{"D1", Boundary::Periodic, 3, 5}}) {
    const Group G = Group::parse(c.spec, c.boundary);
    const Tensor x = randn({4, c.H, c.W}, 7, DType::F64);
    for (FieldKind kind : {FieldKind::Scalar, FieldKind::PseudoScalar, FieldKind::Vector})
      for (int64_t g = 0; g < G.order(); ++g)
        ASSERT_TRUE(bitwise_equal(act(G, g, x, kind), reference_act(G, g, x, kind)))
            << c.spec << " " << c.H << "x" << c.W << " " << G.element_name(g) << " " << field_kind_name(kind);
  }
}

TEST(Action, CompositionLawExactGroups) {
  struct Case {
    const char* spec;
    int64_t H, W;
  };
  for (const Case& c : {Case{"C4", 6, 6}, Case{"D4", 5, 5}, Case{"flips", 4, 7}, Case{"T4", 8, 12},
                        Case{"T4xD4", 8, 8}, Case{"T2xC2", 6, 4}, Case{"T3xD4", 12, 12}}) {
    const Group G = Group::parse(c.spec);
    const Tensor x = randn({2, 4, c.H, c.W}, 11);
    const std::vector<FieldKind> kinds = G.order() > 64 ? std::vector<FieldKind>{FieldKind::Vector}
                                                         : std::vector<FieldKind>{FieldKind::Scalar, FieldKind::PseudoScalar, FieldKind::Vector};
    for (FieldKind kind : kinds) {
      std::vector<Tensor> gx;
      for (int64_t g = 0; g < G.order(); ++g) gx.push_back(act(G, g, x, kind));
      for (int64_t g = 0; g < G.order(); ++g)
        for (int64_t h = 0; h < G.order(); ++h)
          ASSERT_TRUE(bitwise_equal(act(G, g, gx[static_cast<size_t>(h)], kind), gx[static_cast<size_t>(G.compose(g, h))]))
              << c.spec << " " << G.element_name(g) << " ∘ " << G.element_name(h) << " " << field_kind_name(kind);
    }
  }
}

namespace {
// exp(-|P - c|² / (2σ²)) sampled at the pixel centres P (display coordinates) of an S x S image.
Tensor blob(int64_t S, double cx, double cy, double sigma) {
  std::vector<double> v(static_cast<size_t>(S * S));
  for (int64_t i = 0; i < S; ++i)
    for (int64_t j = 0; j < S; ++j) {
      const double X = j + 0.5 - S / 2.0, Y = S / 2.0 - i - 0.5;
      v[static_cast<size_t>(i * S + j)] = std::exp(-((X - cx) * (X - cx) + (Y - cy) * (Y - cy)) / (2 * sigma * sigma));
    }
  return Tensor::from_vector(v, {1, 1, S, S});
}
}  // namespace

TEST(Action, BilinearRotationsOnASmoothBlob) {
  // An off-centre Gaussian blob (σ = 5 px, centre (6, 3) from the image centre) on 48x48. Bilinear
  // interpolation of f errs by at most (h²/8)(max|f_xx| + max|f_yy|) = 1/(4σ²) per resampling
  // (h = 1 px, |f_xx| <= 1/σ²), and resampling is a convex combination, so it does not grow earlier
  // errors. act(g, act(h, x)) resamples at most twice and act(g∘h, x) once: they differ by at most
  // 3/(4σ²) = 0.03 from each other, plus the blob's mass that zero fill may cut at the border
  // (the blob centre is >= 17 px from every edge after rotation: exp(-17²/(2σ²)) < 0.003).
  const double sigma = 5, a = 6, b = 3;
  const int64_t S = 48;
  const double B = 1.0 / (4 * sigma * sigma), cut = std::exp(-17.0 * 17.0 / (2 * sigma * sigma));
  const Tensor x = blob(S, a, b, sigma);
  const Group G = Group::parse("D8");
  std::vector<Tensor> gx;
  for (int64_t g = 0; g < G.order(); ++g) {
    gx.push_back(act(G, g, x, FieldKind::Scalar));
    // Against the analytic image: the blob centre moved by g (flip x -> -x, then turn CCW).
    const double th = G.angle_degrees(g) * M_PI / 180.0, fx = G.element(g).reflect ? -a : a;
    const Tensor expected = blob(S, std::cos(th) * fx - std::sin(th) * b, std::sin(th) * fx + std::cos(th) * b, sigma);
    EXPECT_TRUE(all_close(gx.back(), expected, 0, B + cut)) << G.element_name(g);
  }
  for (int64_t g = 0; g < G.order(); ++g)
    for (int64_t h = 0; h < G.order(); ++h)
      ASSERT_TRUE(all_close(act(G, g, gx[static_cast<size_t>(h)], FieldKind::Scalar),
                            gx[static_cast<size_t>(G.compose(g, h))], 0, 3 * B + 2 * cut))
          << G.element_name(g) << " ∘ " << G.element_name(h);
  // The check can fail: turning the other way puts the blob elsewhere.
  EXPECT_FALSE(all_close(act(G, 1, x, FieldKind::Scalar), act(G, 7, x, FieldKind::Scalar), 0, 0.3));
}

TEST(Action, QuarterTurnsOfC8AreExactAndVectorsTurnBy45Degrees) {
  const Group C8 = Group::parse("C8"), C4 = Group::parse("C4");
  const Tensor x = randn({2, 2, 6, 6}, 3);
  for (int64_t k = 0; k < 4; ++k) {
    EXPECT_TRUE(bitwise_equal(act(C8, 2 * k, x, FieldKind::Scalar), act(C4, k, x, FieldKind::Scalar)));
    EXPECT_TRUE(bitwise_equal(act(C8, 2 * k, x, FieldKind::Vector), act(C4, k, x, FieldKind::Vector)));
  }
  const auto M = vector_matrix(C8, 1);
  const double h = std::sqrt(0.5);
  EXPECT_NEAR(M[0], h, 1e-15);
  EXPECT_NEAR(M[1], -h, 1e-15);
  EXPECT_NEAR(M[2], h, 1e-15);
  EXPECT_NEAR(M[3], h, 1e-15);
  // Leading dims of any number are accepted by the bilinear path.
  const Tensor x3 = randn({2, 6, 6}, 4);
  EXPECT_TRUE(bitwise_equal(act(C8, 1, x3, FieldKind::Scalar),
                            act(C8, 1, x3.reshape({2, 1, 6, 6}), FieldKind::Scalar).reshape({2, 6, 6})));
}

namespace {
// Central differences on a periodic grid, x to the right (column + 1) and y up (row - 1).
Tensor ddx(const Tensor& f) { return mul(sub(roll(f, {-1}, {-1}), roll(f, {1}, {-1})), 0.5); }
Tensor ddy(const Tensor& f) { return mul(sub(roll(f, {1}, {-2}), roll(f, {-1}, {-2})), 0.5); }
Tensor curl(const Tensor& v) { return sub(ddx(v.narrow(-3, 1, 1)), ddy(v.narrow(-3, 0, 1))); }
Tensor divergence(const Tensor& v) { return add(ddx(v.narrow(-3, 0, 1)), ddy(v.narrow(-3, 1, 1))); }
}  // namespace

TEST(Action, CurlIsPseudoScalarAndDivergenceIsScalar) {
  // The discrete operators are D4-symmetric stencils, so both identities hold exactly up to the
  // rounding of the same differences taken in another order (atol 1e-14 on O(1) values, float64).
  for (const char* spec : {"D4", "T2xD4"}) {
    const Group G = Group::parse(spec);
    const Tensor v = randn({3, 2, 8, 8}, 5, DType::F64);
    for (int64_t g = 0; g < G.order(); ++g) {
      const Tensor gv = act(G, g, v, FieldKind::Vector);
      EXPECT_TRUE(all_close(curl(gv), act(G, g, curl(v), FieldKind::PseudoScalar), 0, 1e-14)) << G.element_name(g);
      EXPECT_TRUE(all_close(divergence(gv), act(G, g, divergence(v), FieldKind::Scalar), 0, 1e-14))
          << G.element_name(g);
    }
    // The identities are not vacuous: the curl is not a scalar under reflections.
    const int64_t f = G.index_of(Element{0, true, 0, 0});
    EXPECT_FALSE(all_close(curl(act(G, f, v, FieldKind::Vector)), act(G, f, curl(v), FieldKind::Scalar), 0, 1e-3));
  }
}

// ============================================================================ boxes

namespace {
// A mask that is 1 on the pixels whose centres lie inside the integer box (x1, y1, x2, y2).
Tensor box_mask(int64_t H, int64_t W, const std::vector<int64_t>& b) {
  std::vector<float> v(static_cast<size_t>(H * W), 0.f);
  for (int64_t i = b[1]; i < b[3]; ++i)
    for (int64_t j = b[0]; j < b[2]; ++j) v[static_cast<size_t>(i * W + j)] = 1.f;
  return Tensor::from_vector(v, {1, H, W});
}
// The bounding box (x1, y1, x2, y2) of a mask's nonzero pixels, or empty.
std::vector<double> mask_box(const Tensor& m) {
  const int64_t H = m.size(-2), W = m.size(-1);
  const auto v = m.to_vector<float>();
  int64_t x1 = W, y1 = H, x2 = -1, y2 = -1;
  for (int64_t i = 0; i < H; ++i)
    for (int64_t j = 0; j < W; ++j)
      if (v[static_cast<size_t>(i * W + j)] != 0.f) {
        x1 = std::min(x1, j);
        x2 = std::max(x2, j);
        y1 = std::min(y1, i);
        y2 = std::max(y2, i);
      }
  if (x2 < 0) return {};
  return {double(x1), double(y1), double(x2 + 1), double(y2 + 1)};
}
}  // namespace

TEST(Action, BoxesByHand) {
  const Group D4 = Group::parse("D4");
  const Tensor box = Tensor::from_vector(std::vector<float>{0, 0, 2, 1}, {4});  // top-left, 2 wide, 1 high
  EXPECT_EQ(act_boxes(D4, 4, box, 4, 4).to_vector<float>(), (std::vector<float>{2, 0, 4, 1}));  // f
  EXPECT_EQ(act_boxes(D4, 1, box, 4, 4).to_vector<float>(), (std::vector<float>{0, 2, 1, 4}));  // r90
  const Group T = Group::parse("T4");  // steps of 2 px on 8x8; step counts 3 -> -1
  const Tensor b8 = Tensor::from_vector(std::vector<float>{2, 2, 4, 5}, {1, 4});
  EXPECT_EQ(act_boxes(T, T.index_of(Element{0, false, 1, 3}), b8, 8, 8).to_vector<float>(),
            (std::vector<float>{4, 4, 6, 7}));  // right 2, down 2 (up -1 step)
  GeometricTensor gt{b8, FieldKind::Boxes, 8, 8};
  EXPECT_TRUE(bitwise_equal(act(T, 5, gt), act_boxes(T, 5, b8, 8, 8)));
}

TEST(Action, BoxesMatchTheBoundingBoxOfTheActedMask) {
  struct Case {
    const char* spec;
    int64_t H, W;
  };
  Generator gen(21);
  for (const Case& c : {Case{"D4", 8, 8}, Case{"T4xD4", 8, 8}, Case{"T2xD2", 6, 10}, Case{"T3xD1", 9, 6}}) {
    const Group G = Group::parse(c.spec, Boundary::Zeros);  // the mask is cut at the border, boxes are clipped
    for (int trial = 0; trial < 6; ++trial) {
      std::vector<int64_t> b(4);
      b[0] = gen.randint(c.W - 1);
      b[2] = b[0] + 1 + gen.randint(c.W - b[0]);
      b[1] = gen.randint(c.H - 1);
      b[3] = b[1] + 1 + gen.randint(c.H - b[1]);
      const Tensor mask = box_mask(c.H, c.W, b);
      const Tensor box = Tensor::from_vector(std::vector<double>{double(b[0]), double(b[1]), double(b[2]), double(b[3])}, {1, 4});
      for (int64_t g = 0; g < G.order(); ++g) {
        auto got = act_boxes(G, g, box, c.H, c.W).to_vector<double>();
        got[0] = std::clamp(got[0], 0.0, double(c.W));
        got[2] = std::clamp(got[2], 0.0, double(c.W));
        got[1] = std::clamp(got[1], 0.0, double(c.H));
        got[3] = std::clamp(got[3], 0.0, double(c.H));
        const auto want = mask_box(act(G, g, mask, FieldKind::Scalar));
        if (want.empty()) EXPECT_TRUE(got[0] == got[2] || got[1] == got[3]) << G.element_name(g);
        else EXPECT_EQ(got, want) << c.spec << " " << G.element_name(g) << " box " << b[0] << "," << b[1] << ","
                                  << b[2] << "," << b[3];
      }
    }
  }
}

TEST(Action, BoxErrors) {
  const Tensor box = Tensor::from_vector(std::vector<float>{0, 0, 2, 1}, {1, 4});
  expect_error([&] { act_boxes(Group::parse("C8"), 1, box, 4, 4); }, {"C8", "r45", "45", "multiples of 90"});
  expect_error([&] { act_boxes(Group::parse("C4"), 1, box, 4, 6); }, {"C4", "r90", "square", "4 x 6"});
  expect_error([&] { act_boxes(Group::parse("C4"), 1, Tensor::zeros({2, 5}), 4, 4); }, {"[2, 5]", "[..., 4]"});
  expect_error([&] { act_boxes(Group::parse("C4"), 1, box, 0, 4); }, {"image size"});
  expect_error([&] { act(Group::parse("C4"), 1, box, FieldKind::Boxes); }, {"act_boxes", "image"});
  // Rotations by 180° keep a non-square image's shape.
  EXPECT_EQ(act_boxes(Group::parse("C4"), 2, box, 4, 6).to_vector<float>(), (std::vector<float>{4, 3, 6, 4}));
}

// ============================================================================ representations

TEST(Action, RepresentationMatricesAreAHomomorphism) {
  for (const char* spec : {"C4", "D4", "flips", "T2xD4", "T2xC2"}) {
    const Group G = Group::parse(spec);
    for (FieldKind kind : {FieldKind::Scalar, FieldKind::PseudoScalar, FieldKind::Vector}) {
      SCOPED_TRACE(std::string(spec) + " " + field_kind_name(kind));
      std::vector<Tensor> rho;
      for (int64_t g = 0; g < G.order(); ++g) rho.push_back(representation_matrix(G, g, kind, 2, 4, 4));
      const int64_t D = 32;
      EXPECT_EQ(rho[0].shape(), (Shape{D, D}));
      EXPECT_EQ(rho[0].dtype(), DType::F64);
      std::vector<double> eye(D * D, 0.0);
      for (int64_t i = 0; i < D; ++i) eye[i * D + i] = 1;
      EXPECT_EQ(rho[0].to_vector<double>(), eye);
      for (int64_t g = 0; g < G.order(); ++g) {
        EXPECT_TRUE(bitwise_equal(rho[static_cast<size_t>(G.inverse(g))], rho[static_cast<size_t>(g)].t().contiguous()));
        for (int64_t h = 0; h < G.order(); ++h)
          ASSERT_TRUE(bitwise_equal(rho[static_cast<size_t>(G.compose(g, h))],
                                    matmul(rho[static_cast<size_t>(g)], rho[static_cast<size_t>(h)])))
              << G.element_name(g) << " ∘ " << G.element_name(h);
      }
    }
  }
}

TEST(Action, RepresentationMatrixActsLikeAct) {
  // ρ(g) vec(x) == vec(g·x), also for the bilinear C8 (a linear map too).
  const Group C8 = Group::parse("C8");
  const Tensor x = randn({1, 2, 5, 5}, 8, DType::F64);
  for (int64_t g : {1, 3}) {
    const Tensor rho = representation_matrix(C8, g, FieldKind::Vector, 2, 5, 5);
    EXPECT_TRUE(all_close(matmul(rho, x.reshape({50})), act(C8, g, x, FieldKind::Vector).reshape({50}), 0, 1e-12));
  }
  expect_error([&] { representation_matrix(C8, 1, FieldKind::Scalar, 2, 64, 64); }, {"8192", "4096"});
  expect_error([&] { representation_matrix(C8, 1, FieldKind::Boxes, 1, 2, 2); }, {"boxes"});
}

TEST(Action, PerSampleElements) {
  const Group G = Group::parse("D4");
  const Tensor x = randn({5, 2, 4, 4}, 9);
  const std::vector<int64_t> elements = {3, 0, 5, 3, 7};
  const Tensor y = act_per_sample(G, elements, x, FieldKind::Vector);
  for (int64_t i = 0; i < 5; ++i)
    EXPECT_TRUE(bitwise_equal(y.select(0, i), act(G, elements[static_cast<size_t>(i)], x.select(0, i), FieldKind::Vector)));
  expect_error([&] { act_per_sample(G, {0, 1}, x, FieldKind::Scalar); }, {"2 elements", "5 rows"});
  expect_error([&] { act_per_sample(G, {0, 1, 2, 3, 8}, x, FieldKind::Scalar); }, {"D4", "8"});
}

// ============================================================================ gradients

TEST(Action, GradientsMatchFiniteDifferences) {
  const Group C8 = Group::parse("C8"), D4 = Group::parse("D4"), Tz = Group::parse("T4", Boundary::Zeros);
  const Tensor a = random_input({1, 2, 5, 5}, 1);
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return act(C8, 3, in[0], FieldKind::Scalar); }, {a}));
  const Tensor v = random_input({2, 4, 4, 4}, 2);
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return act(D4, 5, in[0], FieldKind::Vector); }, {v}));
  const Tensor s = random_input({1, 8, 8}, 3);
  const int64_t t = Tz.index_of(Element{0, false, 3, 2});  // -1 step in x, +2 steps (up) in y, zero fill
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return act(Tz, t, in[0], FieldKind::PseudoScalar); }, {s}));
  Tensor boxes = Tensor::from_vector(std::vector<double>{0.5, 1.0, 2.5, 3.25, 1.0, 0.0, 1.5, 4.0}, {2, 4});
  boxes.requires_grad_(true);  // x1 < x2, y1 < y2: no ties in min / max
  const Group T = Group::parse("T2xD4");
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return act_boxes(T, 13, in[0], 4, 4); }, {boxes}));
}

// ============================================================================ errors

TEST(Action, Errors) {
  const Group C4 = Group::parse("C4");
  expect_error([&] { act(C4, 1, Tensor::zeros({1, 4, 6}), FieldKind::Scalar); },
               {"C4", "r90", "scalar", "[1, 4, 6]", "square"});
  EXPECT_EQ(act(C4, 2, Tensor::zeros({1, 4, 6}), FieldKind::Scalar).shape(), (Shape{1, 4, 6}));  // 180° is fine
  expect_error([&] { act(C4, 4, Tensor::zeros({1, 4, 4}), FieldKind::Scalar); }, {"C4", "4", "0 <= index < 4"});
  expect_error([&] { act(C4, 1, Tensor::zeros({1, 3, 4, 4}), FieldKind::Vector); },
               {"C4", "vector", "[1, 3, 4, 4]", "even"});
  expect_error([&] { act(C4, 1, Tensor::zeros({4}), FieldKind::Scalar); }, {"[4]", "at least 2"});
  const Group T = Group::parse("T4");
  expect_error([&] { act(T, 1, Tensor::zeros({1, 8, 6}), FieldKind::Scalar); }, {"T4", "divisible by 4", "W = 6"});
  expect_error([&] { act(Group::parse("C8"), 1, Tensor::zeros({1, 4, 4}, DType::I64), FieldKind::Scalar); },
               {"C8", "r45", "floating"});
  // Invariant outputs are untouched.
  const Tensor logits = randn({2, 3}, 1);
  EXPECT_TRUE(act(C4, 1, logits, FieldKind::Invariant).same(logits));
}
