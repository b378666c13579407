// The Module system: names matching PyTorch's state_dict for a nested model, state dict loading,
// modes, conversion, freezing, printing, reproducible construction, and a whole small ResNet-like
// model against PyTorch (fixtures from tests/fixtures/gen_layers.py).
#include <gtest/gtest.h>

#include <set>

#include "layers/init.h"
#include "layers/layers.h"
#include "tests/test_util.h"
#include "train/optim.h"

using namespace orbit;
using orbit::testing::all_close;
using orbit::testing::load_fixture;

namespace {

// torchvision's BasicBlock, as defined in gen_layers.py.
class BasicBlock : public Module {
 public:
  BasicBlock(int64_t in, int64_t out, int64_t stride, Generator* gen = nullptr) : Module("BasicBlock") {
    conv1 = register_module("conv1", std::make_shared<Conv2d>(in, out, 3, stride, 1, 1, 1, false,
                                                              ConvPadding::Zeros, gen));
    bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(out));
    relu = register_module("relu", std::make_shared<ReLU>(true));
    conv2 = register_module("conv2", std::make_shared<Conv2d>(out, out, 3, 1, 1, 1, 1, false,
                                                              ConvPadding::Zeros, gen));
    bn2 = register_module("bn2", std::make_shared<BatchNorm2d>(out));
    if (stride != 1 || in != out)
      downsample = register_module(
          "downsample", std::make_shared<Sequential>(std::initializer_list<std::shared_ptr<Module>>{
                            std::make_shared<Conv2d>(in, out, 1, stride, 0, 1, 1, false, ConvPadding::Zeros, gen),
                            std::make_shared<BatchNorm2d>(out)}));
  }
  Tensor forward(const Tensor& x) override {
    Tensor out = relu->forward(bn1->forward(conv1->forward(x)));
    out = bn2->forward(conv2->forward(out));
    return relu->forward(add(out, downsample ? downsample->forward(x) : x));
  }
  std::shared_ptr<Conv2d> conv1, conv2;
  std::shared_ptr<BatchNorm2d> bn1, bn2;
  std::shared_ptr<ReLU> relu;
  std::shared_ptr<Sequential> downsample;
};

class TinyResNet : public Module {
 public:
  explicit TinyResNet(int64_t width = 4, int64_t num_classes = 10, Generator* gen = nullptr)
      : Module("TinyResNet") {
    conv1 = register_module("conv1", std::make_shared<Conv2d>(3, width, 7, 2, 3, 1, 1, false,
                                                              ConvPadding::Zeros, gen));
    bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(width));
    relu = register_module("relu", std::make_shared<ReLU>(true));
    maxpool = register_module("maxpool", std::make_shared<MaxPool2d>(3, 2, 1));
    layer1 = register_module("layer1", std::make_shared<Sequential>());
    layer1->push_back(std::make_shared<BasicBlock>(width, width, 1, gen));
    layer1->push_back(std::make_shared<BasicBlock>(width, width, 1, gen));
    layer2 = register_module("layer2", std::make_shared<Sequential>());
    layer2->push_back(std::make_shared<BasicBlock>(width, 2 * width, 2, gen));
    layer2->push_back(std::make_shared<BasicBlock>(2 * width, 2 * width, 1, gen));
    avgpool = register_module("avgpool", std::make_shared<AdaptiveAvgPool2d>(1, 1));
    fc = register_module("fc", std::make_shared<Linear>(2 * width, num_classes, true, gen));
  }
  Tensor forward(const Tensor& x) override {
    Tensor y = maxpool->forward(relu->forward(bn1->forward(conv1->forward(x))));
    y = layer2->forward(layer1->forward(y));
    return fc->forward(avgpool->forward(y).flatten(1));
  }
  std::shared_ptr<Conv2d> conv1;
  std::shared_ptr<BatchNorm2d> bn1;
  std::shared_ptr<ReLU> relu;
  std::shared_ptr<MaxPool2d> maxpool;
  std::shared_ptr<Sequential> layer1, layer2;
  std::shared_ptr<AdaptiveAvgPool2d> avgpool;
  std::shared_ptr<Linear> fc;
};

