// Forward hooks (layers/module.h): every submodule called through operator() reports its output.
#include <gtest/gtest.h>

#include "engine/ops.h"
#include "layers/layers.h"
#include "test_util.h"
#include "train/config.h"

using namespace orbit;
using namespace orbit::testing;

TEST(ModuleHooks, SeeInputsAndOutputsAndCanBeRemoved) {
  Generator gen(1);
  auto net = std::make_shared<Sequential>();
  net->push_back(std::make_shared<Linear>(3, 4, true, &gen));
  net->push_back(std::make_shared<ReLU>());
  net->push_back(std::make_shared<Linear>(4, 2, true, &gen));
  const Tensor x = randn({5, 3}, 2);
  std::vector<Tensor> seen_in, seen_out;
  int64_t id = net->submodule("1")->add_forward_hook([&](Module& m, const Tensor& in, const Tensor& out) {
    EXPECT_EQ(m.name(), "ReLU");
    seen_in.push_back(in);
    seen_out.push_back(out);
  });
  const Tensor y = (*net)(x);
  ASSERT_EQ(seen_out.size(), 1u);
  const Tensor h = linear(x, net->param("0.weight"), net->param("0.bias"));
  EXPECT_TRUE(all_close(seen_in[0], h, 0, 0));
  EXPECT_TRUE(all_close(seen_out[0], relu(h), 0, 0));
  net->submodule("1")->remove_forward_hook(id);
  (*net)(x);
  EXPECT_EQ(seen_out.size(), 1u);
  {
    ForwardHookGuard g(net->submodule("2"), [&](Module&, const Tensor&, const Tensor& out) { seen_out.push_back(out); });
    (*net)(x);
    EXPECT_EQ(seen_out.size(), 2u);
    EXPECT_TRUE(all_close(seen_out[1], y, 0, 0));
  }
  (*net)(x);
  EXPECT_EQ(seen_out.size(), 2u);
  expect_error([&] { net->add_forward_hook(Module::ForwardHook()); }, {"empty"});
}

TEST(ConfigSchemaLists, NumberAndStringLists) {
  ConfigSchema s("test config");
  s.number_list("grid", nlohmann::json::array({1.0}), 0.0, 10.0, "numbers").string_list("names", nlohmann::json::array(), {"a", "b"}, "names");
  const auto r = s.resolve({{"grid", {0.5, 2}}, {"names", {"a", "b", "a"}}});
  EXPECT_EQ(r["grid"][1], 2);
  EXPECT_EQ(r["names"].size(), 3u);
  expect_error([&] { s.resolve({{"grid", {11.0}}}); }, {"grid", "list of numbers", "in [0, 10]", "11"});
  expect_error([&] { s.resolve({{"grid", 1.0}}); }, {"grid", "list of numbers"});
  expect_error([&] { s.resolve({{"names", {"c"}}}); }, {"names", "\"a\"", "\"c\""});
  expect_error([&] { s.resolve({{"names", {1}}}); }, {"names", "list of strings"});
}
