// `orbit predict` (train/predict.h) and weights/export_torch.py end to end: a torchvision model
// exported by the script, run by the CLI on PNG files, against PyTorch's logits. Needs python3 with
// torch and torchvision (Debian's python3-torch, python3-torchvision); skipped, visibly, without.
// The option and error checks run everywhere.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <tuple>

#include "data/dataset.h"
#include "data/image_io.h"
#include "models/registry.h"
#include "test_util.h"
#include "train/predict.h"
#include "weights/weights.h"

namespace orbit {
namespace {

using testing::expect_error;

// $ORBIT_PYTHON, else Debian's /usr/bin/python3 (where python3-torch installs), else python3 on PATH.
std::string python() {
  const char* p = std::getenv("ORBIT_PYTHON");
  if (p) return p;
  return std::ifstream("/usr/bin/python3").good() ? "/usr/bin/python3" : "python3";
}

bool has_torchvision() {
  return std::system((python() + " -c 'import torch, torchvision' > /dev/null 2>&1").c_str()) == 0;
}

// A deterministic RGB image with structure at several scales, values k / 255.
Tensor test_image(int64_t h, int64_t w) {
  std::vector<double> v(static_cast<size_t>(3 * h * w));
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      const double r = std::fmod(0.8 * x + 0.1 * y, 256.0), g = std::fmod(0.9 * y + 0.3 * x, 256.0);
      const double b = 128 + 100 * std::sin(x / 17.0) * std::cos(y / 23.0);
      v[static_cast<size_t>(y * w + x)] = std::floor(r) / 255;
      v[static_cast<size_t>(h * w + y * w + x)] = std::floor(g) / 255;
      v[static_cast<size_t>(2 * h * w + y * w + x)] = std::floor(b) / 255;
    }
  return Tensor::from_vector(v, {3, h, w});
}

std::vector<double> json_logits(const nlohmann::json& r, size_t i) { return r["images"][i]["logits"].get<std::vector<double>>(); }

double max_error_of_scale(const std::vector<double>& a, const std::vector<double>& b) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) err = std::max(err, std::abs(a[i] - b[i])), scale = std::max(scale, std::abs(b[i]));
  return a.size() == b.size() && scale > 0 ? err / scale : INFINITY;
}

