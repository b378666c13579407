// The training loop end to end on a small synthetic task: it learns, checkpoints resume bit for bit,
// configs are validated, and the model registry and checkpoint files behave.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "models/registry.h"
#include "tests/test_util.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/plot.h"
#include "train/trainer.h"
#include "weights/weights.h"

using namespace orbit;
namespace fs = std::filesystem;

namespace {

// Two classes of 28x28 images: a bright top half (class 0) or a bright bottom half (class 1), plus noise.
data::ImageClassificationDataset synthetic(int64_t n, uint64_t seed) {
  Generator g(seed);
  std::vector<float> px(n * 28 * 28);
  std::vector<int64_t> labels(n);
  for (int64_t i = 0; i < n; ++i) {
    labels[i] = i % 2;
    for (int64_t y = 0; y < 28; ++y)
      for (int64_t x = 0; x < 28; ++x) {
        const bool bright = (y < 14) == (labels[i] == 0);
        px[(i * 28 + y) * 28 + x] = static_cast<float>((bright ? 0.7 : 0.2) + 0.2 * g.next_double());
      }
  }
  data::ImageClassificationDataset ds;
  ds.name = "synthetic";
  ds.images = Tensor::from_vector(px, {n, 1, 28, 28});
  ds.labels = Tensor::from_vector(labels, {n});
  ds.class_names = {"top", "bottom"};
  return ds;
}

nlohmann::json tiny_config(const std::string& out) {
  return {{"model", "small_cnn"}, {"epochs", 3}, {"batch_size", 16}, {"lr", 0.002}, {"seed", 5},
          {"out_dir", out}, {"dropout", 0.25}, {"augment", "hflip"}};
}

TrainOptions quiet_options() {
  TrainOptions o;
  o.quiet = true;
  o.dataset_provider = [](data::Split s) { return s == data::Split::Train ? synthetic(96, 1) : synthetic(32, 2); };
  return o;
}

std::string scratch(const std::string& name) {
  const std::string d = std::string(ORBIT_BINARY_DIR) + "/test_trainer/" + name;
  fs::remove_all(d);
  return d;
}

}  // namespace

TEST(Trainer, LearnsASimpleTaskAndWritesResults) {
  const std::string out = scratch("learn");
  TrainResult r = train_classifier(tiny_config(out), quiet_options());
  ASSERT_TRUE(r.completed);
  ASSERT_EQ(r.history.size(), 3u);
  EXPECT_GE(r.test_accuracy, 0.9);  // the classes differ by a large brightness pattern
  EXPECT_LT(r.history.back().train_loss, r.history.front().train_loss);
  for (const char* f : {"config.json", "history.json", "results.json", "loss.svg", "accuracy.svg",
                        "checkpoint.safetensors", "model.safetensors"})
    EXPECT_TRUE(fs::exists(out + "/" + f)) << f;
  // The saved weights reproduce the reported accuracy.
  ModelOptions mo;
  mo.num_classes = 2;
  auto model = create_model("small_cnn", mo);
  load_weights(out + "/model.safetensors", *model);
  auto test = synthetic(32, 2);
  const auto stats = data::channel_stats(synthetic(96, 1));
  EXPECT_DOUBLE_EQ(evaluate(*model, test.normalized(stats.mean, stats.std)).accuracy, r.test_accuracy);
}

TEST(Trainer, ResumeIsBitForBitIdenticalToAnUninterruptedRun) {
  const std::string a = scratch("straight"), b = scratch("resumed");
  train_classifier(tiny_config(a), quiet_options());
  TrainOptions stop = quiet_options();
  stop.stop_after_epoch = 1;
  TrainResult partial = train_classifier(tiny_config(b), stop);
  EXPECT_FALSE(partial.completed);
  EXPECT_EQ(partial.history.size(), 1u);
  TrainResult resumed = train_classifier(tiny_config(b), quiet_options());  // picks up the checkpoint
  EXPECT_TRUE(resumed.completed);
  ASSERT_EQ(resumed.history.size(), 3u);
  auto wa = load_safetensors(a + "/model.safetensors"), wb = load_safetensors(b + "/model.safetensors");
  ASSERT_EQ(wa.size(), wb.size());
  for (size_t i = 0; i < wa.size(); ++i) {
    EXPECT_EQ(wa[i].first, wb[i].first);
    EXPECT_TRUE(orbit::testing::all_close(wa[i].second, wb[i].second, 0, 0)) << wa[i].first;
  }
}

