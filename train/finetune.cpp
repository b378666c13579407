#include "train/finetune.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "data/loader.h"
#include "data/split.h"
#include "engine/ops.h"
#include "engine/parallel.h"
#include "groups/canonicalize.h"
#include "groups/equivariance.h"
#include "groups/metrics.h"
#include "groups/regularizer.h"
#include "models/registry.h"
#include "train/checkpoint.h"
#include "train/interrupt.h"
#include "train/optim.h"
#include "train/plot.h"
#include "train/progress.h"
#include "train/report.h"
#include "train/scheduler.h"
#include "train/trainer.h"
#include "weights/weights.h"

namespace orbit {

namespace fs = std::filesystem;

const ConfigSchema& run_config_schema() {
  static const ConfigSchema schema = [] {
    std::vector<std::string> models;
    for (const auto& [name, desc] : list_models()) models.push_back(name);
    ConfigSchema s("run config");
    add_image_format_keys(
        s.string("model", "resnet_small", models, "architecture from the model registry")
            .string("dataset", "fashion-mnist", {}, "a dataset name (" + [] {
              std::string k;
              for (const auto& n : data::known_datasets()) k += (k.empty() ? "" : ", ") + n;
              return k;
            }() + "), folder:PATH (image folders) or idx:PATH (IDX files)")
            .string("data_dir", "data", {}, "folder holding the datasets `make data` writes")
            .int_list("classes", nlohmann::json::array(), 0, 1 << 20,
                      "the dataset's classes to use, relabelled 0..k-1 in this order (empty: all)"))
        .number("fraction", 1.0, 0.0, 1.0, "stratified share of the training images to use, in (0, 1]")
        .string("out_dir", "runs/run", {}, "where checkpoints, results and curves go")
        .string("weights", "", {}, "weight file to start from (a run's model.safetensors); empty: random initialization")
        .boolean("reset_head", true, "replace the classifier head with a new one for this task's classes (with weights)")
        .string_list("freeze", nlohmann::json::array(), {}, "parameter-name prefixes to freeze, e.g. [\"conv1.\", \"layer1.\"]")
        .string("group", "C4", {}, "the symmetry group: " + groups::Group::accepted_specs())
        .string("translation_boundary", "periodic", {"periodic", "zeros"}, "how translations fill the border")
        .string("augment", "none", {"none", "group", "rotation", "hflip"},
                "training augmentation: a random group element, a random angle in [0, 360), or random left-right flips, per image")
        .boolean("equitune", false, "equi-tuning: average the logits over the group (|G| forward passes per input)")
        .boolean("canonicalize", false,
                 "canonicalization: a small scorer picks each input's pose in its orbit and the model sees the input in "
                 "that pose (1 forward pass of the model and |G| of the scorer per input)")
        .number("canon_prior", 1.0, 0.0, 1e6, "canonicalization: weight of the prior that keeps upright training images upright")
        .number("lambda", 0.0, 0.0, 1e6, "weight of the equivariance regularizer (0: off)")
        .string("discrepancy", "kl", {"kl", "sym_kl", "l2"}, "the regularizer's discrepancy")
        .integer("samples", 1, 0, 1 << 20, "group elements drawn per image for the regularizer (0: the whole orbit)")
        .number("reg_fraction", 1.0, 0.0, 1.0, "share of each batch's images that get transformed copies for the regularizer, in (0, 1]")
        .number_list("element_weights", nlohmann::json::array(), 0.0, 1e6,
                     "the regularizer's weight of each non-identity element of the group, in its order (C8: 45, 90, ..., "
                     "315 degrees); an element is drawn (samples 1) or averaged over (samples 0) by weight; empty: uniform")
        .number("copy_task_weight", 0.0, 0.0, 1e6,
                "weight of the task loss on the regularizer's transformed copies, each with its image's label "
                "(class labels are invariant); 0: off. With lambda 0 the copies are drawn the same way and only this "
                "term uses them")
        .boolean("stop_gradient", true, "detach the reference branch f(x) in the regularizer (one-sided)")
        .string("reference", "upright", {"upright", "orbit_mean"},
                "what the regularizer compares each transformed copy with: the upright prediction f(x), or the mean "
                "prediction over the image and its copies (then the upright prediction is pulled to it too)")
        .string_list("taps", nlohmann::json::array(), {}, "submodules whose feature maps are also regularized, e.g. [\"layer2\"]")
        .number("tap_weight", 1.0, 0.0, 1e6, "weight of the feature-map terms relative to the output term")
        .boolean("preserve", false, "penalize only the defect above the starting model's own (measured before training)")
        .string("device", "cpu", {"cpu", "cuda"}, "where the model trains and is evaluated: the CPU, or the GPU (cuda:0; needs the CUDA backend and a GPU)")
        .integer("epochs", 10, 1, 10000, "training epochs")
        .integer("batch_size", 64, 1, 1 << 16, "mini-batch size (before the regularizer's transformed copies)")
        .string("optimizer", "adam", {"sgd", "adam", "adamw"}, "optimizer")
        .number("lr", 1e-3, 1e-8, 10.0, "peak learning rate")
        .number("momentum", 0.9, 0.0, 0.999, "SGD momentum")
        .number("weight_decay", 0.0, 0.0, 1.0, "weight decay (L2 for sgd/adam, decoupled for adamw)")
        .string("schedule", "cosine", {"constant", "cosine"}, "learning-rate schedule per epoch")
        .integer("warmup_epochs", 0, 0, 1000, "linear warm-up epochs before the schedule")
        .number("dropout", 0.0, 0.0, 0.99, "dropout before the classifier")
        .number("label_smoothing", 0.0, 0.0, 0.99, "cross-entropy label smoothing")
        .number("grad_clip", 0.0, 0.0, 1e6, "clip the gradient norm to this value (0: off)")
        .integer("seed", 0, 0, 9007199254740991.0, "seed of the data subset, initialization, shuffling, augmentation and sampling")
        .string_list("eval_groups", nlohmann::json::array({"C4", "C8"}), {}, "groups whose orbits the test set is evaluated on")
        .number("angle_step", 15.0, 0.0, 360.0, "accuracy against the rotation angle in steps of this many degrees (0: off)")
        .number("angle_test_fraction", 1.0, 0.0, 1.0, "stratified share of the evaluation images used for the accuracy against the angle, in (0, 1]")
        .number("test_fraction", 1.0, 0.0, 1.0, "stratified seeded share of the test images to evaluate on, in (0, 1] (quick runs)")
        .integer("eval_batch_size", 100, 1, 1 << 16, "batch size of evaluation")
        .integer("cv_folds", 5, 2, 100, "sweep: folds of the cross-validation")
        .number_list("lambda_grid", nlohmann::json::array({0.3, 1.0, 3.0, 10.0}), 0.0, 1e6, "sweep: values of lambda")
        .number_list("lr_grid", nlohmann::json::array(), 1e-8, 10.0, "sweep: learning rates (empty: the lr key only)")
        .string("cv_metric", "orbit_accuracy", {"accuracy", "orbit_accuracy", "consistency"},
                "sweep: validation metric to maximize (orbit metrics over `group`)")
        .string("cv_rule", "best", {"best", "one_se"},
                "sweep: \"best\" takes the grid point of highest mean validation score; \"one_se\" the largest lambda "
                "whose mean is within one standard error of that highest mean (the one-standard-error rule: the most "
                "equivariant of the models the validation cannot tell apart)");
    return s;
  }();
  return schema;
}

nlohmann::json resolve_run_config(const nlohmann::json& user, bool check_files) {
  // The shares are in (0, 1]: checked before the schema (whose ranges are closed), so 0 and 1.5 get the
  // same message.
  for (const char* key : {"fraction", "reg_fraction", "test_fraction", "angle_test_fraction"}) {
    if (!user.is_object() || !user.contains(key) || !user[key].is_number()) continue;
    const double v = user[key];
    ORBIT_CHECK(v > 0 && v <= 1, "run config: key \"", key, "\": expected a number in (0, 1], got ", user[key].dump());
  }
  nlohmann::json c = run_config_schema().resolve(user);
  image_format_of(c);  // "image_channels": 2 is an error
  const groups::Boundary b = c["translation_boundary"] == "zeros" ? groups::Boundary::Zeros : groups::Boundary::Periodic;
  const groups::Group G = [&] {
    try {
      return groups::Group::parse(c["group"].get<std::string>(), b);
    } catch (const Error& e) {
      throw Error(str_cat("run config: key \"group\": ", e.what()));
    }
  }();
  if (!c["element_weights"].empty()) {
    try {
      groups::check_element_weights(G, c["element_weights"].get<std::vector<double>>(), c["samples"].get<int64_t>());
    } catch (const Error& e) {
      throw Error(str_cat("run config: key \"element_weights\" (group \"", c["group"].get<std::string>(), "\"): ", e.what()));
    }
    ORBIT_CHECK(c["reference"] == "upright", "run config: key \"element_weights\" needs \"reference\": \"upright\", got \"",
                c["reference"].get<std::string>(), "\"");
  }
  for (const auto& g : c["eval_groups"]) {
    try {
      groups::Group::parse(g.get<std::string>(), b);
    } catch (const Error& e) {
      throw Error(str_cat("run config: key \"eval_groups\": ", e.what()));
    }
  }
  const std::string weights = c["weights"];
  ORBIT_CHECK(!check_files || weights.empty() || fs::is_regular_file(weights), "run config: key \"weights\": the weight file \"",
              weights, "\" does not exist (expected a model.safetensors written by `orbit pretrain` or `orbit finetune`)");
  if (check_files && c["device"] == "cuda") {
    try {
      backend(Device::cuda(0));
    } catch (const Error& e) {
      throw Error(str_cat("run config: key \"device\": \"cuda\" is not usable here (", e.what(), "); use \"cpu\""));
    }
  }
  ORBIT_CHECK(G.order() > 1 || c["lambda"].get<double>() == 0, "run config: key \"lambda\": ", c["lambda"].dump(),
              " with the group \"", c["group"].get<std::string>(), "\" (", G.name(), "), whose only element is the identity: "
              "the regularizer would be 0; set \"lambda\": 0 or name a group with more elements");
  ORBIT_CHECK(G.order() > 1 || c["copy_task_weight"].get<double>() == 0, "run config: key \"copy_task_weight\": ",
              c["copy_task_weight"].dump(), " with the group \"", c["group"].get<std::string>(), "\" (", G.name(),
              "), whose only element is the identity: there are no transformed copies; set it to 0 or name a group "
              "with more elements");
  ORBIT_CHECK(c["taps"].empty() || c["lambda"].get<double>() > 0,
              "run config: key \"taps\" needs \"lambda\" > 0 (the taps are part of the regularizer)");
  ORBIT_CHECK(!c["lambda_grid"].empty(), "run config: key \"lambda_grid\" must not be empty");
  if (c["canonicalize"].get<bool>()) {
    ORBIT_CHECK(!c["equitune"].get<bool>(), "run config: keys \"canonicalize\" and \"equitune\" are both true; choose one "
                "(a canonicalized model is already invariant)");
    ORBIT_CHECK(c["augment"] == "none", "run config: key \"canonicalize\" needs \"augment\": \"none\", got \"",
                c["augment"].get<std::string>(), "\" (the canonicalization prior takes the training images as upright)");
    ORBIT_CHECK(c["lambda"].get<double>() == 0, "run config: key \"canonicalize\" needs \"lambda\": 0, got ",
                c["lambda"].get<double>(), " (a canonicalized model is invariant by construction; the regularizer would be 0)");
    ORBIT_CHECK(c["copy_task_weight"].get<double>() == 0, "run config: key \"canonicalize\" needs \"copy_task_weight\": 0, got ",
                c["copy_task_weight"].get<double>(), " (a canonicalized model sees every copy in the same pose)");
  }
  return c;
}

namespace {

groups::Boundary boundary_of(const nlohmann::json& c) {
  return c["translation_boundary"] == "zeros" ? groups::Boundary::Zeros : groups::Boundary::Periodic;
}

// Seeds for independent streams derived from the run seed (splitmix64 of the inputs).
uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t z = a * 0x9E3779B97F4A7C15ULL + b + 0x632BE59BD9B4E019ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

struct Task {
  data::ImageClassificationDataset train, eval;  // raw pixels in [0, 1]
  std::vector<std::string> class_names;
};

// The task's training set and its evaluation set: the test split, or (eval_on_test false) the
// training set itself.
Task load_task(const nlohmann::json& c, const RunOptions& o, bool eval_on_test = true) {
  auto load = [&](data::Split s) {
    if (o.dataset_provider) return o.dataset_provider(s);
    const std::string name = c["dataset"];
    return read_dataset(name, s, c["data_dir"].get<std::string>(), image_format_of(c), o.quiet);
  };
  data::ImageClassificationDataset train = load(data::Split::Train);
  data::ImageClassificationDataset test = load(data::Split::Test);
  const std::vector<int64_t> classes = c["classes"].get<std::vector<int64_t>>();
  if (!classes.empty()) {
    train = data::select_classes(train, classes);
    test = data::select_classes(test, classes);
  }
  ORBIT_CHECK(train.num_classes() >= 2, "run config: key \"classes\": the task has ", train.num_classes(), " class",
              train.num_classes() == 1 ? " (" + train.class_names.at(0) + ")" : std::string("es"),
              "; a classifier needs at least 2 (got ", c["classes"].dump(), " of ", c["dataset"].get<std::string>(), ")");
  const double fraction = c["fraction"], test_fraction = c["test_fraction"];
  if (fraction < 1.0) train = train.subset(data::stratified_fraction(train, fraction, c["seed"].get<uint64_t>()));
  // The test subset does not depend on the run's seed, so every run of a comparison sees the same images.
  if (test_fraction < 1.0) test = test.subset(data::stratified_fraction(test, test_fraction, 0x7E57));
  Task t;
  t.class_names = train.class_names;
  if (o.train_rows) {
    t.eval = train.subset(*o.eval_rows);
    t.train = train.subset(*o.train_rows);
  } else {
    t.train = train;
    t.eval = eval_on_test ? test : train;
  }
  return t;
}

// The group checks that need the data: square inputs for rotations, translation steps dividing the size.
void check_group_fits(const groups::Group& G, const data::ImageClassificationDataset& ds, const char* key) {
  const int64_t H = ds.height(), W = ds.width();
  ORBIT_CHECK(!G.needs_square_input() || H == W, "run config: key \"", key, "\": the group ", G.name(),
              " rotates by angles other than 0 and 180 degrees, which needs square images; ", ds.name, " has ", H, "x",
              W, " images (use C2, D2, flips or translations, or make them S x S with \"image_size\": S)");
  const int64_t p = G.translation_steps();
  ORBIT_CHECK(p <= 1 || (H % p == 0 && W % p == 0), "run config: key \"", key, "\": the group ", G.name(),
              " shifts by 1/", p, " of the image, which needs sizes divisible by ", p, "; ", ds.name, " has ", H, "x", W,
              " images");
}

// A classifier behind per-channel input normalization, so group actions apply to raw pixels (whose
// background is 0) and the model sees normalized ones. repeat_channels > 1 first copies a one-channel
// image to that many channels, then normalizes each with its own mean and std: a grey task on an RGB
// model sees each grey image exactly as the model would see it as an RGB image with equal channels.
class Normalized : public Module {
 public:
  Normalized(std::shared_ptr<ClassifierModel> model, const std::vector<double>& mean, const std::vector<double>& std,
             int64_t repeat_channels = 1)
      : Module("Normalized"), repeat_(repeat_channels) {
    model_ = register_module("model", model);
    const int64_t C = static_cast<int64_t>(mean.size());
    std::vector<float> m(mean.begin(), mean.end()), inv;
    for (double s : std) inv.push_back(static_cast<float>(1.0 / s));
    mean_ = Tensor::from_vector(m, {1, C, 1, 1});
    inv_std_ = Tensor::from_vector(inv, {1, C, 1, 1});
  }
  Tensor forward(const Tensor& x) override {
    if (mean_.device() != x.device()) {  // the constants follow the model to its device
      mean_ = mean_.to(x.device());
      inv_std_ = inv_std_.to(x.device());
    }
    const Tensor in = repeat_ > 1 ? x.expand({x.size(0), repeat_, x.size(2), x.size(3)}) : x;
    return (*model_)(mul(sub(in, mean_), inv_std_));
  }

