#include "train/report.h"

#include <cmath>
#include <cstdio>

#include <stb/stb_image_write.h>

#include "engine/error.h"
#include "engine/ops.h"
#include "groups/group.h"
#include "train/config.h"
#include "train/plot.h"

namespace orbit {

void write_run_plots(const std::string& out_dir, const nlohmann::json& r) {
  Series loss{"loss", {}, {}}, task{"task loss", {}, {}}, pen{"penalty R", {}, {}};
  bool any_pen = false;
  for (const auto& e : r.at("history")) {
    const double ep = e["epoch"];
    loss.x.push_back(ep), loss.y.push_back(e["loss"]);
    task.x.push_back(ep), task.y.push_back(e["task_loss"]);
    pen.x.push_back(ep), pen.y.push_back(e["penalty"]);
    any_pen |= e["penalty"].get<double>() != 0;
  }
  std::vector<Series> ls = {loss, task};
  if (any_pen) ls.push_back(pen);
  write_text_file(out_dir + "/loss.svg", svg_line_chart("training loss", "epoch", "loss", ls));
  const auto& m = r.at("metrics");
  if (!m["angles"].empty()) {
    Series s{"test accuracy", m["angles"].get<std::vector<double>>(), {}};
    for (double a : m["angle_accuracy"].get<std::vector<double>>()) s.y.push_back(100 * a);
    write_text_file(out_dir + "/angle.svg", svg_line_chart("accuracy against the rotation angle", "angle (degrees)",
                                                           "accuracy (%)", {s}));
  }
}

void write_cv_plot(const std::string& out_dir, const nlohmann::json& cv) {
  std::vector<Series> score, err;
  for (const auto& p : cv.at("points")) {
    const std::string name = "lr " + nlohmann::json(p["lr"]).dump();
    auto find = [&](std::vector<Series>& v, const std::string& n) -> Series& {
      for (auto& s : v)
        if (s.name == n) return s;
      v.push_back({n, {}, {}});
      return v.back();
    };
    const double lam = p["lambda"];
    const double x = std::log10(std::max(lam, 1e-3));  // lambda = 0 plots at log10 = -3
    Series& m = find(score, name + ": mean");
    m.x.push_back(x), m.y.push_back(100 * p["mean"].get<double>());
    Series& lo = find(score, name + ": mean - std");
    lo.x.push_back(x), lo.y.push_back(100 * (p["mean"].get<double>() - p["std"].get<double>()));
    Series& hi = find(score, name + ": mean + std");
    hi.x.push_back(x), hi.y.push_back(100 * (p["mean"].get<double>() + p["std"].get<double>()));
    Series& e = find(err, name);
    e.x.push_back(x), e.y.push_back(p.value("equivariance_error", 0.0));
  }
  const std::string metric = cv.value("metric", "score"), group = cv.value("group", "");
  std::string chose;
  if (cv.contains("best"))
    chose = str_cat("; chose lambda ", cv["best"]["lambda"].dump(), " (", cv["best"].value("rule", "best"), ")");
  write_text_file(out_dir + "/cv.svg",
                  svg_line_chart(str_cat(cv.value("folds", 0), "-fold cross-validation: ", metric, " (", group, ")", chose),
                                 "log10 lambda (lambda = 0 at -3)", metric + " (%)", score));
  write_text_file(out_dir + "/cv_equivariance.svg",
                  svg_line_chart(str_cat("validation equivariance error (", group, ")"), "log10 lambda (lambda = 0 at -3)",
                                 "||f(gx) - f(x)|| / ||f(x)||", err));
}

std::string summarize_metrics(const nlohmann::json& r) {
  const auto& m = r.at("metrics");
  char buf[256];
  std::snprintf(buf, sizeof buf, "accuracy %.2f%%", 100 * m["accuracy"].get<double>());
  std::string s = buf;
  for (const auto& [g, o] : m["orbits"].items()) {
    // The metrics are keyed by the canonical name (D1 is the group a config calls "flips").
    const std::string label = groups::Group::parse(g).label();
    std::snprintf(buf, sizeof buf, " | %s: orbit %.2f%%, consistency %.2f%%, error %.4f", label.c_str(),
                  100 * o["orbit_accuracy"].get<double>(), 100 * o["consistency"].get<double>(),
                  o["equivariance_error"].get<double>());
    s += buf;
  }
  std::snprintf(buf, sizeof buf, " | %lld forward pass(es) per input", static_cast<long long>(m["forward_passes_per_input"].get<int64_t>()));
  return s + buf;
}

std::string encode_png(const Tensor& image) {
  ORBIT_CHECK(image.dim() == 3 && (image.size(0) == 1 || image.size(0) == 3),
              "encode_png: expected an image [C, H, W] with C = 1 or 3, got ", shape_str(image.shape()));
  const int64_t C = image.size(0), H = image.size(1), W = image.size(2);
  const std::vector<float> v = image.to(DType::F32).contiguous().to_vector<float>();
  std::vector<unsigned char> px(C * H * W);
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x)
      for (int64_t c = 0; c < C; ++c) {
        const float f = std::min(1.f, std::max(0.f, v[(c * H + y) * W + x]));
        px[(y * W + x) * C + c] = static_cast<unsigned char>(std::lround(f * 255.f));
      }
  std::string out;
  auto sink = [](void* ctx, void* data, int size) { static_cast<std::string*>(ctx)->append(static_cast<char*>(data), size); };
  ORBIT_CHECK(stbi_write_png_to_func(sink, &out, static_cast<int>(W), static_cast<int>(H), static_cast<int>(C), px.data(),
                                     static_cast<int>(W * C)) != 0,
              "encode_png: the PNG encoder failed for an image ", shape_str(image.shape()));
  return out;
}

