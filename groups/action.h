// How a group element acts on tensors, by what the tensor *is* (its field type):
//
//   Invariant     class logits, labels, any output that must not change: g·y = y
//   Scalar        images and feature maps [..., C, H, W]: (g·x)(p) = x(g⁻¹ p), channels untouched
//   PseudoScalar  like Scalar, and the sign flips under reflections (vorticity):
//                 (g·w)(p) = det(g) · w(g⁻¹ p)
//   Vector        2-D vector fields [..., 2k, H, W], channels in (v_x, v_y) pairs with x to the
//                 right and y up (velocity): (g·v)(p) = M(g) · v(g⁻¹ p), M(g) = R F^reflect (2x2)
//   Boxes         axis-aligned boxes [..., 4] as (x1, y1, x2, y2) in pixel coordinates of an
//                 H x W image (x = column, y = row, row 0 at the top; torchvision's convention);
//                 D_n with n in {1, 2, 4} and translations only (other angles do not keep boxes
//                 axis-aligned). Boxes ignore the group's Boundary: a translation shifts them by the
//                 signed step counts in (-p/2, p/2] (as Boundary::Zeros does images), never wrapping,
//                 so they may leave the image; clip them if needed.
//
// Spatial conventions (display coordinates, y up, rotation counter-clockwise as displayed):
//   g·x = translate_t( rotate_θ( flip^reflect(x) ) ), i.e. first the flip (left-right: x -> -x),
//   then the rotation about the image centre, then the shift. Rotations by multiples of 90° use
//   rot90 (exact pixel permutations, square images); other angles use bilinear interpolation with
//   zero fill (orbit::rotate). A translation by (tx, ty) steps moves content right by tx*W/p pixels
//   and up by ty*H/p pixels: cyclic (roll) for Boundary::Periodic, zero fill for Boundary::Zeros.
//
// Every action is built from differentiable engine ops (flip, rot90, roll, rotate, pad/narrow,
// mul), so gradients flow through it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "groups/group.h"

namespace orbit::groups {

enum class FieldKind { Invariant, Scalar, PseudoScalar, Vector, Boxes };

// "invariant" (alias "logits"), "scalar" (alias "image"), "pseudo_scalar", "vector", "boxes".
// Throws naming the string and listing the accepted names.
FieldKind parse_field_kind(const std::string& s);
const char* field_kind_name(FieldKind k);

// A tensor tagged with what it is, so the right action is applied.
struct GeometricTensor {
  Tensor tensor;
  FieldKind kind = FieldKind::Scalar;
  int64_t image_height = 0, image_width = 0;  // Boxes only: the image the boxes live in
};

// g·x for one element g of G, applied to every item of x.
//   Scalar / PseudoScalar / Vector: x has dim >= 2 (the last two are H, W; Vector: dim >= 3 with an
//   even size at dim -3). Rotations other than 0°/180° need H == W; the translation step needs H and
//   W divisible by p. Rotations by non-multiples of 90° need a floating x (any leading dims).
//   Boxes: x [..., 4]; image_height/width > 0 are required (pass them through act_boxes).
//   Errors name the group, the element, the field kind and the shape received.
Tensor act(const Group& G, int64_t g, const Tensor& x, FieldKind kind);
Tensor act(const Group& G, int64_t g, const GeometricTensor& x);  // uses x.kind (and the image size for boxes)
Tensor act_boxes(const Group& G, int64_t g, const Tensor& boxes, int64_t image_height, int64_t image_width);

// A different element per item: row i of x (dim 0) is acted on by elements[i]. Rows sharing an
// element are acted on together (one act() call per distinct element); the result keeps x's row order.
Tensor act_per_sample(const Group& G, const std::vector<int64_t>& elements, const Tensor& x, FieldKind kind);

// The 2x2 matrix M(g) acting on vector components (x right, y up), row-major {m00, m01, m10, m11}.
std::vector<double> vector_matrix(const Group& G, int64_t g);
// det M(g): +1 for rotations, -1 for elements with a reflection.
int sign_of(const Group& G, int64_t g);

// The dense matrix of the linear map x -> g·x on flattened [C, H, W] tensors of one item (kind Scalar,
// PseudoScalar or Vector), built by acting on the basis vectors; float64 [C*H*W, C*H*W]. For tests
// of ρ(g∘h) = ρ(g)ρ(h) on small sizes (throws when C*H*W > 4096).
Tensor representation_matrix(const Group& G, int64_t g, FieldKind kind, int64_t C, int64_t H, int64_t W);

}  // namespace orbit::groups