template <class Pairs>
std::vector<std::string> names_of(const Pairs& pairs) {
  std::vector<std::string> v;
  for (const auto& p : pairs) v.push_back(p.first);
  return v;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

bool mentions(const std::string& msg, const std::string& word) { return msg.find(word) != std::string::npos; }

}  // namespace

// ------------------------------------------------------------------ names and printing

TEST(Module, NamesMatchPyTorch) {
  const auto fx = load_fixture("layers_names");
  auto m = std::make_shared<TinyResNet>();
  EXPECT_EQ(m->state_dict().keys(), fx.meta["state_dict"].get<std::vector<std::string>>());
  EXPECT_EQ(names_of(m->named_parameters()), fx.meta["named_parameters"].get<std::vector<std::string>>());
  EXPECT_EQ(names_of(m->named_buffers()), fx.meta["named_buffers"].get<std::vector<std::string>>());
  EXPECT_EQ(names_of(m->named_modules()), fx.meta["named_modules"].get<std::vector<std::string>>());
  for (const auto& [key, t] : m->state_dict())
    EXPECT_EQ(t.shape(), fx.meta["shapes"][key].get<Shape>()) << key;
  EXPECT_EQ(m->num_parameters(), fx.meta["num_parameters"].get<int64_t>());
  EXPECT_EQ(m->state_dict().at("bn1.num_batches_tracked").dtype(), DType::I64);
  // Spot checks of the structure the names come from.
  EXPECT_TRUE(m->has_param("layer2.0.downsample.0.weight"));
  EXPECT_FALSE(m->has_param("layer1.0.downsample.0.weight"));
  EXPECT_EQ(m->named_children().size(), 8u);
}

TEST(Module, ReprMatchesPyTorch) {
  const auto fx = load_fixture("layers_names");
  TinyResNet m;
  EXPECT_EQ(m.repr(), fx.meta["repr"].get<std::string>());

  auto inner_list = std::make_shared<ModuleList>();
  inner_list->push_back(std::make_shared<ReLU>(true));
  Conv2dOptions o;
  o.in_channels = 2;
  o.out_channels = 4;
  o.kernel_h = 3;
  o.stride_h = 2;
  o.pad_h = 1;
  Sequential assorted{
      std::make_shared<Conv2d>(o),
      std::make_shared<Conv2d>(4, 4, 3, 1, 2, 2, 2, true, ConvPadding::Circular),
      std::make_shared<BatchNorm1d>(4, 1e-5, std::nullopt, false),
      std::make_shared<BatchNorm2d>(4, 1e-3, 0.1, true, false),
      std::make_shared<SiLU>(),
      std::make_shared<GELU>("tanh"),
      std::make_shared<GELU>(),
      std::make_shared<Sigmoid>(),
      std::make_shared<Tanh>(),
      std::make_shared<MaxPool2d>(2),
      std::make_shared<MaxPool2d>([] {
        Pool2dParams p;
        p.kernel_h = 3;
        p.kernel_w = 2;
        p.stride_h = 2;
        p.stride_w = 1;
        p.pad_h = 1;
        return p;
      }()),
      std::make_shared<AvgPool2d>(3, 2, 1),
      std::make_shared<AdaptiveAvgPool2d>(1),
      std::make_shared<AdaptiveAvgPool2d>(2, 3),
      std::make_shared<Dropout>(0.25),
      std::make_shared<Flatten>(),
      std::make_shared<Flatten>(0, 2),
      std::make_shared<Identity>(),
      std::make_shared<Linear>(4, 2, false),
      std::make_shared<ReLU>(),
      std::make_shared<Sequential>(),
      inner_list};
  EXPECT_EQ(assorted.repr(), fx.meta["assorted_repr"].get<std::string>());
  std::ostringstream os;
  os << assorted;
  EXPECT_EQ(os.str(), assorted.repr());
}

