#include "train/trainer.h"

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "data/loader.h"
#include "engine/ops.h"
#include "engine/parallel.h"
#include "models/registry.h"
#include "train/checkpoint.h"
#include "train/interrupt.h"
#include "train/optim.h"
#include "train/plot.h"
#include "train/progress.h"
#include "train/scheduler.h"
#include "weights/weights.h"

namespace orbit {

namespace fs = std::filesystem;

ConfigSchema& add_image_format_keys(ConfigSchema& s) {
  return s
      .integer("image_channels", 0, 0, 3,
               "channels the images are converted to as they are read: 0 as stored (all images must agree), 1 grey, 3 RGB")
      .integer("image_size", 0, 0, 1 << 16,
               "0: images as stored (all of one size); S: each image's shorter side resized to S, then its central S x S crop");
}

data::ImageFormat image_format_of(const nlohmann::json& config, const std::string& what) {
  data::ImageFormat f;
  f.channels = config.value("image_channels", 0);
  f.size = config.value("image_size", int64_t{0});
  ORBIT_CHECK(f.channels != 2, what, ": key \"image_channels\": expected 0 (as stored), 1 (grey) or 3 (RGB), got 2");
  return f;
}

data::ImageClassificationDataset read_dataset(const std::string& name, data::Split split, const std::string& root,
                                              const data::ImageFormat& format, bool quiet) {
  return data::load_dataset(name, split, root, format,
                            quiet ? data::LoadProgress{} : load_progress(str_cat("read ", name, "/", data::split_name(split))));
}

const ConfigSchema& train_config_schema() {
  static const ConfigSchema schema = [] {
    std::vector<std::string> models;
    for (const auto& [name, desc] : list_models()) models.push_back(name);
    ConfigSchema s("train config");
    add_image_format_keys(
        s.string("model", "small_cnn", models, "architecture from the model registry")
            .string("dataset", "fashion-mnist", {}, "dataset made by `make data` (mnist, fashion-mnist), cifar10, folder:PATH or idx:PATH")
            .string("data_dir", "data", {}, "folder holding <dataset>/ with the IDX files"))
        .string("out_dir", "runs/train", {}, "where checkpoints, curves and results go")
        .integer("epochs", 5, 1, 10000, "training epochs")
        .integer("batch_size", 64, 1, 1 << 16, "mini-batch size")
        .string("optimizer", "adam", {"sgd", "adam", "adamw"}, "optimizer")
        .number("lr", 1e-3, 1e-8, 10.0, "peak learning rate")
        .number("momentum", 0.9, 0.0, 0.999, "SGD momentum")
        .boolean("nesterov", false, "SGD Nesterov momentum")
        .number("weight_decay", 0.0, 0.0, 1.0, "weight decay (L2 for sgd/adam, decoupled for adamw)")
        .string("schedule", "cosine", {"constant", "cosine", "step", "multistep"}, "learning-rate schedule per epoch")
        .integer("warmup_epochs", 0, 0, 1000, "linear warm-up epochs before the schedule")
        .integer("step_size", 10, 1, 10000, "epochs between decays (schedule step)")
        .int_list("milestones", nlohmann::json::array(), 1, 10000, "decay epochs (schedule multistep)")
        .number("gamma", 0.1, 0.0, 1.0, "decay factor (step, multistep)")
        .number("dropout", 0.25, 0.0, 0.99, "dropout before the classifier")
        .number("label_smoothing", 0.0, 0.0, 0.99, "cross-entropy label smoothing")
        .number("grad_clip", 0.0, 0.0, 1e6, "clip the gradient norm to this value (0: off)")
        .string("augment", "none", {"none", "hflip"}, "training augmentation: random horizontal flips")
        .integer("seed", 0, 0, 9007199254740991.0, "seed of initialization, dropout, shuffling and augmentation")
        .number("target_accuracy", 0.0, 0.0, 1.0, "fail (exit code 3) when the final test accuracy is lower");
    return s;
  }();
  return schema;
}

nlohmann::json EpochStats::to_json() const {
  return {{"epoch", epoch}, {"lr", lr}, {"train_loss", train_loss}, {"train_accuracy", train_accuracy},
          {"test_loss", test_loss}, {"test_accuracy", test_accuracy}, {"seconds", seconds}};
}

EpochStats EpochStats::from_json(const nlohmann::json& j) {
  EpochStats e;
  e.epoch = j.at("epoch").get<int64_t>();
  e.lr = j.at("lr").get<double>();
  e.train_loss = j.at("train_loss").get<double>();
  e.train_accuracy = j.at("train_accuracy").get<double>();
  e.test_loss = j.at("test_loss").get<double>();
  e.test_accuracy = j.at("test_accuracy").get<double>();
  e.seconds = j.at("seconds").get<double>();
  return e;
}

EvalResult evaluate(Module& model, const data::ImageClassificationDataset& dataset, int64_t batch_size,
                    bool show_progress) {
  const bool was_training = model.is_training();
  model.eval();
  NoGradGuard ng;
  data::DataLoaderOptions lo;
  lo.batch_size = batch_size;
  lo.shuffle = false;
  data::DataLoader loader(dataset, lo);
  const int64_t C = dataset.num_classes();
  EvalResult r;
  r.confusion.assign(C, std::vector<int64_t>(C, 0));
  double loss_sum = 0;
  int64_t correct = 0;
  std::unique_ptr<ProgressBar> bar;
  if (show_progress) bar = std::make_unique<ProgressBar>("evaluate", loader.num_batches(), "batch");
  for (data::Batch& b : loader.epoch(0)) {
    stop_evaluation_if_interrupted(dataset.name);
    Tensor logits = model(b.images);
    loss_sum += cross_entropy(logits, b.labels, Tensor(), Reduction::Sum).item();
    const auto pred = argmax(logits, 1).to_vector<int64_t>();
    const auto truth = b.labels.to_vector<int64_t>();
    for (size_t i = 0; i < pred.size(); ++i) {
      ORBIT_CHECK(pred[i] < C, "evaluate: the model predicts class ", pred[i], " but ", dataset.name, " has ", C,
                  " classes");
      r.confusion[truth[i]][pred[i]] += 1;
      correct += pred[i] == truth[i];
    }
    r.count += b.size();
    if (bar) bar->update(1);
  }
  if (bar) bar->finish();
  r.loss = r.count ? loss_sum / r.count : 0.0;
  r.accuracy = r.count ? static_cast<double>(correct) / r.count : 0.0;
  model.train(was_training);
  return r;
}

std::unique_ptr<Optimizer> make_optimizer(const nlohmann::json& c, const std::vector<Tensor>& params) {
  const std::string kind = c["optimizer"];
  const double lr = c["lr"], wd = c["weight_decay"];
  if (kind == "sgd") {
    SGDOptions o(lr);
    o.momentum = c["momentum"];
    o.nesterov = c.value("nesterov", false);
    o.weight_decay = wd;
    return std::make_unique<SGD>(params, o);
  }
  if (kind == "adamw") {
    AdamWOptions o;
    o.lr = lr;
    o.weight_decay = wd;
    return std::make_unique<AdamW>(params, o);
  }
  AdamOptions o;
  o.lr = lr;
  o.weight_decay = wd;
  return std::make_unique<Adam>(params, o);
}

// The per-epoch schedule (with optional linear warm-up) as a scheduler over the optimizer's groups.
std::shared_ptr<LRScheduler> make_scheduler(const nlohmann::json& c, Optimizer& opt) {
  const std::string kind = c["schedule"];
  const int64_t epochs = c["epochs"], warmup = c["warmup_epochs"];
  std::shared_ptr<LRScheduler> main;
  if (kind == "cosine")
    main = std::make_shared<CosineAnnealingLR>(opt, std::max<int64_t>(1, epochs - warmup), 0.0);
  else if (kind == "step")
    main = std::make_shared<StepLR>(opt, c["step_size"].get<int64_t>(), c["gamma"].get<double>());
  else if (kind == "multistep")
    main = std::make_shared<MultiStepLR>(opt, c["milestones"].get<std::vector<int64_t>>(), c["gamma"].get<double>());
  else
    main = std::make_shared<StepLR>(opt, 1 << 30, 1.0);  // constant
  if (warmup > 0) return std::make_shared<WarmupLR>(opt, main, warmup, 1.0 / (warmup + 1));
  return main;
}

namespace {

void write_curves(const std::string& dir, const std::vector<EpochStats>& h, const std::string& title) {
  Series tl{"train loss", {}, {}}, vl{"test loss", {}, {}}, ta{"train accuracy", {}, {}}, va{"test accuracy", {}, {}};
  for (const auto& e : h) {
    tl.x.push_back(e.epoch), tl.y.push_back(e.train_loss);
    vl.x.push_back(e.epoch), vl.y.push_back(e.test_loss);
    ta.x.push_back(e.epoch), ta.y.push_back(100 * e.train_accuracy);
    va.x.push_back(e.epoch), va.y.push_back(100 * e.test_accuracy);
  }
  write_text_file(dir + "/loss.svg", svg_line_chart(title + ": loss", "epoch", "cross-entropy", {tl, vl}));
  write_text_file(dir + "/accuracy.svg", svg_line_chart(title + ": accuracy", "epoch", "accuracy (%)", {ta, va}));
}

}  // namespace

TrainResult train_classifier(const nlohmann::json& user_config, const TrainOptions& options) {
  const nlohmann::json c = train_config_schema().resolve(user_config);
  const data::ImageFormat format = image_format_of(c, "train config");
  const std::string out_dir = c["out_dir"];
  make_output_dir(out_dir, "train config: key \"out_dir\"");
  const RunDirLock lock(out_dir, "train config: key \"out_dir\"");
  const std::string ckpt_path = out_dir + "/checkpoint.safetensors";

  // ---------------------------------------------------------------- data
  auto load = [&](data::Split split) {
    if (options.dataset_provider) return options.dataset_provider(split);
    const std::string name = c["dataset"];
    return read_dataset(name, split, c["data_dir"].get<std::string>(), format, options.quiet);
  };
  data::ImageClassificationDataset train_raw = load(data::Split::Train), test_raw = load(data::Split::Test);
  const data::ChannelStats stats = data::channel_stats(train_raw);  // normalize both with the training statistics
  const data::ImageClassificationDataset train_set = train_raw.normalized(stats.mean, stats.std);
  const data::ImageClassificationDataset test_set = test_raw.normalized(stats.mean, stats.std);

  // ---------------------------------------------------------------- model, optimizer, schedule
  const uint64_t seed = c["seed"].get<uint64_t>();
  Generator gen(seed);  // initialization and dropout; its state is checkpointed
  ModelOptions mo;
  mo.num_classes = train_set.num_classes();
  mo.in_channels = train_set.channels();
  mo.dropout = c["dropout"].get<double>();
  mo.gen = &gen;
  std::shared_ptr<ClassifierModel> model = create_model(c["model"], mo);
  std::unique_ptr<Optimizer> opt = make_optimizer(c, model->parameters());
  std::shared_ptr<LRScheduler> sched = make_scheduler(c, *opt);

  // ---------------------------------------------------------------- resume
  TrainResult result;
  result.out_dir = out_dir;
  int64_t start_epoch = 0;
  if (options.resume && fs::exists(ckpt_path)) {
    TrainingState st = load_checkpoint(ckpt_path);
    const nlohmann::json saved = nlohmann::json::parse(st.config_json);
    ORBIT_CHECK(saved == c, "train: ", ckpt_path, " was written by a run with a different config; resuming it "
                "would mix two runs. Use another out_dir, or --fresh to start over.\n  saved:   ", saved.dump(),
                "\n  current: ", c.dump());
    model->load_state_dict(st.model);
    opt->load_state_dict(st.optimizer);
    sched->load_state_dict(st.scheduler);
    gen.set_state(st.rng);
    start_epoch = st.epoch;
    for (const auto& e : nlohmann::json::parse(st.history_json)) result.history.push_back(EpochStats::from_json(e));
    if (!options.quiet)
      std::fprintf(stderr, "resuming %s after epoch %lld\n", ckpt_path.c_str(), static_cast<long long>(start_epoch));
  }
  write_json_file(out_dir + "/config.json", c);

  data::DataLoaderOptions lo;
  lo.batch_size = c["batch_size"];
  lo.shuffle = true;
  lo.seed = seed;
  if (c["augment"] == "hflip")
    lo.transform = [](data::Batch& b, Generator& g) {
      // Flip a random half of the images left-right.
      std::vector<float> keep(b.size()), flipw(b.size());
      for (int64_t i = 0; i < b.size(); ++i) {
        const bool f = g.next_double() < 0.5;
        keep[i] = f ? 0.f : 1.f;
        flipw[i] = f ? 1.f : 0.f;
      }
      const Tensor k = Tensor::from_vector(keep, {b.size(), 1, 1, 1}), fw = Tensor::from_vector(flipw, {b.size(), 1, 1, 1});
      b.images = add(mul(b.images, k), mul(flip(b.images, {3}), fw));
    };
  data::DataLoader loader(train_set, lo);

  const int64_t epochs = c["epochs"];
  const std::vector<Tensor> params = model->parameters();
  if (!options.quiet && start_epoch == 0)
    std::fprintf(stderr, "%s: %lld parameters; %s train %lld / test %lld images; %d threads\n", c["model"].get<std::string>().c_str(),
                 static_cast<long long>(model->num_parameters()), c["dataset"].get<std::string>().c_str(),
                 static_cast<long long>(train_set.size()), static_cast<long long>(test_set.size()), num_threads());

  for (int64_t epoch = start_epoch; epoch < epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    model->train();
    EpochStats es;
    es.epoch = epoch + 1;
    es.lr = opt->lr();
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    std::unique_ptr<ProgressBar> bar;
    if (!options.quiet) {
      bar = std::make_unique<ProgressBar>(str_cat("epoch ", epoch + 1, "/", epochs), loader.num_batches(), "batch");
      bar->set_rate_scale(static_cast<double>(c["batch_size"].get<int64_t>()), "img");
    }
    for (data::Batch& b : loader.epoch(epoch)) {
      stop_if_interrupted(epoch, epochs, out_dir, ckpt_path);
      Tensor logits = (*model)(b.images);
      Tensor loss = cross_entropy(logits, b.labels, Tensor(), Reduction::Mean, c["label_smoothing"].get<double>());
      opt->zero_grad();
      loss.backward();
      if (c["grad_clip"].get<double>() > 0) clip_grad_norm(params, c["grad_clip"].get<double>());
      opt->step();
      const double l = loss.item();
      ORBIT_CHECK(std::isfinite(l), "train: the loss became ", l, " at epoch ", epoch + 1, ", batch ", b.index + 1,
                  "; lower the learning rate (lr = ", opt->lr(), ") or enable grad_clip");
      loss_sum += l * b.size();
      {
        NoGradGuard ng;
        correct += static_cast<int64_t>(sum(eq(argmax(logits, 1), b.labels)).item());
      }
      seen += b.size();
      if (bar)
        bar->update(1, {{"loss", ProgressBar::fixed(loss_sum / seen, 4)},
                        {"acc", ProgressBar::fixed(100.0 * correct / seen, 2) + "%"}});
    }
    if (bar) bar->finish();
    sched->step();
    es.train_loss = loss_sum / std::max<int64_t>(seen, 1);
    es.train_accuracy = static_cast<double>(correct) / std::max<int64_t>(seen, 1);
    EvalResult ev;
    try {
      ev = evaluate(*model, test_set);
    } catch (const Interrupted& e) {
      throw Interrupted(str_cat(e.what(), " at the end of epoch ", epoch + 1, "/", epochs, " of ", out_dir, "; ",
                                kept_after_interrupt(ckpt_path, epoch)));
    }
    es.test_loss = ev.loss;
    es.test_accuracy = ev.accuracy;
    es.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    result.history.push_back(es);
    if (!options.quiet)
      std::fprintf(stderr, "epoch %lld/%lld: train loss %.4f acc %.2f%%  test loss %.4f acc %.2f%%  (%.0f s)\n",
                   static_cast<long long>(es.epoch), static_cast<long long>(epochs), es.train_loss,
                   100 * es.train_accuracy, es.test_loss, 100 * es.test_accuracy, es.seconds);

    nlohmann::json hist = nlohmann::json::array();
    for (const auto& e : result.history) hist.push_back(e.to_json());
    TrainingState st;
    st.epoch = epoch + 1;
    st.model = model->state_dict();
    st.optimizer = opt->state_dict();
    st.scheduler = sched->state_dict();
    st.rng = gen.state();
    st.config_json = c.dump();
    st.history_json = hist.dump();
    save_checkpoint(ckpt_path, st);
    write_json_file(out_dir + "/history.json", hist);
    write_curves(out_dir, result.history, c["model"].get<std::string>() + " on " + c["dataset"].get<std::string>());
    if (options.stop_after_epoch > 0 && epoch + 1 >= options.stop_after_epoch && epoch + 1 < epochs) return result;
  }

  result.completed = true;
  result.test_accuracy = result.history.empty() ? 0.0 : result.history.back().test_accuracy;
  save_weights(out_dir + "/model.safetensors", *model, {{"model", c["model"].get<std::string>()},
                                                        {"dataset", c["dataset"].get<std::string>()}});
  nlohmann::json res = {{"model", c["model"]},
                        {"dataset", c["dataset"]},
                        {"epochs", epochs},
                        {"test_accuracy", result.test_accuracy},
                        {"test_loss", result.history.empty() ? 0.0 : result.history.back().test_loss},
                        {"threads", num_threads()},
                        {"normalization", {{"mean", stats.mean}, {"std", stats.std}}},
                        {"train_seconds", [&] {
                           double s = 0;
                           for (const auto& e : result.history) s += e.seconds;
                           return s;
                         }()}};
  write_json_file(out_dir + "/results.json", res);
  return result;
}

}  // namespace orbit
