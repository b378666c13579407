#include "train/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "engine/error.h"

namespace orbit {

std::string svg_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
}

namespace {

// About five "nice" tick values (1, 2, 5 times a power of ten) covering [lo, hi].
// With integer_steps (integer data such as epochs), the step is at least 1.
std::vector<double> nice_ticks(double lo, double hi, bool integer_steps = false) {
  const double span = hi - lo;
  const double raw = span / 5;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag : 10 * mag;
  if (integer_steps) step = std::max(step, 1.0);
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) t.push_back(std::abs(v) < 1e-12 * step ? 0.0 : v);
  return t;
}

std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

}  // namespace

std::string svg_line_chart(const std::string& title, const std::string& x_label, const std::string& y_label,
                           const std::vector<Series>& series, int width, int height) {
  // Series k is drawn in colour k % 8 and, past the first eight, with a dash pattern (k / 8) % 4, so
  // up to 32 series look different from one another.
  static const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};
  static const char* dashes[] = {"", "7,3", "2,3", "9,3,2,3"};
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  bool integer_x = true;
  for (const auto& s : series) {
    ORBIT_CHECK(s.x.size() == s.y.size(), "svg_line_chart: series '", s.name, "' has ", s.x.size(), " x and ", s.y.size(), " y values");
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      integer_x = integer_x && s.x[i] == std::floor(s.x[i]);
      xmin = std::min(xmin, s.x[i]);
      xmax = std::max(xmax, s.x[i]);
      ymin = std::min(ymin, s.y[i]);
      ymax = std::max(ymax, s.y[i]);
    }
  }
  if (!std::isfinite(xmin)) xmin = 0, xmax = 1, ymin = 0, ymax = 1;
  if (xmax - xmin < 1e-12) xmin -= 0.5, xmax += 0.5;
  if (ymax - ymin < 1e-12) ymin -= 0.5, ymax += 0.5;
  const double pad = 0.05 * (ymax - ymin);
  ymin -= pad;
  ymax += pad;
  const double L = 70, R = width - 160, T = 40, B = height - 50;
  // The legend sits right of the plot, one row per series (its line from R + 12 to R + 32, its name
  // from legend_x); the picture grows to hold it: as wide as the longest name (about 7 pixels per
  // character of the 12-pixel font) and as tall as where one more row would go.
  const double legend_x = R + 38;
  auto legend_y = [&](size_t k) { return T + 10 + 20.0 * k; };
  size_t longest = 0;
  for (const auto& s : series) longest = std::max(longest, s.name.size());
  const int svg_width = std::max<int>(width, static_cast<int>(legend_x + 7 * longest + 10));
  const int svg_height = std::max<int>(height, static_cast<int>(legend_y(series.size())));
  auto px = [&](double x) { return L + (x - xmin) / (xmax - xmin) * (R - L); };
  auto py = [&](double y) { return B - (y - ymin) / (ymax - ymin) * (B - T); };

  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << svg_width << "\" height=\"" << svg_height
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  o << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o << "<text x=\"" << (L + R) / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">" << svg_escape(title) << "</text>\n";
  for (double t : nice_ticks(ymin, ymax)) {
    o << "<line x1=\"" << L << "\" x2=\"" << R << "\" y1=\"" << py(t) << "\" y2=\"" << py(t) << "\" stroke=\"#e5e5e5\"/>\n";
    o << "<text x=\"" << L - 6 << "\" y=\"" << py(t) + 4 << "\" text-anchor=\"end\">" << num(t) << "</text>\n";
  }
  for (double t : nice_ticks(xmin, xmax, integer_x)) {
    o << "<line x1=\"" << px(t) << "\" x2=\"" << px(t) << "\" y1=\"" << B << "\" y2=\"" << B + 4 << "\" stroke=\"black\"/>\n";
    o << "<text x=\"" << px(t) << "\" y=\"" << B + 18 << "\" text-anchor=\"middle\">" << num(t) << "</text>\n";
  }
  o << "<rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << R - L << "\" height=\"" << B - T
    << "\" fill=\"none\" stroke=\"black\"/>\n";
  o << "<text x=\"" << (L + R) / 2 << "\" y=\"" << height - 12 << "\" text-anchor=\"middle\">" << svg_escape(x_label) << "</text>\n";
  o << "<text transform=\"translate(18," << (T + B) / 2 << ") rotate(-90)\" text-anchor=\"middle\">" << svg_escape(y_label) << "</text>\n";
  for (size_t k = 0; k < series.size(); ++k) {
    const auto& s = series[k];
    const char* c = colors[k % 8];
    const char* d = dashes[(k / 8) % 4];
    const std::string dash = *d ? std::string(" stroke-dasharray=\"") + d + "\"" : "";
    o << "<polyline fill=\"none\" stroke=\"" << c << "\" stroke-width=\"2\"" << dash << " points=\"";
    for (size_t i = 0; i < s.x.size(); ++i)
      if (std::isfinite(s.y[i])) o << px(s.x[i]) << "," << py(s.y[i]) << " ";
    o << "\"/>\n";
    for (size_t i = 0; i < s.x.size(); ++i)
      if (std::isfinite(s.y[i])) o << "<circle cx=\"" << px(s.x[i]) << "\" cy=\"" << py(s.y[i]) << "\" r=\"3\" fill=\"" << c << "\"/>\n";
    const double ly = legend_y(k);
    o << "<line x1=\"" << R + 12 << "\" x2=\"" << R + 32 << "\" y1=\"" << ly << "\" y2=\"" << ly << "\" stroke=\"" << c
      << "\" stroke-width=\"2\"" << dash << "/>\n";
    o << "<text x=\"" << legend_x << "\" y=\"" << ly + 4 << "\">" << svg_escape(s.name) << "</text>\n";
  }
  o << "</svg>\n";
  return o.str();
}

}  // namespace orbit
