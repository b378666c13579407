// Minimal SVG line charts for training curves and reports (no dependencies; any browser shows them).
#pragma once

#include <string>
#include <vector>

namespace orbit {

// Text escaped for SVG/XML content and attributes (&, <, >, ").
std::string svg_escape(const std::string& s);

struct Series {
  std::string name;
  std::vector<double> x, y;
};

// A line chart with axes, ticks, a legend and one polyline (with point markers) per series.
std::string svg_line_chart(const std::string& title, const std::string& x_label, const std::string& y_label,
                           const std::vector<Series>& series, int width = 640, int height = 400);

}  // namespace orbit
