// Group actions on tensors by field kind, composed of differentiable engine ops.
//
// Images are acted on as g·x = translate_t(rotate_θ(flip^reflect(x))), which realizes
// (g·x)(p) = x(g⁻¹ p) for g(p) = R F p + t in display coordinates (x right, y up, origin at the
// image centre). On the pixel grid:
//   flip      column j -> W-1-j (x -> -x about the centre)
//   rotate    rot90 for quarter turns (a pixel permutation), orbit::rotate (bilinear) otherwise
//   translate content moves right by tx*W/p columns and up by ty*H/p rows, i.e. towards lower row
//             indices: a roll by (-ty*H/p, +tx*W/p) on (rows, columns), or a zero-filled shift by the
//             signed representative of the step counts for Boundary::Zeros.
#include "groups/action.h"

#include <cmath>
#include <map>

#include "engine/ops.h"

namespace orbit::groups {

namespace {

// "act: group C4, element r90 (index 1), kind scalar, shape [2, 3, 8, 8]"
std::string where(const char* op, const Group& G, int64_t g, FieldKind kind, const Shape& shape) {
  return str_cat(op, ": group ", G.name(), ", element ", G.element_name(g), " (index ", g, "), kind ",
                 field_kind_name(kind), ", shape ", shape_str(shape));
}

void check_index(const char* op, const Group& G, int64_t g) {
  ORBIT_CHECK(g >= 0 && g < G.order(), op, ": group ", G.name(), " received element index ", g,
              ", expected 0 <= index < ", G.order());
}

// The number of counter-clockwise quarter turns of element g, or -1 when its angle is not a
// multiple of 90°.
int64_t quarter_turns(const Group& G, int64_t g) {
  const int64_t k4 = G.element(g).rotation * 4;
  return k4 % G.rotations() == 0 ? k4 / G.rotations() : -1;
}

bool is_half_or_no_turn(const Group& G, int64_t g) {
  const int64_t q = quarter_turns(G, g);
  return q == 0 || q == 2;
}

// The signed representative of s steps modulo p, in (-p/2, p/2].
int64_t signed_steps(int64_t s, int64_t p) { return 2 * s > p ? s - p : s; }

// Moves the content of x along `dim` by `shift` positions towards higher indices, filling with zeros.
Tensor shift_with_zeros(const Tensor& x, int64_t dim, int64_t shift) {
  if (shift == 0) return x;
  const int64_t size = x.size(dim);
  const int64_t s = std::min<int64_t>(std::abs(shift), size);
  Shape zshape = x.shape();
  zshape[static_cast<size_t>(normalize_dim(dim, x.dim(), "shift_with_zeros"))] = s;
  const Tensor zeros = Tensor::zeros(zshape, x.dtype(), x.device());
  if (shift > 0) return cat({zeros, x.narrow(dim, 0, size - s)}, dim);
  return cat({x.narrow(dim, s, size - s), zeros}, dim);
}

// a*u + b*v with a, b taken literally when they are 0 or ±1, so quarter-turn matrices act as exact
// signed permutations of the components.
Tensor lincomb(double a, const Tensor& u, double b, const Tensor& v) {
  auto term = [](double c, const Tensor& t) -> Tensor {
    if (c == 1.0) return t;
    if (c == -1.0) return neg(t);
    return mul(t, c);
  };
  if (b == 0.0) return term(a, u);
  if (a == 0.0) return term(b, v);
  return add(term(a, u), term(b, v));
}

// The spatial part of the action on [..., H, W], shared by Scalar, PseudoScalar and Vector.
Tensor act_spatial(const Group& G, int64_t g, const Tensor& x, FieldKind kind) {
  ORBIT_CHECK(x.dim() >= 2, where("act", G, g, kind, x.shape()), ": expected a tensor [..., H, W] with at least 2 dims");
  const Element& e = G.element(g);
  const int64_t H = x.size(-2), W = x.size(-1);
  ORBIT_CHECK(H == W || is_half_or_no_turn(G, g), where("act", G, g, kind, x.shape()),
              ": a rotation by ", G.angle_degrees(g), " degrees needs a square image (H == W), got H = ", H,
              ", W = ", W, "; only rotations by 0 and 180 degrees keep a non-square image's shape");
  const int64_t p = G.translation_steps();
  ORBIT_CHECK(p == 1 || (H % p == 0 && W % p == 0), where("act", G, g, kind, x.shape()),
              ": translations in ", p, " steps need H and W divisible by ", p, ", got H = ", H, ", W = ", W);

  Tensor y = x;
  if (e.reflect) y = flip(y, {-1});
  const int64_t q = quarter_turns(G, g);
  if (q > 0) {
    y = rot90(y, q, {-2, -1});
  } else if (q < 0) {
    ORBIT_CHECK(is_floating(y.dtype()), where("act", G, g, kind, x.shape()),
                ": a rotation by ", G.angle_degrees(g), " degrees interpolates and needs a floating tensor, got ",
                dtype_name(y.dtype()));
    // rotate() takes [N, C, H, W]; it treats every channel alike, so leading dims can be merged.
    const Shape shape = y.shape();
    const Tensor y4 = y.dim() == 4 ? y : y.reshape({-1, 1, H, W});
    y = rotate(y4, G.angle_degrees(g)).reshape(shape);
  }
  if (e.tx != 0 || e.ty != 0) {
    const int64_t sx = G.boundary() == Boundary::Zeros ? signed_steps(e.tx, p) : e.tx;
    const int64_t sy = G.boundary() == Boundary::Zeros ? signed_steps(e.ty, p) : e.ty;
    const int64_t cols = sx * (W / p), rows = -sy * (H / p);  // y up: moving up lowers the row index
    if (G.boundary() == Boundary::Periodic) y = roll(y, {rows, cols}, {-2, -1});
    else y = shift_with_zeros(shift_with_zeros(y, -2, rows), -1, cols);
  }
  return y;
}

// M(g) applied to every (v_x, v_y) channel pair at dim -3.
Tensor act_vector_components(const Group& G, int64_t g, const Tensor& y) {
  const std::vector<double> M = vector_matrix(G, g);
  Shape pairs = y.shape();
  const int64_t C = y.size(-3);
  pairs.insert(pairs.end() - 2, 2);
  pairs[pairs.size() - 4] = C / 2;  // [..., C/2, 2, H, W]
  const Tensor v = y.reshape(pairs);
  const Tensor vx = v.select(-3, 0), vy = v.select(-3, 1);
  const Tensor nx = lincomb(M[0], vx, M[1], vy);
  const Tensor ny = lincomb(M[2], vx, M[3], vy);
  return stack({nx, ny}, -3).reshape(y.shape());
}

}  // namespace

FieldKind parse_field_kind(const std::string& s) {
  if (s == "invariant" || s == "logits") return FieldKind::Invariant;
  if (s == "scalar" || s == "image") return FieldKind::Scalar;
  if (s == "pseudo_scalar") return FieldKind::PseudoScalar;
  if (s == "vector") return FieldKind::Vector;
  if (s == "boxes") return FieldKind::Boxes;
  throw Error(str_cat("parse_field_kind: received '", s, "', expected one of invariant (alias logits), "
                      "scalar (alias image), pseudo_scalar, vector, boxes"));
}

const char* field_kind_name(FieldKind k) {
  switch (k) {
    case FieldKind::Invariant: return "invariant";
    case FieldKind::Scalar: return "scalar";
    case FieldKind::PseudoScalar: return "pseudo_scalar";
    case FieldKind::Vector: return "vector";
    case FieldKind::Boxes: return "boxes";
  }
  return "unknown";
}

std::vector<double> vector_matrix(const Group& G, int64_t g) {
  check_index("vector_matrix", G, g);
  // Exact entries for quarter turns, so that D4 acts on components by signed permutations.
  double c, s;
  switch (quarter_turns(G, g)) {
    case 0: c = 1; s = 0; break;
    case 1: c = 0; s = 1; break;
    case 2: c = -1; s = 0; break;
    case 3: c = 0; s = -1; break;
    default: {
      const double a = G.angle_degrees(g) * M_PI / 180.0;
      c = std::cos(a);
      s = std::sin(a);
    }
  }
  // R = [[c, -s], [s, c]]; R F with F = diag(-1, 1) negates the first column.
  if (G.element(g).reflect) return {-c, -s, -s, c};
  return {c, -s, s, c};
}

int sign_of(const Group& G, int64_t g) {
  check_index("sign_of", G, g);
  return G.element(g).reflect ? -1 : 1;
}

Tensor act(const Group& G, int64_t g, const Tensor& x, FieldKind kind) {
  check_index("act", G, g);
  ORBIT_CHECK(x.defined(), "act: group ", G.name(), ": received an undefined tensor");
  switch (kind) {
    case FieldKind::Invariant:
      return x;
    case FieldKind::Scalar:
      return act_spatial(G, g, x, kind);
    case FieldKind::PseudoScalar: {
      const Tensor y = act_spatial(G, g, x, kind);
      return G.element(g).reflect ? neg(y) : y;
    }
    case FieldKind::Vector: {
      ORBIT_CHECK(x.dim() >= 3 && x.size(-3) % 2 == 0, where("act", G, g, kind, x.shape()),
                  ": expected a vector field [..., 2k, H, W] with an even number of channels at dim -3 "
                  "((v_x, v_y) pairs)");
      return act_vector_components(G, g, act_spatial(G, g, x, kind));
    }
    case FieldKind::Boxes:
      throw Error(str_cat(where("act", G, g, kind, x.shape()),
                          ": boxes need the image size; use act_boxes(G, g, boxes, image_height, image_width) "
                          "or a GeometricTensor with image_height and image_width"));
  }
  return x;
}

Tensor act(const Group& G, int64_t g, const GeometricTensor& x) {
  if (x.kind == FieldKind::Boxes) return act_boxes(G, g, x.tensor, x.image_height, x.image_width);
  return act(G, g, x.tensor, x.kind);
}

Tensor act_boxes(const Group& G, int64_t g, const Tensor& boxes, int64_t image_height, int64_t image_width) {
  check_index("act_boxes", G, g);
  ORBIT_CHECK(boxes.defined(), "act_boxes: group ", G.name(), ": received an undefined tensor");
  const std::string at = where("act_boxes", G, g, FieldKind::Boxes, boxes.shape());
  ORBIT_CHECK(boxes.dim() >= 1 && boxes.size(-1) == 4, at, ": expected boxes [..., 4] as (x1, y1, x2, y2)");
  ORBIT_CHECK(is_floating(boxes.dtype()), at, ": expected floating boxes, got ", dtype_name(boxes.dtype()));
  const int64_t H = image_height, W = image_width;
  ORBIT_CHECK(H > 0 && W > 0, at, ": expected the image size (image_height, image_width) > 0, got (", H, ", ",
              W, ")");
  const int64_t q = quarter_turns(G, g);
  ORBIT_CHECK(q >= 0, at, ": a rotation by ", G.angle_degrees(g),
              " degrees does not keep boxes axis-aligned; boxes accept rotations by multiples of 90 degrees only");
  ORBIT_CHECK(H == W || q % 2 == 0, at, ": a rotation by ", G.angle_degrees(g), " degrees needs a square image, got ",
              H, " x ", W, " (H x W)");
  const int64_t p = G.translation_steps();
  ORBIT_CHECK(p == 1 || (H % p == 0 && W % p == 0), at, ": translations in ", p,
              " steps need the image size divisible by ", p, ", got ", H, " x ", W, " (H x W)");

  // In display coordinates X = x - W/2, Y = H/2 - y the map is P' = L P + t. Written in pixel
  // coordinates: x' = l00 x - l01 y + cx, y' = -l10 x + l11 y + cy. Translations use the signed step
  // counts in (-p/2, p/2] (as Boundary::Zeros), and boxes are shifted, never wrapped.
  const std::vector<double> L = vector_matrix(G, g);
  const Element& e = G.element(g);
  const double tX = static_cast<double>(signed_steps(e.tx, p) * (W / p));
  const double tY = static_cast<double>(signed_steps(e.ty, p) * (H / p));
  const double w2 = W / 2.0, h2 = H / 2.0;
  const double cx = -L[0] * w2 + L[1] * h2 + tX + w2;
  const double cy = h2 + L[2] * w2 - L[3] * h2 - tY;
  auto map_x = [&](const Tensor& x, const Tensor& y) { return add(lincomb(L[0], x, -L[1], y), cx); };
  auto map_y = [&](const Tensor& x, const Tensor& y) { return add(lincomb(-L[2], x, L[3], y), cy); };
  const Tensor x1 = boxes.select(-1, 0), y1 = boxes.select(-1, 1);
  const Tensor x2 = boxes.select(-1, 2), y2 = boxes.select(-1, 3);
  // Each new coordinate depends on one old coordinate only, so the images of the corners (x1, y1)
  // and (x2, y2) already hold the extremes over all four corners.
  const Tensor ax = map_x(x1, y1), ay = map_y(x1, y1);
  const Tensor bx = map_x(x2, y2), by = map_y(x2, y2);
  return stack({minimum(ax, bx), minimum(ay, by), maximum(ax, bx), maximum(ay, by)}, -1);
}

Tensor act_per_sample(const Group& G, const std::vector<int64_t>& elements, const Tensor& x, FieldKind kind) {
  ORBIT_CHECK(x.defined() && x.dim() >= 1, "act_per_sample: group ", G.name(),
              ": expected a tensor with a batch dim, got ", x.defined() ? shape_str(x.shape()) : "undefined");
  ORBIT_CHECK(static_cast<int64_t>(elements.size()) == x.size(0), "act_per_sample: group ", G.name(), ": received ",
              elements.size(), " elements for ", x.size(0), " rows of x ", shape_str(x.shape()),
              ", expected one element per row");
  for (int64_t g : elements) check_index("act_per_sample", G, g);
  if (elements.empty()) return x;
  std::map<int64_t, std::vector<int64_t>> rows_of;  // element -> rows it acts on
  for (size_t i = 0; i < elements.size(); ++i) rows_of[elements[i]].push_back(static_cast<int64_t>(i));
  if (rows_of.size() == 1) return act(G, elements[0], x, kind);

  std::vector<Tensor> pieces;
  std::vector<int64_t> position(elements.size());  // row i of x sits at position[i] in cat(pieces)
  int64_t next = 0;
  for (const auto& [g, rows] : rows_of) {
    pieces.push_back(act(G, g, index_select(x, 0, Tensor::from_vector(rows, {static_cast<int64_t>(rows.size())}).to(x.device())), kind));
    for (int64_t r : rows) position[static_cast<size_t>(r)] = next++;
  }
  return index_select(cat(pieces, 0), 0, Tensor::from_vector(position, {static_cast<int64_t>(position.size())}).to(x.device()));
}

Tensor representation_matrix(const Group& G, int64_t g, FieldKind kind, int64_t C, int64_t H, int64_t W) {
  check_index("representation_matrix", G, g);
  ORBIT_CHECK(kind != FieldKind::Boxes, "representation_matrix: group ", G.name(),
              ": received kind boxes, expected invariant, scalar, pseudo_scalar or vector (a linear action)");
  ORBIT_CHECK(C >= 1 && H >= 1 && W >= 1, "representation_matrix: received C, H, W = ", C, ", ", H, ", ", W,
              ", expected all >= 1");
  const int64_t D = C * H * W;
  ORBIT_CHECK(D <= 4096, "representation_matrix: received C*H*W = ", D, " (", C, " x ", H, " x ", W,
              "), expected at most 4096 (the matrix is dense)");
  // Row i of the basis batch is e_i; acting on the batch gives g·e_i in row i, the i-th column of ρ(g).
  std::vector<double> eye(static_cast<size_t>(D * D), 0.0);
  for (int64_t i = 0; i < D; ++i) eye[static_cast<size_t>(i * D + i)] = 1.0;
  const Tensor basis = Tensor::from_vector(eye, {D, C, H, W});
  return act(G, g, basis, kind).reshape({D, D}).t().contiguous();
}

}  // namespace orbit::groups