TEST(Module, SummaryListsParametersAndBuffers) {
  TinyResNet m;
  m.set_requires_grad("layer1.", false);
  const std::string s = m.summary();
  EXPECT_TRUE(mentions(s, "TinyResNet: " + std::to_string(m.num_parameters()) + " parameters")) << s;
  EXPECT_TRUE(mentions(s, "layer2.0.downsample.0.weight")) << s;
  EXPECT_TRUE(mentions(s, "[8, 4, 1, 1]")) << s;
  EXPECT_TRUE(mentions(s, "bn1.running_var")) << s;
  EXPECT_TRUE(mentions(s, "frozen")) << s;
}

TEST(Module, PyFloatRepr) {
  EXPECT_EQ(detail::py_float(1e-5), "1e-05");
  EXPECT_EQ(detail::py_float(0.1), "0.1");
  EXPECT_EQ(detail::py_float(1.0), "1.0");
  EXPECT_EQ(detail::py_float(0.0001), "0.0001");
  EXPECT_EQ(detail::py_float(123.25), "123.25");
  EXPECT_EQ(detail::py_float(1e16), "1e+16");
  EXPECT_EQ(detail::py_float(1e15), "1000000000000000.0");
  EXPECT_EQ(detail::py_float(-2.5e-7), "-2.5e-07");
  EXPECT_EQ(detail::py_float(1.0 / 3.0), "0.3333333333333333");
}

// ------------------------------------------------------------------ registration and access

TEST(Module, RegistrationRules) {
  Module m("Custom");
  Tensor w = m.register_parameter("w", Tensor::zeros({2}));
  EXPECT_TRUE(w.requires_grad());
  EXPECT_TRUE(w.is_leaf());
  Tensor frozen = m.register_parameter("frozen", Tensor::zeros({2}), /*requires_grad=*/false);
  EXPECT_FALSE(frozen.requires_grad());
  Tensor b = m.register_buffer("b", Tensor::zeros({3}, DType::I64));
  m.register_buffer("scratch", Tensor::zeros({1}), /*persistent=*/false);
  m.register_module("child", std::make_shared<Linear>(2, 2));

  EXPECT_TRUE(mentions(error_of([&] { m.register_parameter("w", Tensor::zeros({1})); }), "already used"));
  EXPECT_TRUE(mentions(error_of([&] { m.register_buffer("child", Tensor::zeros({1})); }), "child module"));
  EXPECT_TRUE(mentions(error_of([&] { m.register_parameter("a.b", Tensor::zeros({1})); }), "'.'"));
  EXPECT_TRUE(mentions(error_of([&] { m.register_parameter("i", Tensor::zeros({1}, DType::I64)); }), "int64"));
  EXPECT_THROW(m.register_module("null", std::shared_ptr<Module>()), Error);

  // A parameter built from a computed tensor becomes a leaf.
  Tensor src = Tensor::ones({2}).requires_grad_();
  Tensor p = m.register_parameter("computed", mul(src, 2.0));
  EXPECT_TRUE(p.is_leaf());
  EXPECT_TRUE(p.requires_grad());

  // Non-persistent buffers are buffers but not part of the state dict.
  EXPECT_EQ(names_of(m.named_buffers()), (std::vector<std::string>{"b", "scratch"}));
  EXPECT_EQ(m.state_dict().keys(),
            (std::vector<std::string>{"w", "frozen", "computed", "b", "child.weight", "child.bias"}));
  EXPECT_EQ(m.buffer("b").dtype(), DType::I64);
}

TEST(Module, DefaultForwardThrows) {
  Module m("Holder");
  EXPECT_TRUE(mentions(error_of([&] { m.forward(Tensor::zeros({1})); }), "Holder"));
}