 private:
  std::shared_ptr<ClassifierModel> model_;
  Tensor mean_, inv_std_;
  int64_t repeat_;
};

struct Built {
  std::shared_ptr<ClassifierModel> model;
  std::shared_ptr<Normalized> normalized;
  std::shared_ptr<Module> net;  // what computes the logits: normalized, its group average or its canonicalization
  std::shared_ptr<groups::Canonicalized> canon;  // with "canonicalize"
  std::shared_ptr<Module> scorer;                // the canonicalizer's scorer, saved beside the model
  std::vector<double> mean, std;
  nlohmann::json source;        // where the weights came from
  Device device;                // where net computes ("device")
};

Device device_of(const nlohmann::json& c) { return c["device"] == "cuda" ? Device::cuda(0) : Device::cpu(); }

// The canonicalizer's scorer is saved next to the model's weights, in the same folder.
std::string scorer_path_for(const std::string& weights_path) {
  const fs::path dir = fs::path(weights_path).parent_path();
  return (dir.empty() ? fs::path("canonicalizer.safetensors") : dir / "canonicalizer.safetensors").string();
}

// In a checkpoint, the scorer's entries sit in the model dict under this prefix.
const std::string kScorerPrefix = "canonicalizer.";

// finished_run: c["weights"] is a finished run's model (evaluating it), so a canonicalizer's scorer is
// loaded from beside it; otherwise the weights are a starting point and the scorer is new.
Built build_model(const nlohmann::json& c, const Task& task, Generator& gen, bool quiet, bool finished_run = false) {
  Built b;
  const int64_t classes = static_cast<int64_t>(task.class_names.empty() ? task.train.num_classes() : task.class_names.size());
  ModelOptions mo;
  mo.num_classes = classes;
  mo.in_channels = task.train.channels();
  mo.dropout = c["dropout"].get<double>();
  mo.gen = &gen;
  const std::string weights = c["weights"];
  int64_t repeat_channels = 1;
  if (!weights.empty()) {
    Metadata meta;
    const NamedTensors tensors = load_safetensors(weights, &meta);
    auto get = [&](const char* k) -> std::string {
      auto it = meta.find(k);
      return it == meta.end() ? "" : it->second;
    };
    check_not_a_checkpoint(weights, meta, "run config: key \"weights\"");
    ORBIT_CHECK(get("model").empty() || get("model") == c["model"].get<std::string>(), "run config: key \"weights\": ",
                weights, " holds a \"", get("model"), "\" model, but the config's model is \"", c["model"].get<std::string>(), "\"");
    // The head's classes and the stem's input channels as the file has them (a torchvision dump
    // written by weights/export_torch.py has 1000 classes and 3 channels).
    const WeightShapes shapes = infer_weight_shapes(c["model"], tensors, "run config: key \"weights\": " + weights);
    mo.num_classes = get("num_classes").empty() ? shapes.num_classes : metadata_integer(weights, meta, "num_classes");
    if (shapes.in_channels != mo.in_channels) {
      ORBIT_CHECK(mo.in_channels == 1 && shapes.in_channels > 1, "run config: key \"weights\": ", weights, " is a model of ",
                  shapes.in_channels, "-channel images ('", shapes.stem_key, "'), but the task's images have ", mo.in_channels,
                  " channels");
      repeat_channels = shapes.in_channels;  // grey images shown to the model as RGB
      mo.in_channels = shapes.in_channels;
      if (!quiet)
        std::fprintf(stderr, "%s takes %lld-channel images: each grey image is copied to its %lld channels\n", weights.c_str(),
                     static_cast<long long>(shapes.in_channels), static_cast<long long>(shapes.in_channels));
    }
    b.model = create_model(c["model"], mo);
    StateDict sd;
    for (const auto& [k, t] : tensors) sd.insert(k, t);
    b.model->load_state_dict(sd, /*strict=*/true);
    if (const auto stored = stored_input(weights, meta)) {
      b.mean = stored->normalization.mean;
      b.std = stored->normalization.std;
    }
    b.source = {{"weights", weights}, {"model", get("model")}, {"dataset", get("dataset")}, {"classes", get("num_classes")}};
    // A head kept from a file an orbit run wrote (its metadata names the dataset and the classes)
    // answers for the classes it was trained on: they must be the task's. (A torchvision export names
    // its categories in words, which an image folder may name otherwise, e.g. by WordNet id.)
    if (!c["reset_head"].get<bool>() && !get("dataset").empty() && !get("classes").empty() && !task.class_names.empty()) {
      const nlohmann::json trained = stored_classes(weights, meta);
      const nlohmann::json wanted = task.class_names;
      ORBIT_CHECK(trained == wanted, "run config: key \"weights\": ", weights, " was trained on the classes ",
                  trained.dump(), ", but the task's classes are ", wanted.dump(),
                  "; its head would answer for other classes (select the same classes in the same order, or fine-tune a "
                  "new head with \"reset_head\": true)");
    }
    if (c["reset_head"].get<bool>() || b.model->num_classes() != classes) {
      ORBIT_CHECK(c["reset_head"].get<bool>(), "run config: ", weights, " has a ", b.model->num_classes(),
                  "-class head but the task has ", classes, " classes; set \"reset_head\": true");
      b.model->reset_classifier(classes, &gen);
    }
  } else {
    b.model = create_model(c["model"], mo);
  }
  if (b.mean.empty()) {
    const data::ChannelStats st = data::channel_stats(task.train);
    b.mean = st.mean;
    b.std = st.std;
  }
  // The normalization is of the model's input channels. One channel's statistics (a grey task's own,
  // as a torchvision dump has none; or those of a file written before normalizations were stored per
  // model channel) stand for each of an RGB model's channels; an RGB run's normalization is kept, so
  // a copied grey image is normalized as that run normalized its RGB images.
  const int64_t model_channels = repeat_channels > 1 ? repeat_channels : task.train.channels();
  const data::ChannelStats spread = for_model_channels({b.mean, b.std}, model_channels);
  b.mean = spread.mean;
  b.std = spread.std;
  ORBIT_CHECK(static_cast<int64_t>(b.mean.size()) == model_channels && b.std.size() == b.mean.size(),
              "run config: key \"weights\": the normalization in ", c["weights"].get<std::string>(), " has ", b.mean.size(),
              " mean(s) and ", b.std.size(), " std(s), but the model takes ", model_channels, "-channel images (the task's have ",
              task.train.channels(), ")");
  for (const auto& prefix : c["freeze"]) {
    try {
      b.model->set_requires_grad(prefix.get<std::string>(), false);
    } catch (const Error& e) {
      throw Error(str_cat("run config: key \"freeze\": ", e.what()));
    }
  }
  b.normalized = std::make_shared<Normalized>(b.model, b.mean, b.std, repeat_channels);
  b.net = b.normalized;
  if (c["equitune"].get<bool>())
    b.net = std::make_shared<groups::GroupAveraged>(b.normalized, groups::Group::parse(c["group"], boundary_of(c)));
  if (c["canonicalize"].get<bool>()) {
    b.scorer = groups::Canonicalized::make_scorer(task.train.channels(), &gen);
    if (finished_run) {
      const std::string scorer_weights = scorer_path_for(c["weights"].get<std::string>());
      ORBIT_CHECK(fs::is_regular_file(scorer_weights), "canonicalize: the scorer's weights \"", scorer_weights,
                  "\" do not exist (a canonicalization run writes canonicalizer.safetensors beside model.safetensors)");
      load_weights(scorer_weights, *b.scorer, true);
    }
    b.canon = std::make_shared<groups::Canonicalized>(b.normalized, b.scorer, groups::Group::parse(c["group"], boundary_of(c)));
    b.net = b.canon;
  }
  b.device = device_of(c);
  b.net->to(b.device);
  if (!quiet)
    std::fprintf(stderr, "%s: %lld parameters (%lld trainable)%s\n", c["model"].get<std::string>().c_str(),
                 static_cast<long long>(b.model->num_parameters()), static_cast<long long>(b.model->num_parameters(true)),
                 weights.empty() ? "" : (", from " + weights).c_str());
  return b;
}

// Per-image random augmentation of a batch of raw images.
data::BatchTransform make_augmentation(const nlohmann::json& c) {
  const std::string kind = c["augment"];
  if (kind == "none") return {};
  if (kind == "group") {
    auto G = std::make_shared<groups::Group>(groups::Group::parse(c["group"], boundary_of(c)));
    return [G](data::Batch& b, Generator& gen) {
      std::vector<int64_t> el(b.size());
      for (auto& e : el) e = gen.randint(G->order());
      b.images = groups::act_per_sample(*G, el, b.images, groups::FieldKind::Scalar);
    };
  }
  if (kind == "hflip") {
    groups::Group flips(1, true);
    return [flips](data::Batch& b, Generator& gen) {
      std::vector<int64_t> el(b.size());
      for (auto& e : el) e = gen.randint(2);
      b.images = groups::act_per_sample(flips, el, b.images, groups::FieldKind::Scalar);
    };
  }
  // rotation: a uniform angle per image (bilinear, zero fill), as orbit::rotate but one angle per row.
  return [](data::Batch& b, Generator& gen) {
    const int64_t N = b.images.size(0), H = b.images.size(2), W = b.images.size(3);
    const double sx = W / 2.0, sy = H / 2.0;
    std::vector<double> t;
    for (int64_t i = 0; i < N; ++i) {
      const double a = gen.next_double() * 2 * M_PI, co = std::cos(a), si = std::sin(a);
      const std::vector<double> row = {co, -si * sy / sx, 0.0, si * sx / sy, co, 0.0};
      t.insert(t.end(), row.begin(), row.end());
    }
    const Tensor theta = Tensor::from_vector(t, {N, 2, 3}).to(b.images.dtype()).to(b.images.device());
    b.images = grid_sample(b.images, affine_grid(theta, N, H, W), GridMode::Bilinear, GridPadding::Zeros);
  };
}

nlohmann::json metrics_to_json(const groups::EvaluationMetrics& m, int64_t passes) {
  nlohmann::json orbits = nlohmann::json::object();
  for (const auto& o : m.orbits) {
    nlohmann::json el = nlohmann::json::object();
    for (size_t i = 0; i < o.element_names.size(); ++i) el[o.element_names[i]] = o.element_accuracy[i];
    orbits[o.group] = {{"orbit_accuracy", o.orbit_accuracy},
                       {"consistency", o.consistency},
                       {"equivariance_error", o.equivariance_error},
                       {"element_accuracy", el}};
  }
  return {{"count", m.count},
          {"accuracy", m.accuracy},
          {"loss", m.loss},
          {"orbits", orbits},
          {"angles", m.angles},
          {"angle_accuracy", m.angle_accuracy},
          {"forward_passes_per_input", passes}};
}

groups::EvaluationMetrics evaluate_pass(Module& net, const data::ImageClassificationDataset& ds,
                                        const std::vector<groups::Group>& eval_groups, double angle_step,
                                        int64_t batch_size, bool quiet, const std::string& label) {
  const bool was = net.is_training();
  net.eval();
  // The images are transformed on the host; the net computes on its device; the metrics are counted on
  // the host.
  const std::vector<Tensor> params = net.parameters();
  const Device dev = params.empty() ? Device::cpu() : params.front().device();
  groups::OrbitEvaluator ev([&net, dev](const Tensor& x) { return net(x.to(dev)).to(Device::cpu()); }, eval_groups,
                            angle_step);
  data::DataLoaderOptions lo;
  lo.batch_size = batch_size;
  lo.shuffle = false;
  data::DataLoader loader(ds, lo);
  std::unique_ptr<ProgressBar> bar;
  if (!quiet) {
    bar = std::make_unique<ProgressBar>(label, ds.size(), "img");
  }
  for (data::Batch& b : loader.epoch(0)) {
    stop_evaluation_if_interrupted(ds.name);
    ev.add(b.images, b.labels);
    if (bar) bar->update(b.size(), {{"transforms", std::to_string(ev.transforms_per_input())}});
  }
  if (bar) bar->finish();
  net.train(was);
  return ev.result();
}

// The orbit metrics on the whole evaluation set; the accuracy against the angle on all of it, or on a
// stratified share (angle_test_fraction) of it, which is the costlier part (360 / angle_step passes).
groups::EvaluationMetrics evaluate_orbits(Module& net, const data::ImageClassificationDataset& ds,
                                          const std::vector<groups::Group>& eval_groups, const nlohmann::json& c,
                                          bool quiet, const std::string& label) {
  const double angle_step = c["angle_step"], share = c["angle_test_fraction"];
  const int64_t batch = c["eval_batch_size"];
  if (share >= 1.0 || angle_step <= 0) return evaluate_pass(net, ds, eval_groups, angle_step, batch, quiet, label);
  groups::EvaluationMetrics m = evaluate_pass(net, ds, eval_groups, 0.0, batch, quiet, label);
  const data::ImageClassificationDataset few = ds.subset(data::stratified_fraction(ds, share, 0xA9));
  const groups::EvaluationMetrics a = evaluate_pass(net, few, {}, angle_step, batch, quiet, label + " angles");
  m.angles = a.angles;
  m.angle_accuracy = a.angle_accuracy;
  return m;
}

std::vector<groups::Group> eval_groups_of(const nlohmann::json& c) {
  std::vector<groups::Group> gs;
  for (const auto& g : c["eval_groups"]) gs.push_back(groups::Group::parse(g.get<std::string>(), boundary_of(c)));
  return gs;
}

struct EpochLog {
  int64_t epoch = 0;
  double lr = 0, loss = 0, task_loss = 0, penalty = 0, accuracy = 0, seconds = 0;
  nlohmann::json to_json() const {
    return {{"epoch", epoch}, {"lr", lr}, {"loss", loss}, {"task_loss", task_loss}, {"penalty", penalty},
            {"train_accuracy", accuracy}, {"seconds", seconds}};
  }
};

// The keys that only choose among runs (which grid points a sweep makes, and which of them it keeps)
// do not change what one run trains: a run with its lambda, lr and fold set is the same run whatever the
// grid or the rule around it. They are left out of the comparison, so changing the rule or extending the
// grid reuses every run already made.
const char* const kSelectionKeys[] = {"lambda_grid", "lr_grid", "cv_metric", "cv_rule"};

nlohmann::json without_selection_keys(nlohmann::json c) {
  for (const char* k : kSelectionKeys) c.erase(k);
  return c;
}

// Whether a config saved by an earlier run (results.json, a checkpoint) describes the run `resolved`
// describes. The saved one is resolved again first, so keys added to the schema since it was written
// compare at their defaults.
bool same_run_config(const nlohmann::json& saved, const nlohmann::json& resolved) {
  const nlohmann::json want = without_selection_keys(resolved);
  if (without_selection_keys(saved) == want) return true;
  try {
    return without_selection_keys(resolve_run_config(saved, false)) == want;
  } catch (const Error&) {
    return false;  // no longer a valid config: not the same run
  }
}

// "lambda: saved 1, current 3; seed: ..." for the keys two configs disagree on.
std::string config_differences(const nlohmann::json& saved, const nlohmann::json& current_config) {
  nlohmann::json s = saved;
  try {
    s = resolve_run_config(saved, false);
  } catch (const Error&) {
  }
  s = without_selection_keys(s);
  const nlohmann::json current = without_selection_keys(current_config);
  std::string out;
  for (const auto& [k, v] : current.items()) {
    const std::string was = s.contains(k) ? s[k].dump() : "(absent)";
    if (was != v.dump()) out += str_cat(out.empty() ? "" : "; ", k, ": saved ", was, ", current ", v.dump());
  }
  for (const auto& [k, v] : s.items())
    if (!current.contains(k)) out += str_cat(out.empty() ? "" : "; ", k, ": saved ", v.dump(), ", current (absent)");
  return out;
}

}  // namespace

const nlohmann::json& orbit_metrics(const nlohmann::json& metrics, const std::string& spec) {
  const std::string name = groups::Group::parse(spec).name();
  const nlohmann::json& orbits = metrics.at("orbits");
  if (!orbits.contains(name)) {
    std::string have;
    for (const auto& [g, o] : orbits.items()) have += (have.empty() ? "" : ", ") + g;
    throw Error(str_cat("the run's metrics have no orbit metrics of group \"", spec, "\" (", name, "); they have: ",
                        have.empty() ? "none" : have, " (its config's \"eval_groups\")"));
  }
  return orbits.at(name);
}

std::optional<nlohmann::json> finished_results(const nlohmann::json& config) {
  const nlohmann::json c = resolve_run_config(config, false);  // reads results only: no weights needed
  const std::string path = c["out_dir"].get<std::string>() + "/results.json";
  if (!fs::exists(path)) return std::nullopt;
  nlohmann::json r = read_json_file(path);
  if (!r.contains("config") || !same_run_config(r["config"], c)) return std::nullopt;
  return r;
}

RunResult run_training(const nlohmann::json& user_config, const RunOptions& options) {
  const nlohmann::json c = resolve_run_config(user_config);
  const std::string out_dir = c["out_dir"];
  const bool quiet = options.quiet;
  const uint64_t seed = c["seed"].get<uint64_t>();
  const groups::Group G = groups::Group::parse(c["group"], boundary_of(c));
  const std::vector<groups::Group> eval_groups = eval_groups_of(c);

  // Everything that can be wrong with the task is checked before any training.
  Task task = load_task(c, options);
  check_group_fits(G, task.train, "group");
  for (const auto& eg : eval_groups) check_group_fits(eg, task.train, "eval_groups");
  make_output_dir(out_dir, "run config: key \"out_dir\"");
  const RunDirLock lock(out_dir, "run config: key \"out_dir\"");
  const std::string ckpt_path = out_dir + "/checkpoint.safetensors";

  Generator gen(seed);
  Built built = build_model(c, task, gen, quiet);
  const std::vector<Tensor> params = [&] {
    std::vector<Tensor> p;
    for (const Tensor& t : built.model->parameters())
      if (t.requires_grad()) p.push_back(t);
    if (built.scorer)
      for (const Tensor& t : built.scorer->parameters()) p.push_back(t);
    return p;
  }();
  ORBIT_CHECK(!params.empty(), "run config: key \"freeze\" froze every parameter; nothing would train");
  std::unique_ptr<Optimizer> opt = make_optimizer(c, params);
  std::shared_ptr<LRScheduler> sched = make_scheduler(c, *opt);

  groups::RegularizerOptions ro;
  ro.discrepancy = groups::parse_discrepancy(c["discrepancy"]);
  ro.samples = c["samples"];
  ro.item_fraction = c["reg_fraction"];
  ro.element_weights = c["element_weights"].get<std::vector<double>>();
  ro.stop_gradient = c["stop_gradient"];
  ro.reference = groups::parse_reference(c["reference"]);
  ro.taps = c["taps"].get<std::vector<std::string>>();
  ro.tap_weight = c["tap_weight"];
  ro.preserve = c["preserve"];
  for (const auto& t : ro.taps) {  // a bad tap name fails now, naming it
    try {
      built.model->submodule(t);
    } catch (const Error& e) {
      throw Error(str_cat("run config: key \"taps\": ", e.what()));
    }
  }
  const double lambda = c["lambda"];
  const double copy_weight = c["copy_task_weight"];
  // The penalty is the regularizer R (weight lambda) or, with canonicalization, the scorer's prior.
  const double penalty_weight = built.canon ? c["canon_prior"].get<double>() : lambda;

  RunResult result;
  result.out_dir = out_dir;
  std::vector<EpochLog> history;
  int64_t start_epoch = 0;
  double baseline = 0;
  bool have_baseline = false;
  if (options.resume && fs::exists(ckpt_path)) {
    TrainingState st = load_checkpoint(ckpt_path);
    const nlohmann::json saved = nlohmann::json::parse(st.config_json);
    ORBIT_CHECK(same_run_config(saved, c), "run: ", ckpt_path, " was written by a run with a different config (",
                config_differences(saved, c), "); resuming it would mix two runs. Use another out_dir, or --fresh to start over");
    if (built.scorer) {
      StateDict model_part, scorer_part;
      for (const auto& [k, v] : st.model) {
        if (k.rfind(kScorerPrefix, 0) == 0) scorer_part.insert(k.substr(kScorerPrefix.size()), v);
        else model_part.insert(k, v);
      }
      built.model->load_state_dict(model_part);
      built.scorer->load_state_dict(scorer_part);
    } else {
      built.model->load_state_dict(st.model);
    }
    opt->load_state_dict(st.optimizer);
    sched->load_state_dict(st.scheduler);
    gen.set_state(st.rng);
    start_epoch = st.epoch;
    const nlohmann::json h = nlohmann::json::parse(st.history_json);
    for (const auto& e : h.at("epochs")) {
      EpochLog l;
      l.epoch = e["epoch"], l.lr = e["lr"], l.loss = e["loss"], l.task_loss = e["task_loss"];
      l.penalty = e["penalty"], l.accuracy = e["train_accuracy"], l.seconds = e["seconds"];
      history.push_back(l);
    }
    if (h.contains("baseline")) baseline = h["baseline"], have_baseline = true;
    if (!quiet) std::fprintf(stderr, "resuming %s after epoch %lld\n", ckpt_path.c_str(), static_cast<long long>(start_epoch));
  }
  write_json_file(out_dir + "/config.json", c);

  auto forward = [&](const Tensor& x) { return (*built.net)(x.to(built.device)); };
  if (lambda > 0 && ro.preserve && !have_baseline) {
    // The starting model's own defect over the whole orbit, on up to 512 training images.
    built.net->eval();
    const int64_t n = std::min<int64_t>(512, task.train.size());
    baseline = groups::measure_defect(forward, G, task.train.images.narrow(0, 0, n), ro);
    have_baseline = true;
    built.net->train();
    if (!quiet) std::fprintf(stderr, "preserve: the starting model's defect is %.5f\n", baseline);
  }
  ro.baseline = baseline;

  data::DataLoaderOptions lo;
  lo.batch_size = c["batch_size"];
  lo.shuffle = true;
  lo.seed = seed;
  lo.transform = make_augmentation(c);
  lo.device = built.device;  // the worker thread moves the next batch while the model computes
  data::DataLoader loader(task.train, lo);
  const int64_t epochs = c["epochs"];
  const double smoothing = c["label_smoothing"], clip = c["grad_clip"];
  if (!quiet && start_epoch == 0)
    std::fprintf(stderr, "task: %lld training image%s, %lld %s image%s, %zu classes; group %s%s; %d thread%s\n",
                 static_cast<long long>(task.train.size()), task.train.size() == 1 ? "" : "s",
                 static_cast<long long>(task.eval.size()), options.eval_rows ? "validation" : "test",
                 task.eval.size() == 1 ? "" : "s", task.class_names.size(), G.name().c_str(),
                 c["group"] == G.name() ? "" : (" (\"" + c["group"].get<std::string>() + "\")").c_str(), num_threads(),
                 num_threads() == 1 ? "" : "s");

  auto save_state = [&](int64_t epochs_done) {
    nlohmann::json h = {{"epochs", nlohmann::json::array()}};
    for (const auto& e : history) h["epochs"].push_back(e.to_json());
    if (have_baseline) h["baseline"] = baseline;
    TrainingState st;
    st.epoch = epochs_done;
    st.model = built.model->state_dict();
    if (built.scorer)
      for (const auto& [k, v] : built.scorer->state_dict()) st.model.insert(kScorerPrefix + k, v);
    st.optimizer = opt->state_dict();
    st.scheduler = sched->state_dict();
    st.rng = gen.state();
    st.config_json = c.dump();
    st.history_json = h.dump();
    save_checkpoint(ckpt_path, st);
    write_json_file(out_dir + "/history.json", h);
  };

  for (int64_t epoch = start_epoch; epoch < epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    built.net->train();
    EpochLog log;
    log.epoch = epoch + 1;
    log.lr = opt->lr();
    double loss_sum = 0, task_sum = 0, pen_sum = 0;
    int64_t correct = 0, seen = 0;
    std::unique_ptr<ProgressBar> bar;
    if (!quiet) {
      bar = std::make_unique<ProgressBar>(str_cat("epoch ", epoch + 1, "/", epochs), loader.num_batches(), "batch");
      bar->set_rate_scale(static_cast<double>(c["batch_size"].get<int64_t>()), "img");
    }
    for (data::Batch& b : loader.epoch(epoch)) {
      stop_if_interrupted(epoch, epochs, out_dir, ckpt_path);
      Tensor logits, penalty, copy_loss;
      if (built.canon) {
        logits = forward(b.images);
        penalty = groups::Canonicalized::prior_loss(built.canon->last_scores());
      } else if (lambda > 0 || copy_weight > 0) {
        Generator bgen(mix(mix(seed, 0x5E6u), mix(static_cast<uint64_t>(epoch), static_cast<uint64_t>(b.index))));
        groups::RegularizedOutput r = groups::regularized_forward(forward, built.model.get(), G, b.images, ro, bgen);
        logits = r.output;
        if (lambda > 0) penalty = r.penalty;
        if (copy_weight > 0 && r.copies.defined()) {
          // The copies keep their images' labels: class labels are invariant under the group.
          const Tensor items = Tensor::from_vector(r.items, {static_cast<int64_t>(r.items.size())}).to(b.labels.device());
          copy_loss = cross_entropy(r.copies, index_select(b.labels, 0, items), Tensor(), Reduction::Mean, smoothing);
        }
      } else {
        logits = forward(b.images);
      }
      Tensor task_loss = cross_entropy(logits, b.labels, Tensor(), Reduction::Mean, smoothing);
      if (copy_loss.defined()) task_loss = add(task_loss, mul(copy_loss, copy_weight));
      const Tensor loss = penalty.defined() ? add(task_loss, mul(penalty, penalty_weight)) : task_loss;
      opt->zero_grad();
      loss.backward();
      if (clip > 0) clip_grad_norm(params, clip);
      opt->step();
      const double l = loss.item();
      ORBIT_CHECK(std::isfinite(l), "run: the loss became ", l, " at epoch ", epoch + 1, ", batch ", b.index + 1,
                  "; lower the learning rate (lr = ", opt->lr(), ") or lambda, or set grad_clip");
      loss_sum += l * b.size();
      task_sum += task_loss.item() * b.size();
      if (penalty.defined()) pen_sum += penalty.item() * b.size();
      {
        NoGradGuard ng;
        correct += static_cast<int64_t>(sum(eq(argmax(logits, 1), b.labels)).item());
      }
      seen += b.size();
      if (bar) {
        std::vector<std::pair<std::string, std::string>> v = {{"loss", ProgressBar::fixed(loss_sum / seen, 4)}};
        if (lambda > 0) v.push_back({"R", ProgressBar::fixed(pen_sum / seen, 4)});
        if (built.canon) v.push_back({"prior", ProgressBar::fixed(pen_sum / seen, 4)});
        v.push_back({"acc", ProgressBar::fixed(100.0 * correct / seen, 2) + "%"});
        bar->update(1, v);
      }
    }
    if (bar) bar->finish();
    sched->step();
    log.loss = loss_sum / std::max<int64_t>(seen, 1);
    log.task_loss = task_sum / std::max<int64_t>(seen, 1);
    log.penalty = pen_sum / std::max<int64_t>(seen, 1);
    log.accuracy = static_cast<double>(correct) / std::max<int64_t>(seen, 1);
    log.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    history.push_back(log);
    save_state(epoch + 1);
    if (!quiet)
      std::fprintf(stderr, "epoch %lld/%lld: loss %.4f (task %.4f, R %.4f), train acc %.2f%% (%.0f s)\n",
                   static_cast<long long>(log.epoch), static_cast<long long>(epochs), log.loss, log.task_loss, log.penalty,
                   100 * log.accuracy, log.seconds);
    if (options.stop_after_epoch > 0 && epoch + 1 >= options.stop_after_epoch && epoch + 1 < epochs) return result;
  }

  // ---------------------------------------------------------------- one evaluation
  const auto t_eval = std::chrono::steady_clock::now();
  groups::EvaluationMetrics m;
  try {
    m = evaluate_orbits(*built.net, task.eval, eval_groups, c, quiet, options.eval_rows ? "validate" : "test");
  } catch (const Interrupted& e) {
    throw Interrupted(str_cat(e.what(), " after the last epoch of ", out_dir, "; ", kept_after_interrupt(ckpt_path, epochs),
                              ", evaluating without training again"));
  }
  const int64_t passes = c["equitune"].get<bool>() ? G.order() : 1;
  double train_seconds = 0;
  for (const auto& e : history) train_seconds += e.seconds;
  nlohmann::json hist = nlohmann::json::array();
  for (const auto& e : history) hist.push_back(e.to_json());
  result.results = {{"config", c},
                    {"metrics", metrics_to_json(m, passes)},
                    {"source", built.source},
                    {"classes", task.class_names},
                    {"train_images", task.train.size()},
                    {"normalization", {{"mean", built.mean}, {"std", built.std}}},
                    {"train_seconds", train_seconds},
                    {"eval_seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t_eval).count()},
                    {"threads", num_threads()},
                    {"history", hist}};
  if (have_baseline) result.results["preserve_baseline"] = baseline;
  save_weights(out_dir + "/model.safetensors", *built.model,
               {{"model", c["model"].get<std::string>()},
                {"dataset", c["dataset"].get<std::string>()},
                {"num_classes", std::to_string(built.model->num_classes())},
                {"classes", nlohmann::json(task.class_names).dump()},
                {"normalization", nlohmann::json({{"mean", built.mean}, {"std", built.std}}).dump()},
                {"image_channels", std::to_string(task.train.channels())},
                {"image_size", task.train.height() == task.train.width() ? std::to_string(task.train.height()) : "0"}});
  if (built.scorer)
    save_weights(scorer_path_for(out_dir + "/model.safetensors"), *built.scorer,
                 {{"canonicalizer", "scorer"}, {"group", c["group"].get<std::string>()}});
  write_json_file(out_dir + "/results.json", result.results);
  write_run_plots(out_dir, result.results);
  result.completed = true;
  if (!quiet && options.print_summary) std::fprintf(stderr, "%s\n", summarize_metrics(result.results).c_str());
  return result;
}

std::vector<CvFoldRun> cv_fold_runs(const nlohmann::json& user_config) {
  const nlohmann::json c = resolve_run_config(user_config, false);
  std::vector<double> lrs = c["lr_grid"].get<std::vector<double>>();
  if (lrs.empty()) lrs.push_back(c["lr"]);
  std::vector<CvFoldRun> runs;
  for (double lr : lrs) {
    for (double lambda : c["lambda_grid"].get<std::vector<double>>()) {
      for (int64_t k = 0; k < c["cv_folds"].get<int64_t>(); ++k) {
        nlohmann::json fc = user_config;
        char name[128];
        std::snprintf(name, sizeof name, "/cv/lr%g_lambda%g/fold%lld", lr, lambda, static_cast<long long>(k + 1));
        fc["out_dir"] = c["out_dir"].get<std::string>() + name;
        fc["lambda"] = lambda;
        fc["lr"] = lr;
        fc["eval_groups"] = nlohmann::json::array({c["group"]});
        fc["angle_step"] = 0;
        runs.push_back({lr, lambda, k, std::move(fc)});
      }
    }
  }
  return runs;
}

nlohmann::json cross_validate(const nlohmann::json& user_config, const RunOptions& options) {
  const nlohmann::json c = resolve_run_config(user_config);
  const std::string out_dir = c["out_dir"];
  make_output_dir(out_dir, "run config: key \"out_dir\"");
  write_json_file(out_dir + "/config.json", c);
  // The folds are drawn from the task's training set (after the class selection and the fraction).
  RunOptions probe = options;
  probe.train_rows.reset();
  probe.eval_rows.reset();
  const Task task = load_task(c, probe);
  const std::vector<data::Fold> folds = data::stratified_kfold(task.train, c["cv_folds"], mix(c["seed"], 0xC5));
  if (!options.quiet) {  // a fold with fewer validation images than classes leaves some classes unvalidated
    size_t smallest = 0;
    for (size_t k = 1; k < folds.size(); ++k)
      if (folds[k].val.size() < folds[smallest].val.size()) smallest = k;
    const int64_t n = static_cast<int64_t>(folds[smallest].val.size()), classes = task.train.num_classes();
    if (n < classes)
      std::fprintf(stderr,
                   "warning: cross-validation: fold %zu validates on %lld image%s, fewer than the task's %lld classes, so "
                   "its score leaves classes out and moves by %.0f points per image (%lld training images in %zu folds; "
                   "lower \"cv_folds\" or raise \"fraction\")\n",
                   smallest + 1, static_cast<long long>(n), n == 1 ? "" : "s", static_cast<long long>(classes),
                   n > 0 ? 100.0 / static_cast<double>(n) : 100.0, static_cast<long long>(task.train.size()), folds.size());
  }
  const std::string metric = c["cv_metric"];
  const std::string group = c["group"];
  const std::vector<CvFoldRun> runs = cv_fold_runs(user_config);
  ORBIT_ASSERT(runs.size() % folds.size() == 0, runs.size(), " fold runs for ", folds.size(), " folds");
  for (const CvFoldRun& r : runs) {  // every grid point is a valid config, before any fold run starts
    try {
      resolve_run_config(r.config, false);
    } catch (const Error& e) {
      throw Error(str_cat("cross-validation: the grid point lr ", r.lr, ", lambda ", r.lambda, " (keys \"lr_grid\", \"lambda_grid\"): ", e.what()));
    }
  }

  nlohmann::json cv = {{"metric", metric}, {"group", group}, {"folds", folds.size()}, {"points", nlohmann::json::array()}};
  const int64_t total = static_cast<int64_t>(runs.size());
  int64_t done = 0;
  // This process's share of the fold runs (all of them unless sharded), the results of those already
  // finished (when resuming), and for the pace line how many are still to make and the time the ones
  // made took.
  const auto mine = [&](int64_t i) { return options.shard_count <= 1 || i % options.shard_count == options.shard_index; };
  std::vector<std::optional<nlohmann::json>> done_before(runs.size());
  int64_t to_make = 0, made = 0;
  double made_seconds = 0;
  for (int64_t i = 0; i < total; ++i) {
    if (!mine(i)) continue;
    if (options.resume) done_before[static_cast<size_t>(i)] = finished_results(runs[static_cast<size_t>(i)].config);
    if (!done_before[static_cast<size_t>(i)]) ++to_make;
  }
  for (size_t first = 0; first < runs.size(); first += folds.size()) {
    const double lr = runs[first].lr, lambda = runs[first].lambda;
    std::vector<double> scores, eq_errors;
    for (size_t k = 0; k < folds.size(); ++k) {
      if (!mine(done)) {
        ++done;  // another process's share
        continue;
      }
      const nlohmann::json& fc = runs[first + k].config;
      RunOptions fo = options;
      fo.print_summary = true;  // each fold's closing line (the caller prints the final run's)
      fo.train_rows = folds[k].train;
      fo.eval_rows = folds[k].val;
      nlohmann::json res;
      if (done_before[first + k]) {
        res = *done_before[first + k];
      } else {
        if (!options.quiet)
          std::fprintf(stderr, "cv %lld/%lld: lr %g, lambda %g, fold %zu/%zu%s\n", static_cast<long long>(done + 1),
                       static_cast<long long>(total), lr, lambda, k + 1, folds.size(),
                       pace_note(made, made_seconds, to_make).c_str());
        const auto started = std::chrono::steady_clock::now();
        res = run_training(fc, fo).results;
        made_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        ++made;
      }
      const nlohmann::json& mm = res["metrics"];
      const nlohmann::json& om = orbit_metrics(mm, group);
      const double s = metric == "accuracy" ? mm["accuracy"].get<double>() : om.at(metric).get<double>();
      scores.push_back(s);
      eq_errors.push_back(om.at("equivariance_error").get<double>());
      ++done;
    }
    if (options.shard_count > 1) continue;
    double mean = 0, var = 0;
    for (double s : scores) mean += s / scores.size();
    for (double s : scores) var += (s - mean) * (s - mean) / std::max<size_t>(1, scores.size() - 1);
    cv["points"].push_back({{"lr", lr}, {"lambda", lambda}, {"scores", scores}, {"mean", mean}, {"std", std::sqrt(var)},
                            {"equivariance_error", [&] {
                               double e = 0;
                               for (double v : eq_errors) e += v / eq_errors.size();
                               return e;
                             }()}});
    if (!options.quiet)
      std::fprintf(stderr, "cv: lr %g, lambda %g: %s %.2f%% +- %.2f\n", lr, lambda, metric.c_str(), 100 * mean,
                   100 * std::sqrt(var));
  }
  if (options.shard_count > 1) return {{"partial", true}};
  const std::string rule = c["cv_rule"];
  const size_t chosen = choose_cv_point(cv["points"], rule);
  const nlohmann::json& cp = cv["points"][chosen];
  const double best_lambda = cp["lambda"], best_lr = cp["lr"];
  cv["best"] = {{"lambda", best_lambda}, {"lr", best_lr}, {"mean", cp["mean"]}, {"rule", rule}};
  if (rule == "one_se") cv["best"]["threshold"] = cv_threshold(cv["points"]);
  write_json_file(out_dir + "/cv.json", cv);
  write_cv_plot(out_dir, cv);
  if (!options.quiet) {
    std::fprintf(stderr, "cv: chose lambda %g, lr %g (%s %.2f%%", best_lambda, best_lr, metric.c_str(), 100 * cp["mean"].get<double>());
    if (rule == "one_se")
      std::fprintf(stderr, "; the largest lambda within one standard error of the best, >= %.2f%%", 100 * cv["best"]["threshold"].get<double>());
    std::fprintf(stderr, ")\n");
  }
  return cv;
}

namespace {
size_t best_cv_point(const nlohmann::json& points) {
  ORBIT_CHECK(points.is_array() && !points.empty(), "cross-validation: no grid points to choose from");
  size_t best = 0;
  for (size_t i = 1; i < points.size(); ++i)
    if (points[i]["mean"].get<double>() > points[best]["mean"].get<double>()) best = i;
  return best;
}
}  // namespace

double cv_threshold(const nlohmann::json& points) {
  const nlohmann::json& b = points[best_cv_point(points)];
  const double n = static_cast<double>(b["scores"].size());
  return b["mean"].get<double>() - b["std"].get<double>() / std::sqrt(std::max(1.0, n));
}

size_t choose_cv_point(const nlohmann::json& points, const std::string& rule) {
  const size_t best = best_cv_point(points);
  if (rule == "best") return best;
  ORBIT_CHECK(rule == "one_se", "cross-validation: unknown rule \"", rule, "\"; expected \"best\" or \"one_se\"");
  const double threshold = cv_threshold(points);
  size_t chosen = best;
  for (size_t i = 0; i < points.size(); ++i) {
    const nlohmann::json& p = points[i];
    if (p["mean"].get<double>() < threshold) continue;
    const double lam = p["lambda"], lam_c = points[chosen]["lambda"];
    if (lam > lam_c || (lam == lam_c && p["mean"].get<double>() > points[chosen]["mean"].get<double>())) chosen = i;
  }
  return chosen;
}

RunResult run_sweep(const nlohmann::json& user_config, const RunOptions& options) {
  const nlohmann::json c = resolve_run_config(user_config);
  const std::string out_dir = c["out_dir"];
  const nlohmann::json cv = cross_validate(user_config, options);
  const double best_lambda = cv["best"]["lambda"], best_lr = cv["best"]["lr"];
  nlohmann::json final_config = user_config;
  final_config["out_dir"] = out_dir + "/final";
  final_config["lambda"] = best_lambda;
  final_config["lr"] = best_lr;
  RunOptions fo = options;
  fo.train_rows.reset();
  fo.eval_rows.reset();
  RunResult r = run_training(final_config, fo);
  if (r.completed) {
    r.results["cv"] = cv;
    write_json_file(out_dir + "/results.json", r.results);
  }
  r.out_dir = out_dir;
  return r;
}

std::shared_ptr<Module> load_run_network(const nlohmann::json& user_config, const std::string& weights_path,
                                         std::vector<std::string>* class_names) {
  nlohmann::json uc = user_config;
  uc["weights"] = weights_path;
  uc["reset_head"] = false;
  uc["device"] = "cpu";  // the network is handed to callers with host tensors (a GPU run's too)
  const nlohmann::json c = resolve_run_config(uc);
  Metadata meta;
  load_safetensors(weights_path, &meta);
  Task task;  // only the shapes and the class names are needed
  const std::vector<std::string> classes = stored_classes(weights_path, meta);
  const std::optional<StoredInput> stored = stored_input(weights_path, meta);
  ORBIT_CHECK(stored, weights_path, ": no normalization in the metadata; expected a model.safetensors written by an orbit run");
  // The images' channels: a grey task on an RGB model stores the model's normalization (3 channels)
  // and the images' channel count (1).
  const int64_t C = stored->image_channels > 0 ? stored->image_channels
                                               : static_cast<int64_t>(stored->normalization.mean.size());
  task.train.images = Tensor::zeros({1, C, 1, 1});
  task.train.labels = Tensor::zeros({1}, DType::I64);
  task.class_names = classes;
  if (task.class_names.empty())
    for (int64_t k = 0, n = metadata_integer(weights_path, meta, "num_classes"); k < n; ++k)
      task.class_names.push_back(std::to_string(k));
  Generator gen(0);
  Built b = build_model(c, task, gen, true, true);
  b.net->eval();
  if (class_names) *class_names = task.class_names;
  return b.net;
}

std::optional<StoredInput> stored_input(const std::string& path, const std::map<std::string, std::string>& metadata) {
  if (!metadata.count("normalization")) return std::nullopt;
  const nlohmann::json n = metadata_json(path, metadata, "normalization");
  StoredInput in;
  bool lists = true;  // "mean" and "std" are lists of numbers
  try {
    in.normalization.mean = n.at("mean").get<std::vector<double>>();
    in.normalization.std = n.at("std").get<std::vector<double>>();
  } catch (const nlohmann::json::exception&) {
    lists = false;
  }
  const auto& ns = in.normalization;
  const bool positive = std::all_of(ns.std.begin(), ns.std.end(), [](double v) { return v > 0; });
  ORBIT_CHECK(lists && !ns.mean.empty() && ns.mean.size() == ns.std.size() && positive, path, ": metadata key 'normalization' holds ",
              n.dump(), "; expected {\"mean\": [...], \"std\": [...]}, one value per channel, each std above 0 (was the "
              "file edited by hand?)");
  for (auto [key, value] : {std::pair{"image_channels", &in.image_channels}, std::pair{"image_size", &in.image_size}})
    if (metadata.count(key)) *value = metadata_integer(path, metadata, key);
  return in;
}

std::vector<std::string> stored_classes(const std::string& path, const std::map<std::string, std::string>& metadata) {
  if (!metadata.count("classes")) return {};
  const nlohmann::json j = metadata_json(path, metadata, "classes");
  ORBIT_CHECK(j.is_array() && std::all_of(j.begin(), j.end(), [](const nlohmann::json& e) { return e.is_string(); }), path,
              ": metadata key 'classes' holds ", j.dump(), "; expected a list of class names (was the file edited by hand?)");
  return j.get<std::vector<std::string>>();
}

data::ChannelStats for_model_channels(data::ChannelStats stats, int64_t channels) {
  if (channels > 1 && stats.mean.size() == 1 && stats.std.size() == 1) {
    stats.mean.assign(static_cast<size_t>(channels), stats.mean[0]);
    stats.std.assign(static_cast<size_t>(channels), stats.std[0]);
  }
  return stats;
}

nlohmann::json evaluate_weights(const nlohmann::json& user_config, const std::string& weights_path, data::Split split,
                                bool quiet) {
  nlohmann::json uc = user_config;
  uc["weights"] = weights_path;
  uc["reset_head"] = false;
  uc["equitune"] = user_config.value("equitune", false);
  const nlohmann::json c = resolve_run_config(uc);
  RunOptions o;
  o.quiet = quiet;
  const Task task = load_task(c, o, split == data::Split::Test);
  Generator gen(0);
  Built built = build_model(c, task, gen, quiet, true);
  const groups::Group G = groups::Group::parse(c["group"], boundary_of(c));
  const groups::EvaluationMetrics m = evaluate_orbits(*built.net, task.eval, eval_groups_of(c), c, quiet, "evaluate");
  return {{"weights", weights_path}, {"split", data::split_name(split)}, {"classes", task.class_names},
          {"metrics", metrics_to_json(m, c["equitune"].get<bool>() ? G.order() : 1)}};
}

}  // namespace orbit
