// `orbit predict` (train/predict.h).
#include "train/predict.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>

#include "data/dataset.h"
#include "data/image_io.h"
#include "data/transforms.h"
#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "models/registry.h"
#include "train/checkpoint.h"
#include "train/finetune.h"
#include "weights/weights.h"

namespace orbit {

namespace fs = std::filesystem;

std::vector<std::string> images_in_folder(const std::string& dir) {
  std::error_code ec;
  ORBIT_CHECK(fs::is_directory(dir, ec), "predict: folder '", dir, "' does not exist");
  const std::vector<std::string> exts = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tga", ".pgm", ".ppm"};
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::string ext = e.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (std::find(exts.begin(), exts.end(), ext) != exts.end()) out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  ORBIT_CHECK(!out.empty(), "predict: folder '", dir, "' holds no image files (.png, .jpg, .jpeg, .bmp, .gif, .tga, .pgm, .ppm)");
  return out;
}

namespace {

std::string known_models() {
  std::string s;
  for (const auto& [name, d] : list_models()) s += (s.empty() ? "" : ", ") + name;
  return s;
}

}  // namespace

nlohmann::json predict_images(const PredictOptions& o) {
  ORBIT_CHECK(!o.weights.empty(), "predict: --weights FILE is required");
  ORBIT_CHECK(!o.images.empty(), "predict: no image given (--image FILE or --folder DIR)");
  ORBIT_CHECK(o.top >= 1, "predict: --top must be at least 1, got ", o.top);
  ORBIT_CHECK(o.resize >= -1 && o.crop >= -1, "predict: --resize and --crop must be sizes (0: off), got ", o.resize, " and ", o.crop);
  Metadata meta;
  const NamedTensors tensors = load_safetensors(o.weights, &meta);
  check_not_a_checkpoint(o.weights, meta, "predict: --weights");
  const std::string name = !o.model.empty() ? o.model : meta.count("model") ? meta["model"] : "";
  ORBIT_CHECK(!name.empty(), "predict: ", o.weights, " names no model in its metadata; give --model NAME (", known_models(), ")");
  ORBIT_CHECK(o.model.empty() || !meta.count("model") || meta["model"] == o.model, "predict: ", o.weights, " holds a \"",
              meta["model"], "\" model, but --model is \"", o.model, "\"");

  // The input channels and the number of classes from the file's shapes.
  const WeightShapes shapes = infer_weight_shapes(name, tensors, "predict: " + o.weights);
  ModelOptions mo;
  mo.in_channels = shapes.in_channels;
  mo.num_classes = shapes.num_classes;
  ORBIT_CHECK(mo.in_channels == 1 || mo.in_channels == 3, "predict: the model takes ", mo.in_channels,
              " input channels; images can be read as 1 (grey) or 3 (RGB)");
  auto model = create_model(name, mo);
  StateDict sd;
  for (const auto& [k, v] : tensors) sd.insert(k, v);
  model->load_state_dict(sd, /*strict=*/true);
  model->eval();

  // Preprocessing.
  const std::optional<StoredInput> stored = stored_input(o.weights, meta);
  const bool orbit_run = stored.has_value();
  std::vector<double> mean = o.mean, std = o.std;
  if (mean.empty() && std.empty()) {
    if (orbit_run) {
      const data::ChannelStats n = for_model_channels(stored->normalization, mo.in_channels);
      mean = n.mean;
      std = n.std;
    } else if (mo.in_channels == 3) {
      mean = {0.485, 0.456, 0.406};  // ImageNet's, as torchvision's pretrained models expect
      std = {0.229, 0.224, 0.225};
    }
  }
  ORBIT_CHECK(static_cast<int64_t>(mean.size()) == mo.in_channels && static_cast<int64_t>(std.size()) == mo.in_channels,
              "predict: a ", mo.in_channels, "-channel model needs ", mo.in_channels, " values for --mean and --std, got ",
              mean.size(), " and ", std.size(), orbit_run || mo.in_channels == 3 ? "" : " (the file has no normalization metadata)");
  // An orbit run's model sees each image as its run read the training images: at the images' channel
  // count (a grey run on an RGB model: read grey, then copied to the model's channels) and, when the
  // run's images were S x S, in the run's image format (shorter side resized to S, central crop; as
  // data::to_image_format, without rounding to 8-bit levels).
  const int64_t run_channels = orbit_run && stored->image_channels > 0 ? stored->image_channels : mo.in_channels;
  ORBIT_CHECK(run_channels == mo.in_channels || (run_channels == 1 && mo.in_channels == 3), "predict: ", o.weights,
              " says its run's images had ", run_channels, " channel(s), but the model takes ", mo.in_channels);
  const int64_t run_size = orbit_run ? stored->image_size : 0;
  const bool run_format = run_size > 0 && o.resize < 0 && o.crop < 0;
  const int64_t resize = o.resize >= 0 ? o.resize : run_format ? run_size : orbit_run ? 0 : 256;
  const int64_t crop = o.crop >= 0 ? o.crop : run_format ? run_size : orbit_run ? 0 : 224;

  std::vector<std::string> labels;
  if (!o.labels.empty()) {
    std::ifstream in(o.labels);
    ORBIT_CHECK(in.good(), "predict: cannot read the labels file '", o.labels, "'");
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      labels.push_back(line);
    }
    ORBIT_CHECK(static_cast<int64_t>(labels.size()) == mo.num_classes, "predict: ", o.labels, " has ", labels.size(),
                " lines, but the model has ", mo.num_classes, " classes");
  } else if (meta.count("classes")) {
    labels = stored_classes(o.weights, meta);
  }

  nlohmann::json out = {{"model", name},
                        {"weights", o.weights},
                        {"num_classes", mo.num_classes},
                        {"preprocessing", {{"resize", resize}, {"crop", crop}, {"mean", mean}, {"std", std}}},
                        {"images", nlohmann::json::array()}};
  NoGradGuard ng;
  for (const std::string& path : o.images) {
    Tensor img = data::read_image(path, static_cast<int>(run_channels));
    if (run_format) {
      img = data::to_image_format(img, {0, run_size}, path);
    } else if (resize > 0) {
      img = data::quantize_8bit(data::resize_shorter(img, resize));  // as torchvision on 8-bit images
    }
    if (crop > 0 && !run_format) {
      ORBIT_CHECK(img.size(1) >= crop && img.size(2) >= crop, "predict: ", path, " is ", img.size(1), "x", img.size(2),
                  " after resizing, smaller than the crop of ", crop, "; lower --crop or raise --resize");
      img = data::center_crop(img, crop, crop);
    }
    if (run_channels < mo.in_channels) img = cat(std::vector<Tensor>(static_cast<size_t>(mo.in_channels), img), 0);
    img = data::normalize_channels(img, mean, std);
    const Tensor logits = (*model)(img.unsqueeze(0)).select(0, 0);
    const std::vector<double> p = softmax(logits, 0).to_vector<double>();
    std::vector<int64_t> order(p.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
    const int64_t k = std::min<int64_t>(o.top, static_cast<int64_t>(p.size()));
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    nlohmann::json top = nlohmann::json::array();
    for (int64_t i = 0; i < k; ++i) {
      const int64_t c = order[static_cast<size_t>(i)];
      top.push_back({{"class", c},
                     {"label", c < static_cast<int64_t>(labels.size()) ? labels[static_cast<size_t>(c)] : std::to_string(c)},
                     {"probability", p[static_cast<size_t>(c)]}});
    }
    out["images"].push_back({{"path", path}, {"top", top}, {"logits", logits.to_vector<double>()}});
  }
  return out;
}

}  // namespace orbit