TEST(Module, AccessByDottedName) {
  auto m = std::make_shared<TinyResNet>();
  Tensor& w = m->param("layer2.0.downsample.0.weight");
  EXPECT_TRUE(w.same(m->layer2->at<BasicBlock>(0)->downsample->at<Conv2d>(0)->weight));
  EXPECT_TRUE(m->buffer("layer1.1.bn2.running_mean").same(m->layer1->at<BasicBlock>(1)->bn2->running_mean));
  EXPECT_TRUE(mentions(error_of([&] { m->param("layer1.0.conv3.weight"); }), "conv3"));
  EXPECT_TRUE(mentions(error_of([&] { m->param("layer9.0.conv1.weight"); }), "does not exist"));
  EXPECT_TRUE(mentions(error_of([&] { m->param("fc.wieght"); }), "\"weight\""));  // lists the real names
  EXPECT_EQ(m->submodule("layer2.1")->name(), "BasicBlock");
  EXPECT_EQ(m->submodule("").get(), m.get());
  EXPECT_TRUE(m->submodule_as<BatchNorm2d>("layer2.0.downsample.1") != nullptr);
  EXPECT_THROW(m->submodule_as<Conv2d>("layer2.0.downsample.1"), Error);
  EXPECT_TRUE(mentions(error_of([&] { m->submodule("layer2.7"); }), "layer2.7"));
  // A misspelt name is answered with the closest real one at that level of the path.
  EXPECT_TRUE(mentions(error_of([&] { m->param("fc.wieght"); }), "'fc.wieght' (did you mean \"weight\"?)"));
  EXPECT_TRUE(mentions(error_of([&] { m->buffer("bn1.running_man"); }), "(did you mean \"running_mean\"?)"));
  EXPECT_TRUE(mentions(error_of([&] { m->submodule("layr2.1"); }), "'layr2.1' (did you mean \"layer2\"?)"));
  EXPECT_FALSE(mentions(error_of([&] { m->submodule("layer2.7"); }), "did you mean"));
}

TEST(Errors, DidYouMeanNamesAPlausibleMisspelling) {
  const std::vector<std::string> keys = {"lambda", "lr", "epochs", "sym_kl", "C4", "resnet_small", "resnet_small32"};
  EXPECT_EQ(did_you_mean("lamda", keys), " (did you mean \"lambda\"?)");       // a letter left out
  EXPECT_EQ(did_you_mean("lambdaa", keys), " (did you mean \"lambda\"?)");     // one too many
  EXPECT_EQ(did_you_mean("lmabda", keys), " (did you mean \"lambda\"?)");      // two letters swapped
  EXPECT_EQ(did_you_mean("symkl", keys), " (did you mean \"sym_kl\"?)");
  EXPECT_EQ(did_you_mean("c4", keys), " (did you mean \"C4\"?)");              // case aside
  EXPECT_EQ(did_you_mean("resnet_smal", keys), " (did you mean \"resnet_small\"?)");  // the closest of two
  EXPECT_EQ(did_you_mean("Lr", keys), " (did you mean \"lr\"?)");
  // Nothing for a name too far from every candidate (more than a third of its letters changed), for
  // an exact match, or without candidates.
  EXPECT_EQ(did_you_mean("momentum", keys), "");
  EXPECT_EQ(did_you_mean("lx", keys), "");  // two letters allow no edit, only case
  EXPECT_EQ(did_you_mean("lamd", keys), "");  // two edits in four letters
  EXPECT_EQ(did_you_mean("lambda", keys), "");
  EXPECT_EQ(did_you_mean("lamda", {}), "");
}

TEST(Module, ReplaceModuleKeepsPosition) {
  auto m = std::make_shared<TinyResNet>();
  m->fc = m->replace_module("fc", std::make_shared<Linear>(8, 3));
  EXPECT_EQ(m->param("fc.weight").shape(), Shape({3, 8}));
  EXPECT_EQ(m->state_dict().keys().back(), "fc.bias");
  EXPECT_THROW(m->replace_module("head", std::make_shared<Linear>(8, 3)), Error);
}

