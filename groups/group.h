// Finite groups of isometries of the square pixel grid, as used for equivariant fine-tuning:
//
//   C_n            rotations by multiples of 360°/n                         ("C4", "C8")
//   D_n            rotations and reflections, order 2n                       ("D4", "D1" = "flips")
//   T_p            cyclic translations by multiples of size/p along x and y  ("T4")
//   T_p x C_n/D_n  translations combined with rotations (n in {1, 2, 4})     ("T4xD4")
//
// Every element is one affine map of the plane, in display coordinates (x to the right, y up, origin
// at the image centre):
//
//   g(p) = R(rotation * 360°/n) · F^reflect · p + t,     F = the reflection x -> -x (a left-right flip),
//   t = (tx, ty) * (size / p)                            (translations with step size / p)
//
// Composition is composition of maps, a∘b = "first b, then a":
//   (R1 F1, t1) ∘ (R2 F2, t2) = (R1 F1 R2 F2, t1 + R1 F1 t2),  with F R(θ) = R(-θ) F.
// Combined with translations this is the semidirect product T ⋊ D_n (rotating a shift rotates it),
// which is what makes act(g, act(h, x)) == act(g∘h, x) hold exactly.
//
// Element 0 is always the identity. Elements are ordered rotation fastest, then reflection, then
// translation: index = rotation + n * (reflect + r * (tx + p * ty)), r = 2 with reflections, else 1.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace orbit::groups {

struct Element {
  int64_t rotation = 0;   // in units of 360°/n, in [0, n)
  bool reflect = false;   // the flip x -> -x, applied before the rotation
  int64_t tx = 0, ty = 0; // translation in steps, each in [0, p)
  bool operator==(const Element& o) const {
    return rotation == o.rotation && reflect == o.reflect && tx == o.tx && ty == o.ty;
  }
};

// How translated images are filled at the border.
enum class Boundary {
  Periodic,  // cyclic shifts (a periodic grid): the translation action is exact
  Zeros,     // shifts by the signed representative in (-p/2, p/2] steps, zero fill (not a group
             // action at the border; for non-periodic data)
};

class Group {
 public:
  // n >= 1 rotations; reflections adds the flip; p >= 1 translation steps per axis (1: none).
  // Translations combine only with n in {1, 2, 4} (a shift rotated by 45° is not a grid shift).
  // Throws orbit::Error naming the bad argument.
  Group(int64_t n, bool reflections, int64_t p = 1, Boundary boundary = Boundary::Periodic);

  // Parses "C<n>", "D<n>", "flips" (= D1), "T<p>", "T<p>xC<n>", "T<p>xD<n>", "trivial" (= C1),
  // case-sensitive. Throws orbit::Error naming the spec and listing the accepted forms.
  static Group parse(const std::string& spec, Boundary boundary = Boundary::Periodic);
  // The accepted forms, for messages and help: "C<n>, D<n>, flips, T<p>, T<p>xC<n>, T<p>xD<n>, trivial".
  static std::string accepted_specs();

  const std::string& name() const { return name_; }  // canonical spec: "C4", "D4", "T4xD4", "C1"
  // The name for people: the canonical spec, with the config's word added where the spec alone is
  // obscure ("D1 (flips)", "C1 (trivial)").
  std::string label() const;
  int64_t order() const { return static_cast<int64_t>(elements_.size()); }
  int64_t rotations() const { return n_; }
  bool has_reflections() const { return reflections_; }
  int64_t translation_steps() const { return p_; }
  Boundary boundary() const { return boundary_; }

  const Element& element(int64_t i) const;  // throws for i outside [0, order())
  int64_t index_of(const Element& e) const; // throws for an element not in the group
  int64_t identity() const { return 0; }
  int64_t compose(int64_t a, int64_t b) const;  // a∘b (b acts first)
  int64_t inverse(int64_t a) const;
  // table[a][b] = compose(a, b).
  std::vector<std::vector<int64_t>> cayley_table() const;

  // Rotation angle of element i in degrees, counter-clockwise as displayed, in [0, 360).
  double angle_degrees(int64_t i) const;
  // "e", "r90", "r45", "f", "r90f" (flip, then rotate by 90°), "t(1,0)", "t(1,0)r90f".
  std::string element_name(int64_t i) const;
  // True when every element maps pixels to pixels exactly (n in {1, 2, 4}).
  bool exact_on_pixels() const { return n_ == 1 || n_ == 2 || n_ == 4; }
  // True when the group contains elements that move a non-square image out of its own shape
  // (rotations by 90°/270°, or any rotation other than 0°/180°): such groups need square inputs.
  bool needs_square_input() const { return n_ != 1 && n_ != 2; }

 private:
  int64_t n_ = 1, p_ = 1;
  bool reflections_ = false;
  Boundary boundary_ = Boundary::Periodic;
  std::string name_;
  std::vector<Element> elements_;
  std::vector<int64_t> compose_table_;  // order * order
  std::vector<int64_t> inverse_;
};

}  // namespace orbit::groups
