// Image preprocessing for inference (data/transforms.h) against torchvision 0.14's resize and
// center_crop on tensors (fixture tests/fixtures/transforms_resize.json, gen_transforms.py).
#include "data/transforms.h"
#include "test_util.h"

namespace orbit {
namespace {

using testing::expect_error;

TEST(Transforms, ResizeAndCenterCropMatchTorchvision) {
  const auto fx = testing::load_fixture("transforms_resize");
  const auto cases = testing::fixture_cases(fx);
  ASSERT_EQ(cases.size(), 6u);
  for (const auto& c : cases) {
    const std::string name = c["name"];
    const Tensor image = fx.at("image." + c["image"].get<std::string>());
    const Tensor r = data::resize_shorter(image, c["size"].get<int64_t>(), c["antialias"].get<bool>());
    // float32 weights and sums in torch, double here: 1e-5 on values in [0, 1].
    EXPECT_TRUE(testing::all_close(r, fx.at(name + ".resized"), 0.0, 1e-5)) << name;
    const int64_t crop = c["crop"];
    EXPECT_TRUE(testing::all_close(data::center_crop(r, crop, crop), fx.at(name + ".cropped"), 0.0, 1e-5)) << name;
  }
}

TEST(Transforms, ResizeToTheSameSizeIsTheIdentityAndNormalizeIsPerChannel) {
  const Tensor x = testing::randn({2, 5, 7}, 1);
  EXPECT_TRUE(testing::all_close(data::resize_bilinear(x, 5, 7), x, 0.0, 1e-6));
  // A constant image stays constant under any resize (the weights sum to 1).
  const Tensor k = Tensor::full({1, 9, 13}, 0.25);
  EXPECT_TRUE(testing::all_close(data::resize_bilinear(k, 4, 3), Tensor::full({1, 4, 3}, 0.25), 0.0, 1e-7));
  EXPECT_TRUE(testing::all_close(data::resize_bilinear(k, 20, 31, false), Tensor::full({1, 20, 31}, 0.25), 0.0, 1e-7));
  const Tensor n = data::normalize_channels(Tensor::ones({2, 1, 2}), {0.5, 2.0}, {0.5, 4.0});
  EXPECT_EQ(n.to_vector<double>(), (std::vector<double>{1, 1, -0.25, -0.25}));
  expect_error([] { data::center_crop(Tensor::zeros({1, 4, 4}), 5, 2); }, {"center_crop", "5x2", "4x4"});
  expect_error([] { data::resize_shorter(Tensor::zeros({4, 4}), 2); }, {"resize_shorter", "[C, H, W]", "[4, 4]"});
  expect_error([] { data::resize_bilinear(Tensor::zeros({1, 4, 4}), 0, 2); }, {"resize_bilinear", "0x2"});
  expect_error([] { data::normalize_channels(Tensor::zeros({3, 2, 2}), {0.5}, {1.0}); }, {"3 channels", "3 means"});
}

}  // namespace
}  // namespace orbit