TEST(Module, SharedModulesAndParameters) {
  // As PyTorch: named_parameters / named_modules list a shared object once; state_dict lists it
  // under every name.
  auto lin = std::make_shared<Linear>(2, 2);
  Sequential seq{lin, lin};
  EXPECT_EQ(names_of(seq.named_parameters()), (std::vector<std::string>{"0.weight", "0.bias"}));
  EXPECT_EQ(names_of(seq.named_modules()), (std::vector<std::string>{"", "0"}));
  EXPECT_EQ(seq.state_dict().keys(), (std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias"}));
  EXPECT_EQ(seq.num_parameters(), 6);
}

// ------------------------------------------------------------------ state dicts

TEST(Module, StateDictAliasesAndLoadCopiesInPlace) {
  manual_seed(11);
  TinyResNet a, b;
  const StateDict sa = a.state_dict();
  // Aliases: the state dict sees later changes; clone() for a snapshot.
  EXPECT_EQ(sa.at("fc.weight").storage().get(), a.fc->weight.storage().get());
  EXPECT_FALSE(sa.at("fc.weight").requires_grad());

  const TensorImpl* w_impl = b.fc->weight.impl_ptr().get();
  const LoadResult r = b.load_state_dict(sa);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.str(), "<All keys matched successfully>");
  for (const auto& [k, t] : b.state_dict()) EXPECT_TRUE(all_close(t, sa.at(k), 0)) << k;
  EXPECT_EQ(b.fc->weight.impl_ptr().get(), w_impl);  // same parameter object, new values
  EXPECT_TRUE(b.fc->weight.requires_grad());
  // Values were copied, not aliased.
  EXPECT_NE(b.fc->weight.storage().get(), a.fc->weight.storage().get());
}

TEST(Module, LoadStateDictStrictErrors) {
  manual_seed(12);
  TinyResNet m, src;
  const Tensor before = m.fc->weight.detach().clone();
  StateDict sd = src.state_dict();
  sd.erase("layer1.0.bn1.running_var");
  sd.erase("fc.bias");
  sd.insert("fc.extra", Tensor::zeros({1}));
  sd.set("fc.weight", Tensor::zeros({3, 8}));
  const std::string msg = error_of([&] { m.load_state_dict(sd); });
  EXPECT_TRUE(mentions(msg, "Error(s) in loading state_dict for TinyResNet")) << msg;
  EXPECT_TRUE(mentions(msg, "Missing key(s) in state_dict: \"layer1.0.bn1.running_var\", \"fc.bias\"")) << msg;
  EXPECT_TRUE(mentions(msg, "Unexpected key(s) in state_dict: \"fc.extra\"")) << msg;
  EXPECT_TRUE(mentions(msg, "size mismatch for fc.weight: copying a param with shape [3, 8] from checkpoint, "
                            "the shape in current model is [10, 8]")) << msg;
  // Nothing was copied.
  EXPECT_TRUE(all_close(m.fc->weight, before, 0));
  EXPECT_FALSE(all_close(m.conv1->weight, src.conv1->weight, 0));
}

TEST(Module, LoadStateDictNonStrict) {
  manual_seed(13);
  TinyResNet m, src;
  StateDict sd = src.state_dict();
  sd.erase("fc.weight");
  sd.erase("fc.bias");
  sd.insert("head.weight", Tensor::zeros({2}));
  const Tensor fc_before = m.fc->weight.detach().clone();
  const LoadResult r = m.load_state_dict(sd, /*strict=*/false);
  EXPECT_EQ(r.missing_keys, (std::vector<std::string>{"fc.weight", "fc.bias"}));
  EXPECT_EQ(r.unexpected_keys, (std::vector<std::string>{"head.weight"}));
  EXPECT_TRUE(mentions(r.str(), "fc.weight"));
  EXPECT_TRUE(all_close(m.conv1->weight, src.conv1->weight, 0));  // matching keys loaded
  EXPECT_TRUE(all_close(m.fc->weight, fc_before, 0));
  // A shape mismatch is an error even when not strict.
  sd.set("conv1.weight", Tensor::zeros({4, 3, 3, 3}));
  EXPECT_TRUE(mentions(error_of([&] { m.load_state_dict(sd, false); }), "size mismatch for conv1.weight"));
}

TEST(Module, LoadStateDictConvertsDtype) {
  Linear a(3, 2), b(3, 2);
  StateDict sd;
  for (const auto& [k, t] : a.state_dict()) sd.insert(k, t.to(DType::F64));
  b.load_state_dict(sd);
  EXPECT_EQ(b.weight.dtype(), DType::F32);
  EXPECT_TRUE(all_close(b.weight, a.weight, 0));
}

// ------------------------------------------------------------------ modes, gradients, conversion

TEST(Module, TrainEvalPropagates) {
  TinyResNet m;
  EXPECT_TRUE(m.is_training());
  m.eval();
  for (auto& [name, mod] : m.named_modules()) EXPECT_FALSE(mod->is_training()) << name;
  m.layer2->train();
  EXPECT_TRUE(m.submodule("layer2.0.downsample.1")->is_training());
  EXPECT_FALSE(m.layer1->is_training());
  m.train();
  for (auto& [name, mod] : m.named_modules()) EXPECT_TRUE(mod->is_training()) << name;
}

TEST(Module, ZeroGrad) {
  Linear lin(3, 2);
  sum(lin.forward(Tensor::ones({2, 3}))).backward();
  ASSERT_TRUE(lin.weight.grad().defined());
  lin.zero_grad(/*set_to_none=*/false);
  EXPECT_TRUE(all_close(lin.weight.grad(), Tensor::zeros({2, 3}), 0));
  lin.zero_grad();
  EXPECT_FALSE(lin.weight.grad().defined());
  EXPECT_FALSE(lin.bias.grad().defined());
}

TEST(Module, ToDtypeKeepsHandlesAndCounters) {
  manual_seed(14);
  TinyResNet m;
  const Tensor w32 = m.fc->weight.detach().clone();
  const TensorImpl* impl = m.fc->weight.impl_ptr().get();
  m.fc->weight.set_grad(Tensor::ones({10, 8}));
  m.to(DType::F64);
  EXPECT_EQ(m.fc->weight.impl_ptr().get(), impl);
  EXPECT_EQ(m.fc->weight.dtype(), DType::F64);
  EXPECT_EQ(m.param("fc.weight").dtype(), DType::F64);
  EXPECT_EQ(m.bn1->running_mean.dtype(), DType::F64);
  EXPECT_EQ(m.bn1->num_batches_tracked.dtype(), DType::I64);  // counters stay int64
  EXPECT_TRUE(m.fc->weight.requires_grad());
  EXPECT_TRUE(m.fc->weight.is_leaf());
  EXPECT_EQ(m.fc->weight.grad().dtype(), DType::F64);
  EXPECT_TRUE(all_close(m.fc->weight, w32.to(DType::F64), 0));
  // Autograd and optimizers work on the converted parameters.
  m.zero_grad();
  sum(m.fc->forward(Tensor::ones({1, 8}, DType::F64))).backward();
  ASSERT_TRUE(m.fc->weight.grad().defined());
  EXPECT_EQ(m.fc->weight.grad().dtype(), DType::F64);
  SGD opt(m.fc->parameters(), SGDOptions(0.1));
  opt.step();
  EXPECT_TRUE(all_close(m.fc->weight, add(w32.to(DType::F64), -0.1), 1e-12));
  m.to(Device::cpu());  // no-op on the same device
  EXPECT_EQ(m.fc->weight.impl_ptr().get(), impl);
  EXPECT_THROW(m.to(DType::I64), Error);
}

// ------------------------------------------------------------------ freezing

TEST(Module, FreezingByPrefix) {
  TinyResNet m;
  const int64_t total = m.num_parameters();
  const auto layer2 = m.named_parameters_with_prefix("layer2.");
  ASSERT_FALSE(layer2.empty());
  for (const auto& [name, p] : layer2) EXPECT_EQ(name.rfind("layer2.", 0), 0u) << name;
  int64_t layer2_count = 0;
  for (const auto& p : m.parameters_with_prefix("layer2.")) layer2_count += p.numel();

  m.set_requires_grad(false);
  EXPECT_EQ(m.num_parameters(/*trainable_only=*/true), 0);
  EXPECT_EQ(m.set_requires_grad("layer2.", true), static_cast<int64_t>(layer2.size()));
  EXPECT_EQ(m.num_parameters(true), layer2_count);
  EXPECT_TRUE(m.param("layer2.1.conv2.weight").requires_grad());
  EXPECT_FALSE(m.param("layer1.1.conv2.weight").requires_grad());
  EXPECT_EQ(m.num_parameters(), total);
  EXPECT_THROW(m.set_requires_grad("layer7.", true), Error);
  // A prefix that matches nothing is answered with the prefixes there are at its depth.
  const std::string top = error_of([&] { m.set_requires_grad("layr2.", true); });
  EXPECT_TRUE(mentions(top, "no parameter name starts with 'layr2.' (did you mean \"layer2.\"?)")) << top;
  EXPECT_TRUE(mentions(top, "\"layer1.\", \"layer2.\", \"fc.\"")) << top;
  const std::string deeper = error_of([&] { m.set_requires_grad("layer2.5.", true); });
  EXPECT_TRUE(mentions(deeper, "(the names start with ")) << deeper;
  EXPECT_TRUE(mentions(deeper, "\"layer2.0.\", \"layer2.1.\"")) << deeper;
  // A submodule freezes its own parameters.
  m.fc->set_requires_grad(true);
  EXPECT_TRUE(m.fc->weight.requires_grad());
}

// ------------------------------------------------------------------ reproducible construction

TEST(Module, ConstructionIsReproducibleFromASeed) {
  manual_seed(42);
  TinyResNet a;
  manual_seed(42);
  TinyResNet b;
  manual_seed(43);
  TinyResNet c;
  Generator g1(7), g2(7);
  TinyResNet d(4, 10, &g1), e(4, 10, &g2);
  for (const auto& [k, t] : a.state_dict()) {
    EXPECT_TRUE(all_close(t, b.state_dict().at(k), 0)) << k;
    EXPECT_TRUE(all_close(d.state_dict().at(k), e.state_dict().at(k), 0)) << k;
  }
  EXPECT_FALSE(all_close(a.conv1->weight, c.conv1->weight, 0));
  EXPECT_FALSE(all_close(a.fc->weight, d.fc->weight, 0));
}

// ------------------------------------------------------------------ the whole model against PyTorch

namespace {
// float32 comparison: 1e-4 relative plus 1e-5 of the tensor's scale for elements near zero
// (float32 accumulation over up to a few hundred terms).
::testing::AssertionResult close32(const Tensor& a, const Tensor& b) {
  const auto v = b.to_vector<double>();
  double scale = 0;
  for (double x : v) scale = std::max(scale, std::abs(x));
  return all_close(a, b, 1e-4, 1e-5 * scale);
}

StateDict fixture_state(const orbit::testing::Fixture& fx, const std::string& prefix) {
  StateDict sd;
  for (const auto& [k, t] : fx.tensors)
    if (k.rfind(prefix, 0) == 0) sd.insert(k.substr(prefix.size()), t);
  return sd;
}
}  // namespace

TEST(ModuleResNet, EvalForwardMatchesPyTorch) {
  const auto fx = load_fixture("layers_resnet");
  TinyResNet m;
  m.load_state_dict(fixture_state(fx, "sd."));
  m.eval();
  NoGradGuard ng;
  EXPECT_TRUE(close32(m.forward(fx.at("x")), fx.at("eval.y")));
}

TEST(ModuleResNet, TrainForwardBackwardAndStatisticsMatchPyTorch) {
  const auto fx = load_fixture("layers_resnet");
  TinyResNet m;
  m.load_state_dict(fixture_state(fx, "sd."));
  m.train();
  Tensor x = fx.at("x").clone().requires_grad_();
  Tensor y = m.forward(x);
  EXPECT_TRUE(close32(y, fx.at("train.y")));
  y.backward(fx.at("train.gy"));
  EXPECT_TRUE(close32(x.grad(), fx.at("train.gx")));
  for (const auto& [k, t] : fixture_state(fx, "train.grad.")) {
    ASSERT_TRUE(m.param(k).grad().defined()) << k;
    EXPECT_TRUE(close32(m.param(k).grad(), t)) << k;
  }
  for (const auto& [k, t] : fixture_state(fx, "train.after.")) {
    if (t.dtype() == DType::I64) {
      EXPECT_EQ(m.buffer(k).item(), t.item()) << k;  // 7 + 1
    } else {
      EXPECT_TRUE(close32(m.buffer(k), t)) << k;
    }
  }
}