TEST(Predict, ExportedTorchvisionModelGivesPyTorchsLogits) {
  if (!has_torchvision()) GTEST_SKIP() << "needs " << python() << " with torch and torchvision (python3-torch, python3-torchvision)";
  testing::TempDir dir;
  const std::string src = ORBIT_SOURCE_DIR;
  const std::string weights = dir.file("r18.safetensors");
  ASSERT_EQ(std::system((python() + " " + src + "/weights/export_torch.py --torchvision resnet18 --seed 3 " + weights +
                         " > /dev/null").c_str()),
            0);
  data::write_png(dir.file("a.png"), test_image(224, 224));
  data::write_png(dir.file("b.png"), test_image(260, 300));
  // PyTorch: the same seeded torchvision model on (1) a.png as it is, normalized; (2) b.png through
  // torchvision's ImageClassification preset of resnet18 (resize 256, crop 224 on the uint8 image).
  const std::string script = dir.file("ref.py");
  {
    std::ofstream f(script);
    f << "import json, sys, torch, torchvision\n"
         "import torchvision.transforms.functional as TF\n"
         "from torchvision.io import read_image\n"
         "torch.manual_seed(3)\n"
         "m = torchvision.models.resnet18().eval()\n"
         "a = TF.normalize(read_image(sys.argv[1]).float() / 255, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])\n"
         "b = torchvision.models.ResNet18_Weights.DEFAULT.transforms()(read_image(sys.argv[2]))\n"
         "with torch.no_grad():\n"
         "    out = [m(x[None])[0].tolist() for x in (a, b)]\n"
         "    torch.save({'state_dict': m.state_dict(), 'epoch': 1}, sys.argv[4])\n"
         "    for t in m.state_dict().values():\n"
         "        if t.is_floating_point(): t.copy_(t.bfloat16().float())\n"
         "    out.append(m(a[None])[0].tolist())\n"
         "json.dump(out, open(sys.argv[3], 'w'))\n";
  }
  ASSERT_EQ(std::system((python() + " " + script + " " + dir.file("a.png") + " " + dir.file("b.png") + " " + dir.file("ref.json") +
                         " " + dir.file("ck.pth")).c_str()),
            0);
  std::ifstream rf(dir.file("ref.json"));
  const nlohmann::json ref = nlohmann::json::parse(rf);

  // (1) The model alone: float32 through 18 layers, 1e-4 of the logit scale.
  PredictOptions o;
  o.weights = weights;
  o.model = "resnet18";
  o.images = {dir.file("a.png")};
  o.resize = 0;
  o.crop = 0;
  const nlohmann::json r = predict_images(o);
  EXPECT_EQ(r["num_classes"], 1000);
  EXPECT_LT(max_error_of_scale(json_logits(r, 0), ref[0].get<std::vector<double>>()), 1e-4);
  // (2) With the default preprocessing. Both round the resized image to 8 bits, but the resize is
  // computed in double here and in float there, so pixels whose value lies within float rounding
  // of a half level (0.3% of this smooth synthetic image) differ by one level: 1e-3 of the scale.
  o.images = {dir.file("b.png")};
  o.resize = o.crop = -1;
  const nlohmann::json r2 = predict_images(o);
  EXPECT_EQ(r2["preprocessing"]["resize"], 256);
  EXPECT_EQ(r2["preprocessing"]["crop"], 224);
  EXPECT_LT(max_error_of_scale(json_logits(r2, 0), ref[1].get<std::vector<double>>()), 1e-3);
  // (3) A training checkpoint ({"state_dict": ..., "epoch": ...} saved with torch.save) exported in
  // BF16: the same as PyTorch's model with its weights rounded to BF16 (1e-4 of the scale).
  const std::string bf16 = dir.file("ck_bf16.safetensors");
  ASSERT_EQ(std::system((python() + " " + src + "/weights/export_torch.py " + dir.file("ck.pth") + " " + bf16 +
                         " --dtype bf16 > /dev/null").c_str()),
            0);
  PredictOptions o3 = o;
  o3.weights = bf16;
  o3.images = {dir.file("a.png")};
  o3.resize = o3.crop = 0;
  EXPECT_LT(max_error_of_scale(json_logits(predict_images(o3), 0), ref[2].get<std::vector<double>>()), 1e-4);
  // The CLI prints the same top class.
  const std::string cli = std::string(ORBIT_BINARY_DIR) + "/orbit predict --weights " + weights + " --model resnet18 --image " +
                          dir.file("b.png") + " --top 1 --json > " + dir.file("cli.json");
  ASSERT_EQ(std::system(cli.c_str()), 0);
  std::ifstream cf(dir.file("cli.json"));
  EXPECT_EQ(nlohmann::json::parse(cf)["images"][0]["top"][0]["class"], r2["images"][0]["top"][0]["class"]);
}