namespace {
std::string base64(const std::string& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string o;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8) |
                       static_cast<unsigned char>(in[i + 2]);
    o += t[v >> 18], o += t[(v >> 12) & 63], o += t[(v >> 6) & 63], o += t[v & 63];
  }
  if (i + 1 == in.size()) {
    const unsigned v = static_cast<unsigned char>(in[i]) << 16;
    o += t[v >> 18], o += t[(v >> 12) & 63], o += "==";
  } else if (i + 2 == in.size()) {
    const unsigned v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8);
    o += t[v >> 18], o += t[(v >> 12) & 63], o += t[(v >> 6) & 63], o += '=';
  }
  return o;
}

}  // namespace

std::string svg_image_grid(const std::string& title, const std::vector<std::string>& column_titles,
                           const std::vector<GridRow>& rows, int cell) {
  const int left = 170, top = 50, label_h = 16, pad = 6;
  const int cols = static_cast<int>(column_titles.size());
  const int width = left + cols * (cell + pad) + pad, row_h = cell + label_h + pad;
  const int height = top + static_cast<int>(rows.size()) * row_h + pad;
  std::string s = str_cat("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"", width, "\" height=\"", height,
                          "\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
                          "<text x=\"", width / 2, "\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">", svg_escape(title), "</text>\n");
  for (int j = 0; j < cols; ++j)
    s += str_cat("<text x=\"", left + j * (cell + pad) + cell / 2, "\" y=\"", top - 8, "\" text-anchor=\"middle\">",
                 svg_escape(column_titles[j]), "</text>\n");
  for (size_t i = 0; i < rows.size(); ++i) {
    const int y = top + static_cast<int>(i) * row_h;
    s += str_cat("<text x=\"", left - 8, "\" y=\"", y + cell / 2, "\" text-anchor=\"end\">", svg_escape(rows[i].title), "</text>\n");
    for (size_t j = 0; j < rows[i].cells.size(); ++j) {
      const GridCell& c = rows[i].cells[j];
      const int x = left + static_cast<int>(j) * (cell + pad);
      s += str_cat("<image x=\"", x, "\" y=\"", y, "\" width=\"", cell, "\" height=\"", cell,
                   "\" style=\"image-rendering:pixelated\" href=\"data:image/png;base64,", base64(encode_png(c.image)), "\"/>\n");
      s += str_cat("<text x=\"", x + cell / 2, "\" y=\"", y + cell + 12, "\" text-anchor=\"middle\" fill=\"",
                   c.correct ? "#1a7f37" : "#cf222e", "\">", svg_escape(c.label), "</text>\n");
    }
  }
  return s + "</svg>\n";
}

}  // namespace orbit
