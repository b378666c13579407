// Finite groups of isometries of the pixel grid: elements, composition, inverses, names and parsing.
//
// Composition is computed from the affine maps themselves (see group.h):
//   (L1, t1) ∘ (L2, t2) = (L1 L2, t1 + L1 t2),  L = R(rotation * 360°/n) F^reflect,
// with F R(θ) = R(-θ) F, so L1 L2 has rotation k1 ± k2 (minus when L1 reflects) and reflect r1 xor r2.
// The translation part lives on the lattice Z_p x Z_p of steps; L1 acts on it by quarter turns and
// the flip, which is why translations combine only with n in {1, 2, 4}.
#include "groups/group.h"

#include <cctype>
#include <cmath>
#include <sstream>
#include <utility>

#include "engine/error.h"

namespace orbit::groups {

namespace {

constexpr int64_t kMaxRotations = 360;  // C360: one-degree steps
constexpr int64_t kMaxSteps = 256;      // T256: 65536 translations
constexpr int64_t kMaxTableOrder = 1024;  // larger groups compose arithmetically, without a table

int64_t mod(int64_t a, int64_t m) { return ((a % m) + m) % m; }

// L = R(k * 360°/n) F^reflect applied to an integer vector (x, y) of translation steps; n in {1, 2, 4}.
void apply_linear(int64_t n, int64_t k, bool reflect, int64_t& x, int64_t& y) {
  if (reflect) x = -x;  // F first
  const int64_t quarter_turns = mod(k * (4 / n), 4);
  for (int64_t q = 0; q < quarter_turns; ++q) {  // (x, y) -> (-y, x), a counter-clockwise quarter turn
    const int64_t nx = -y, ny = x;
    x = nx;
    y = ny;
  }
}

// Parses a positive decimal integer that fills `s` entirely; false on anything else.
bool parse_positive(const std::string& s, int64_t& out) {
  if (s.empty() || s.size() > 9) return false;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  out = std::stoll(s);
  return out > 0;
}

// "45", "120", "51.4286": an angle without trailing zeros.
std::string angle_str(double deg) {
  std::ostringstream os;
  if (deg == std::floor(deg)) os << static_cast<int64_t>(deg);
  else os << deg;
  return os.str();
}

}  // namespace

Group::Group(int64_t n, bool reflections, int64_t p, Boundary boundary)
    : n_(n), p_(p), reflections_(reflections), boundary_(boundary) {
  ORBIT_CHECK(n >= 1 && n <= kMaxRotations, "Group: received n = ", n, " rotations, expected 1 <= n <= ",
              kMaxRotations);
  ORBIT_CHECK(p >= 1 && p <= kMaxSteps, "Group: received p = ", p, " translation steps, expected 1 <= p <= ",
              kMaxSteps);
  ORBIT_CHECK(p == 1 || n == 1 || n == 2 || n == 4, "Group: received translations (p = ", p, ") with n = ", n,
              " rotations, expected n in {1, 2, 4}: a grid shift rotated by ", angle_str(360.0 / n),
              " degrees is not a grid shift");

  const std::string body = std::string(reflections ? "D" : "C") + std::to_string(n);
  if (p == 1) name_ = body;
  else if (n == 1 && !reflections) name_ = "T" + std::to_string(p);
  else name_ = "T" + std::to_string(p) + "x" + body;

  // Element order: rotation fastest, then reflection, then tx, then ty (see index_of).
  const int64_t r = reflections ? 2 : 1;
  elements_.reserve(static_cast<size_t>(n * r * p * p));
  for (int64_t ty = 0; ty < p; ++ty)
    for (int64_t tx = 0; tx < p; ++tx)
      for (int64_t f = 0; f < r; ++f)
        for (int64_t k = 0; k < n; ++k) elements_.push_back(Element{k, f == 1, tx, ty});

  const int64_t N = order();
  inverse_.resize(static_cast<size_t>(N));
  for (int64_t a = 0; a < N; ++a) {
    // (L, t)^-1 = (L^-1, -L^-1 t); a reflection L = R F is its own inverse, a rotation R(k) has R(-k).
    const Element& e = elements_[static_cast<size_t>(a)];
    Element inv;
    inv.reflect = e.reflect;
    inv.rotation = e.reflect ? e.rotation : mod(-e.rotation, n);
    int64_t x = e.tx, y = e.ty;
    if (p > 1) apply_linear(n, inv.rotation, inv.reflect, x, y);
    inv.tx = mod(-x, p);
    inv.ty = mod(-y, p);
    inverse_[static_cast<size_t>(a)] = index_of(inv);
  }
  if (N <= kMaxTableOrder) {
    // Filled from the arithmetic compose() (which uses the table only once it is complete).
    std::vector<int64_t> table;
    table.reserve(static_cast<size_t>(N * N));
    for (int64_t a = 0; a < N; ++a)
      for (int64_t b = 0; b < N; ++b) table.push_back(compose(a, b));
    compose_table_ = std::move(table);
  }
}

const Element& Group::element(int64_t i) const {
  ORBIT_CHECK(i >= 0 && i < order(), "Group ", name_, ": received element index ", i, ", expected 0 <= index < ",
              order());
  return elements_[static_cast<size_t>(i)];
}

int64_t Group::index_of(const Element& e) const {
  const bool ok = e.rotation >= 0 && e.rotation < n_ && (reflections_ || !e.reflect) && e.tx >= 0 &&
                  e.tx < p_ && e.ty >= 0 && e.ty < p_;
  ORBIT_CHECK(ok, "Group ", name_, ": received the element (rotation ", e.rotation, ", reflect ", e.reflect,
              ", tx ", e.tx, ", ty ", e.ty, "), expected rotation in [0, ", n_, ")",
              reflections_ ? "" : ", no reflection", ", tx and ty in [0, ", p_, ")");
  const int64_t r = reflections_ ? 2 : 1;
  return e.rotation + n_ * ((e.reflect ? 1 : 0) + r * (e.tx + p_ * e.ty));
}

int64_t Group::compose(int64_t a, int64_t b) const {
  const Element& x = element(a);
  const Element& y = element(b);
  if (!compose_table_.empty()) return compose_table_[static_cast<size_t>(a * order() + b)];
  Element c;
  c.rotation = mod(x.reflect ? x.rotation - y.rotation : x.rotation + y.rotation, n_);
  c.reflect = x.reflect != y.reflect;
  int64_t tx = y.tx, ty = y.ty;
  if (p_ > 1) apply_linear(n_, x.rotation, x.reflect, tx, ty);
  c.tx = mod(x.tx + tx, p_);
  c.ty = mod(x.ty + ty, p_);
  return index_of(c);
}

int64_t Group::inverse(int64_t a) const {
  element(a);  // range check
  return inverse_[static_cast<size_t>(a)];
}

std::vector<std::vector<int64_t>> Group::cayley_table() const {
  std::vector<std::vector<int64_t>> t(static_cast<size_t>(order()), std::vector<int64_t>(static_cast<size_t>(order())));
  for (int64_t a = 0; a < order(); ++a)
    for (int64_t b = 0; b < order(); ++b) t[static_cast<size_t>(a)][static_cast<size_t>(b)] = compose(a, b);
  return t;
}

double Group::angle_degrees(int64_t i) const {
  return static_cast<double>(element(i).rotation) * 360.0 / static_cast<double>(n_);
}

std::string Group::element_name(int64_t i) const {
  const Element& e = element(i);
  if (i == identity()) return "e";
  std::string s;
  if (e.tx != 0 || e.ty != 0) s += "t(" + std::to_string(e.tx) + "," + std::to_string(e.ty) + ")";
  if (e.rotation != 0) s += "r" + angle_str(angle_degrees(i));
  if (e.reflect) s += "f";
  return s;
}

std::string Group::label() const {
  if (name_ == "D1") return "D1 (flips)";
  if (name_ == "C1") return "C1 (trivial)";
  return name_;
}

std::string Group::accepted_specs() { return "C<n>, D<n>, flips, T<p>, T<p>xC<n>, T<p>xD<n>, trivial"; }

Group Group::parse(const std::string& spec, Boundary boundary) {
  const std::string help = "expected one of " + accepted_specs() + " (n >= 1, p >= 1; e.g. C4, D4, T4xD4)";
  if (spec == "trivial") return Group(1, false, 1, boundary);
  if (spec == "flips") return Group(1, true, 1, boundary);

  // Splits "T<p>x<rest>" / "T<p>" / "<rest>" and parses each part; any leftover is an error.
  int64_t p = 1, n = 1;
  bool reflections = false;
  std::string rest = spec;
  if (!rest.empty() && rest[0] == 'T') {
    const size_t x = rest.find('x');
    const std::string steps = rest.substr(1, x == std::string::npos ? std::string::npos : x - 1);
    ORBIT_CHECK(parse_positive(steps, p), "Group::parse: received '", spec, "', whose translation part 'T",
                steps, "' is not T<p> with a positive integer p; ", help);
    rest = x == std::string::npos ? "" : rest.substr(x + 1);
    if (x == std::string::npos) return Group(1, false, p, boundary);
    ORBIT_CHECK(!rest.empty(), "Group::parse: received '", spec, "', with nothing after 'x'; ", help);
  }
  ORBIT_CHECK(!rest.empty() && (rest[0] == 'C' || rest[0] == 'D'), "Group::parse: received '", spec, "'; ", help);
  reflections = rest[0] == 'D';
  ORBIT_CHECK(parse_positive(rest.substr(1), n), "Group::parse: received '", spec, "', whose part '", rest,
              "' is not ", rest[0], "<n> with a positive integer n; ", help);
  try {
    return Group(n, reflections, p, boundary);
  } catch (const Error& e) {
    throw Error(str_cat("Group::parse: received '", spec, "': ", e.what(), "; ", help));
  }
}

}  // namespace orbit::groups