TEST(Trainer, ResumingWithADifferentConfigIsRefused) {
  const std::string out = scratch("mismatch");
  TrainOptions stop = quiet_options();
  stop.stop_after_epoch = 1;
  train_classifier(tiny_config(out), stop);
  nlohmann::json changed = tiny_config(out);
  changed["lr"] = 0.01;
  EXPECT_THROW(train_classifier(changed, quiet_options()), Error);
  TrainOptions fresh = quiet_options();
  fresh.resume = false;
  EXPECT_NO_THROW(train_classifier(changed, fresh));
}

TEST(Config, UnknownKeysWrongTypesAndRangesNameTheKey) {
  const ConfigSchema& s = train_config_schema();
  auto message = [&](const nlohmann::json& j) -> std::string {
    try {
      s.resolve(j);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(message({{"epoch", 3}}).find("unknown key \"epoch\""), std::string::npos);
  EXPECT_NE(message({{"epoch", 3}}).find("epochs"), std::string::npos);  // lists the allowed keys
  EXPECT_NE(message({{"epoch", 3}}).find("unknown key \"epoch\" (did you mean \"epochs\"?); allowed keys: "), std::string::npos)
      << message({{"epoch", 3}});
  EXPECT_EQ(message({{"zzz", 3}}).find("did you mean"), std::string::npos) << message({{"zzz", 3}});
  EXPECT_NE(message({{"optimizer", "adma"}}).find("got \"adma\" (did you mean \"adam\"?)"), std::string::npos)
      << message({{"optimizer", "adma"}});
  EXPECT_NE(message({{"epochs", 0}}).find("expected an integer in [1, 10000], got 0"), std::string::npos) << message({{"epochs", 0}});
  EXPECT_NE(message({{"milestones", "2"}}).find("expected a list of integers in [1, 10000], got \"2\""), std::string::npos)
      << message({{"milestones", "2"}});
  EXPECT_NE(message({{"epochs", "3"}}).find("\"epochs\""), std::string::npos);
  EXPECT_NE(message({{"epochs", 0}}).find("in [1, 10000]"), std::string::npos);
  EXPECT_NE(message({{"optimizer", "rmsprop"}}).find("\"adam\""), std::string::npos);
  EXPECT_NE(message({{"lr", -1.0}}).find("\"lr\""), std::string::npos);
  EXPECT_NE(message({{"milestones", {1, "x"}}}).find("\"milestones\""), std::string::npos);
  EXPECT_NE(message(nlohmann::json::array()).find("JSON object"), std::string::npos);
  const auto r = s.resolve({{"epochs", 2}});
  EXPECT_EQ(r["epochs"], 2);
  EXPECT_EQ(r["optimizer"], "adam");  // default filled in
}

TEST(Models, RegistryListsAndRejectsUnknownNames) {
  const auto models = list_models();
  ASSERT_FALSE(models.empty());
  try {
    create_model("resnet9000");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("small_cnn"), std::string::npos) << e.what();
  }
}

TEST(Models, SmallCnnShapesHeadResetAndGroups) {
  Generator g(3);
  ModelOptions mo;
  mo.gen = &g;
  auto m = create_model("small_cnn", mo);
  m->eval();
  Tensor x = Tensor::randn({2, 1, 28, 28}, &g);
  EXPECT_EQ((*m)(x).shape(), (Shape{2, 10}));
  EXPECT_EQ(m->forward_features(x).shape(), (Shape{2, 64, 7, 7}));
  m->reset_classifier(5, &g);
  EXPECT_EQ((*m)(x).shape(), (Shape{2, 5}));
  EXPECT_EQ(m->num_classes(), 5);
  EXPECT_EQ(m->num_parameters(), 288 + 64 + 9216 + 64 + 18432 + 128 + 36864 + 128 + 3136 * 128 + 128 + 128 * 5 + 5);
  for (const auto& [group, prefix] : m->parameter_groups()) EXPECT_FALSE(m->parameters_with_prefix(prefix).empty()) << prefix;
  EXPECT_THROW((*m)(Tensor::randn({2, 1, 32, 32}, &g)), Error);
}

TEST(Checkpoint, RoundTripAndRejectsOtherFiles) {
  const std::string dir = scratch("ckpt");
  fs::create_directories(dir);
  TrainingState st;
  st.epoch = 7;
  st.model.insert("w", Tensor::arange(4));
  st.optimizer.kind = "adam";
  st.optimizer.tensors.insert("state.0.exp_avg", Tensor::ones({2}));
  st.optimizer.scalars.insert("param_groups.0.lr", 0.1 + 1e-17);
  st.scheduler.kind = "cosine";
  st.scheduler.scalars.insert("last_epoch", 3);
  Generator g(42);
  g.normal();  // leaves a cached spare value
  st.rng = g.state();
  st.config_json = R"({"a":1})";
  st.history_json = "[]";
  save_checkpoint(dir + "/c.safetensors", st);
  TrainingState r = load_checkpoint(dir + "/c.safetensors");
  EXPECT_EQ(r.epoch, 7);
  EXPECT_EQ(r.optimizer.scalars.at("param_groups.0.lr"), 0.1 + 1e-17);
  EXPECT_EQ(r.scheduler.scalars.at("last_epoch"), 3);
  Generator h(0);
  h.set_state(r.rng);
  EXPECT_EQ(h.normal(), g.normal());
  EXPECT_EQ(h.next_u64(), g.next_u64());
  EXPECT_EQ(r.model.at("w").to_vector<float>(), (std::vector<float>{0, 1, 2, 3}));
  save_safetensors(dir + "/plain.safetensors", {{"w", Tensor::ones({1})}});
  orbit::testing::expect_error([&] { load_checkpoint(dir + "/plain.safetensors"); },
               {"plain.safetensors: not an Orbit checkpoint", "cannot resume from this checkpoint", "--fresh"});
  // A damaged (truncated) checkpoint is named, with the way to start over.
  const std::string bytes = orbit::testing::read_file_bytes(dir + "/c.safetensors");
  write_text_file(dir + "/cut.safetensors", bytes.substr(0, bytes.size() - 5));
  orbit::testing::expect_error([&] { load_checkpoint(dir + "/cut.safetensors"); },
               {"cut.safetensors", "outside the data section", "cut.safetensors moved away, the same command starts this run over",
                "--fresh starts over every run"});
}

TEST(Plot, LineChartDrawsEverySeriesWithLegendAndTicks) {
  Series a{"train <loss>", {1, 2, 3, 4}, {0.9, 0.5, 0.4, 0.35}}, b{"test", {1, 2, 3, 4}, {0.8, 0.6, 0.5, 0.45}};
  const std::string svg = svg_line_chart("curves", "epoch", "loss", {a, b});
  size_t polylines = 0;
  for (size_t at = svg.find("<polyline"); at != std::string::npos; at = svg.find("<polyline", at + 1)) ++polylines;
  EXPECT_EQ(polylines, 2u);
  EXPECT_NE(svg.find("train &lt;loss&gt;"), std::string::npos);  // escaped legend text
  EXPECT_NE(svg.find(">3</text>"), std::string::npos);           // integer epoch ticks ...
  EXPECT_EQ(svg.find(">2.5</text>"), std::string::npos);         // ... and no fractional ones
  EXPECT_THROW(svg_line_chart("bad", "x", "y", {Series{"s", {1, 2}, {1}}}), Error);
}

// A study's angle plot carries a line per method (20 and more): every legend row must lie inside the
// picture, however long the names, and no two lines may be drawn alike.
TEST(Plot, ManySeriesStayInsideThePictureAndLookDifferent) {
  std::vector<Series> many;
  for (int k = 0; k < 21; ++k)
    many.push_back(Series{"method " + std::to_string(k) + (k == 13 ? ", whole orbit, orbit-mean reference, lambda 10" : ""),
                          {0, 15, 30}, {90.0 - k, 80.0 - k, 85.0 - k}});
  const std::string svg = svg_line_chart("angles", "angle (degrees)", "accuracy (%)", many, 720, 420);
  auto attr = [](const std::string& s, size_t from, const std::string& key) {
    const size_t at = s.find(key + "=\"", from) + key.size() + 2;
    return std::stod(s.substr(at, s.find('"', at) - at));
  };
  const double width = attr(svg, 0, "width"), height = attr(svg, 0, "height");
  std::set<std::string> styles;
  size_t rows = 0;
  for (size_t at = svg.find("<polyline"); at != std::string::npos; at = svg.find("<polyline", at + 1)) {
    const size_t end = svg.find(" points=", at);
    styles.insert(svg.substr(at, end - at));  // stroke colour and dash pattern
  }
  EXPECT_EQ(styles.size(), many.size());
  for (const Series& s : many) {
    const size_t at = svg.find(">" + s.name + "</text>");
    ASSERT_NE(at, std::string::npos) << s.name;
    const size_t open = svg.rfind("<text", at);
    const double x = attr(svg, open, "x"), y = attr(svg, open, "y");
    EXPECT_LE(y + 4, height) << s.name;
    EXPECT_LE(x + 7.0 * s.name.size(), width) << s.name;  // 7 px per character bounds the 12 px font
    ++rows;
  }
  EXPECT_EQ(rows, many.size());
  // A few short series keep the requested size.
  const std::string small = svg_line_chart("two", "x", "y", {many[0], many[1]}, 640, 400);
  EXPECT_EQ(attr(small, 0, "width"), 640);
  EXPECT_EQ(attr(small, 0, "height"), 400);
}