TEST(Predict, OrbitModelMetadataAndBadOptions) {
  testing::TempDir dir;
  ModelOptions mo;
  mo.in_channels = 1;
  mo.num_classes = 3;
  auto m = create_model("small_cnn", mo);
  const std::string w = dir.file("model.safetensors");
  save_weights(w, *m, {{"model", "small_cnn"}, {"num_classes", "3"}, {"classes", R"(["cat", "dog", "eel"])"},
                       {"normalization", R"({"mean": [0.5], "std": [0.25]})"}});
  std::vector<double> grey(28 * 28);
  for (size_t i = 0; i < grey.size(); ++i) grey[i] = static_cast<double>(i % 256) / 255;
  data::write_png(dir.file("x.png"), Tensor::from_vector(grey, {1, 28, 28}));
  data::write_png(dir.file("y.png"), Tensor::zeros({1, 28, 28}));
  PredictOptions o;
  o.weights = w;
  o.images = images_in_folder(dir.path().string());
  ASSERT_EQ(o.images.size(), 2u);
  o.top = 2;
  const nlohmann::json r = predict_images(o);
  EXPECT_EQ(r["model"], "small_cnn");
  EXPECT_EQ(r["preprocessing"]["resize"], 0);  // an orbit run's model sees the image as it is
  EXPECT_EQ(r["preprocessing"]["mean"], nlohmann::json({0.5}));
  ASSERT_EQ(r["images"].size(), 2u);
  // The top classes are named from the metadata and sorted by probability; the logits are the model's.
  const auto& top = r["images"][0]["top"];
  ASSERT_EQ(top.size(), 2u);
  EXPECT_GE(top[0]["probability"].get<double>(), top[1]["probability"].get<double>());
  EXPECT_EQ(top[0]["label"], std::vector<std::string>({"cat", "dog", "eel"})[top[0]["class"].get<size_t>()]);
  {
    NoGradGuard ng;
    m->eval();
    const Tensor x = div(sub(data::read_image(dir.file("x.png"), 1), Tensor::scalar(0.5)), Tensor::scalar(0.25));
    const auto want = (*m)(x.unsqueeze(0)).to_vector<double>();
    EXPECT_LT(max_error_of_scale(json_logits(r, 0), want), 1e-6);
  }

  // A grey run on an RGB model written with one channel's statistics (files from before the
  // normalization was stored per model channel): the grey image is read as RGB and each channel
  // normalized with those statistics.
  {
    ModelOptions rgb_mo = mo;
    rgb_mo.in_channels = 3;
    auto rgb = create_model("small_cnn", rgb_mo);
    const std::string rw = dir.file("rgb_stem.safetensors");
    save_weights(rw, *rgb, {{"model", "small_cnn"}, {"num_classes", "3"}, {"normalization", R"({"mean": [0.5], "std": [0.25]})"}});
    PredictOptions b = o;
    b.weights = rw;
    b.images = {dir.file("x.png")};
    const nlohmann::json rr = predict_images(b);
    EXPECT_EQ(rr["preprocessing"]["mean"], nlohmann::json({0.5, 0.5, 0.5}));
    NoGradGuard ng;
    rgb->eval();
    const Tensor x = div(sub(data::read_image(dir.file("x.png"), 3), Tensor::scalar(0.5)), Tensor::scalar(0.25));
    EXPECT_LT(max_error_of_scale(json_logits(rr, 0), (*rgb)(x.unsqueeze(0)).to_vector<double>()), 1e-6);
  }
  expect_error([&] { PredictOptions b = o; b.weights = dir.file("missing.safetensors"); predict_images(b); }, {"missing.safetensors"});
  expect_error([&] { PredictOptions b = o; b.images.clear(); predict_images(b); }, {"no image"});
  expect_error([&] { PredictOptions b = o; b.model = "resnet50"; predict_images(b); }, {"small_cnn", "resnet50"});
  expect_error([&] { PredictOptions b = o; b.top = 0; predict_images(b); }, {"--top", "0"});
  expect_error([&] { PredictOptions b = o; b.mean = {0.1, 0.2}; b.std = {1, 1}; predict_images(b); }, {"1-channel", "2"});
  expect_error([&] { PredictOptions b = o; b.crop = 64; predict_images(b); }, {"28x28", "crop of 64"});
  expect_error([&] { PredictOptions b = o; b.images = {dir.file("nope.png")}; predict_images(b); }, {"nope.png"});
  expect_error([&] { images_in_folder(dir.file("none")); }, {"none", "does not exist"});
  {
    std::ofstream f(dir.file("labels.txt"));
    f << "a\nb\n";
  }
  expect_error([&] { PredictOptions b = o; b.labels = dir.file("labels.txt"); predict_images(b); }, {"labels.txt", "2 lines", "3 classes"});
  // Metadata edited by hand: each value that does not read is named with its key and the file.
  for (const auto& [key, value, expected] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"normalization", "{\"mean\": [0.5]", "which is not JSON"},
           {"normalization", "{\"mean\": [0.5], \"std\": [0]}", "each std above 0"},
           {"normalization", "{\"mean\": \"grey\", \"std\": [0.25]}", "one value per channel"},
           {"image_channels", "three", "expected an integer"},
           {"image_size", "28px", "expected an integer"},
           {"classes", "[\"cat\", 2, \"eel\"]", "expected a list of class names"}}) {
    Metadata meta = {{"model", "small_cnn"}, {"num_classes", "3"}, {"classes", R"(["cat", "dog", "eel"])"},
                     {"normalization", R"({"mean": [0.5], "std": [0.25]})"}};
    meta[key] = value;
    const std::string hw = dir.file("edited.safetensors");
    save_weights(hw, *m, meta);
    expect_error([&] { PredictOptions b = o; b.weights = hw; predict_images(b); }, {hw, "'" + key + "'", expected});
  }
  // Without metadata the architecture must be named.
  save_weights(dir.file("bare.safetensors"), *m);
  expect_error([&] { PredictOptions b = o; b.weights = dir.file("bare.safetensors"); predict_images(b); }, {"--model", "small_cnn"});
  // A file of another architecture is named as such.
  expect_error([&] { PredictOptions b = o; b.weights = dir.file("bare.safetensors"); b.model = "resnet18"; predict_images(b); },
               {"resnet18", "conv1.weight"});
  // The CLI: a misspelt option is answered with the closest, --image and --folder among them; one
  // without its value is named.
  const std::string cli = std::string(ORBIT_BINARY_DIR) + "/orbit predict --weights " + w;
  const std::string out = dir.file("cli.txt");
  EXPECT_NE(std::system((cli + " --imag " + dir.file("x.png") + " > " + out + " 2>&1").c_str()), 0);
  EXPECT_NE(testing::read_file_bytes(out).find("unknown option --imag (did you mean \"--image\"?)"), std::string::npos) << testing::read_file_bytes(out);
  EXPECT_NE(testing::read_file_bytes(out).find("--folder --json"), std::string::npos) << testing::read_file_bytes(out);
  EXPECT_NE(std::system((cli + " --image > " + out + " 2>&1").c_str()), 0);
  EXPECT_NE(testing::read_file_bytes(out).find("option --image needs a value"), std::string::npos) << testing::read_file_bytes(out);
  EXPECT_EQ(std::system((cli + " --image " + dir.file("x.png") + " --json > " + out + " 2>&1").c_str()), 0) << testing::read_file_bytes(out);
  // `orbit evaluate --weights` takes the architecture from the file's metadata, and a file that answers
  // for another number of classes than the dataset has is refused, pointing to the run-config form.
  for (const char* split : {"train", "test"})
    for (const char* cls : {"a", "b"}) {
      std::filesystem::create_directories(dir.file(std::string("ds/") + split + "/" + cls));
      data::write_png(dir.file(std::string("ds/") + split + "/" + cls + "/0.png"), Tensor::from_vector(grey, {1, 28, 28}));
    }
  const std::string ev = std::string(ORBIT_BINARY_DIR) + "/orbit evaluate --weights " + w + " --dataset folder:" + dir.file("ds");
  EXPECT_NE(std::system((ev + " > " + out + " 2>&1").c_str()), 0);
  EXPECT_NE(testing::read_file_bytes(out).find("answers for 3 classes [\"cat\", \"dog\", \"eel\"], but folder:"), std::string::npos)
      << testing::read_file_bytes(out);
  EXPECT_NE(testing::read_file_bytes(out).find("has 2; the weights of a run on some of the classes are evaluated with the run's config: "
                                               "orbit evaluate --config "), std::string::npos) << testing::read_file_bytes(out);
  // ... and one whose class count was edited by hand is named with its key.
  {
    const std::string hw = dir.file("edited_count.safetensors");
    save_weights(hw, *m, {{"model", "small_cnn"}, {"num_classes", "three"}});
    EXPECT_NE(std::system((std::string(ORBIT_BINARY_DIR) + "/orbit evaluate --weights " + hw + " --dataset folder:" +
                           dir.file("ds") + " > " + out + " 2>&1").c_str()), 0);
    EXPECT_NE(testing::read_file_bytes(out).find(hw + ": metadata key 'num_classes' holds 'three'; expected an integer"),
              std::string::npos) << testing::read_file_bytes(out);
  }
  // A file that stores its normalization (an orbit run's) is evaluated with it, not with the dataset's
  // statistics: the loss printed is that of the file's normalization.
  ModelOptions two = mo;
  two.num_classes = 2;
  auto m2 = create_model("small_cnn", two);
  const std::string w2 = dir.file("two.safetensors");
  save_weights(w2, *m2, {{"model", "small_cnn"}, {"num_classes", "2"}, {"normalization", R"({"mean": [0.3], "std": [0.7]})"}});
  const std::string ev2 = std::string(ORBIT_BINARY_DIR) + "/orbit evaluate --weights " + w2 + " --dataset folder:" + dir.file("ds");
  ASSERT_EQ(std::system((ev2 + " > " + out + " 2>&1").c_str()), 0) << testing::read_file_bytes(out);
  {
    NoGradGuard ng;
    m2->eval();
    const Tensor x = div(sub(data::read_image(dir.file("ds/test/a/0.png"), 1), Tensor::scalar(0.3)), Tensor::scalar(0.7)).unsqueeze(0);
    const Tensor logits = (*m2)(cat({x, x}, 0));
    const double loss = cross_entropy(logits, Tensor::from_vector(std::vector<int64_t>{0, 1}, {2})).item();
    char want[64];
    std::snprintf(want, sizeof want, "loss %.4f over 2 images", loss);
    EXPECT_NE(testing::read_file_bytes(out).find(want), std::string::npos) << want << " in " << testing::read_file_bytes(out);
  }
  // A file without a normalization (an `orbit train` run's) is evaluated with the training split's
  // statistics, whichever split it is evaluated on.
  {
    const std::string w3 = dir.file("train_run.safetensors");
    save_weights(w3, *m2, {{"model", "small_cnn"}, {"num_classes", "2"}});
    const data::ChannelStats st =
        data::channel_stats(data::load_dataset("folder:" + dir.file("ds"), data::Split::Train));
    ASSERT_EQ(std::system((std::string(ORBIT_BINARY_DIR) + "/orbit evaluate --weights " + w3 + " --dataset folder:" +
                           dir.file("ds") + " > " + out + " 2>&1").c_str()), 0) << testing::read_file_bytes(out);
    NoGradGuard ng;
    const Tensor x = div(sub(data::read_image(dir.file("ds/test/a/0.png"), 1), Tensor::scalar(st.mean[0])),
                         Tensor::scalar(st.std[0])).unsqueeze(0);
    const double loss = cross_entropy((*m2)(cat({x, x}, 0)), Tensor::from_vector(std::vector<int64_t>{0, 1}, {2})).item();
    char want[64];
    std::snprintf(want, sizeof want, "loss %.4f over 2 images", loss);
    EXPECT_NE(testing::read_file_bytes(out).find(want), std::string::npos) << want << " in " << testing::read_file_bytes(out);
  }
  // A file trained on images of another channel count is refused, pointing to the run-config form.
  save_weights(w2, *m2, {{"model", "small_cnn"}, {"num_classes", "2"}, {"image_channels", "3"},
                         {"normalization", R"({"mean": [0.3, 0.3, 0.3], "std": [0.7, 0.7, 0.7]})"}});
  EXPECT_NE(std::system((ev2 + " > " + out + " 2>&1").c_str()), 0);
  EXPECT_NE(testing::read_file_bytes(out).find("was trained on 3-channel images"), std::string::npos) << testing::read_file_bytes(out);
}

}  // namespace
}  // namespace orbit
