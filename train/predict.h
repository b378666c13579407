// Inference with any registered model from a weight file on images: the top classes per image
// (`orbit predict`).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace orbit {

struct PredictOptions {
  std::string weights;              // a .safetensors file (an orbit run's model.safetensors, or a dump)
  std::string model;                // registry name; empty: the file's "model" metadata
  std::vector<std::string> images;  // image files (PNG, JPEG, BMP, ... through stb_image)
  int64_t top = 5;
  // Preprocessing: resize the shorter side to `resize` (bilinear, antialiased; the result rounded to
  // 8-bit levels, as torchvision resizes an 8-bit image), center crop `crop`
  // (0 turns either off; -1: the default, 256 / 224 for a file without orbit's normalization
  // metadata, as torchvision's ImageClassification preset; for an orbit run's model, the run's image
  // format: its images' channels, and their size S when square, an image of another size resized and
  // center-cropped to S as data::to_image_format does),
  // then normalize with mean / std (empty: the file's metadata, else ImageNet's for RGB models).
  int64_t resize = -1, crop = -1;
  std::vector<double> mean, std;
  std::string labels;  // a file with one class name per line; empty: the file's metadata or indices
};

// The images of a folder (files ending .png, .jpg, .jpeg, .bmp, .gif, .tga, .pgm, .ppm; any case),
// sorted by name. Throws when the folder is missing or holds none.
std::vector<std::string> images_in_folder(const std::string& dir);

// Loads the model (in_channels and num_classes from the weight file's shapes, strictly), runs each
// image in eval mode and returns {"model", "num_classes", "preprocessing", "images": [{"path",
// "top": [{"class", "label", "probability"}], "logits"}]}. Throws naming the file or option at
// fault, before any image is run when the options are wrong.
nlohmann::json predict_images(const PredictOptions& options);

}  // namespace orbit
