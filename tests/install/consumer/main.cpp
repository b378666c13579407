// Builds a small model with Orbit and trains it for a few steps on one fixed batch; the README's
// example is this program. Prints "loss decreased" when training lowers the loss.
#include <cstdio>

#include "engine/ops.h"
#include "layers/layers.h"
#include "train/optim.h"

using namespace orbit;

int main() {
  manual_seed(0);
  auto model = std::make_shared<Sequential>();
  model->push_back(std::make_shared<Conv2d>(1, 8, 3, /*stride=*/1, /*padding=*/1));
  model->push_back(std::make_shared<ReLU>());
  model->push_back(std::make_shared<AdaptiveAvgPool2d>(1));
  model->push_back(std::make_shared<Flatten>());
  model->push_back(std::make_shared<Linear>(8, 10));
  Adam opt(model->parameters(), AdamOptions{});
  Tensor x = Tensor::randn({16, 1, 28, 28});
  Tensor y = Tensor::from_vector(std::vector<int64_t>(16, 3), {16});  // every label is class 3
  double first = 0, last = 0;
  for (int step = 0; step < 20; ++step) {
    Tensor loss = cross_entropy((*model)(x), y);
    opt.zero_grad();
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item();
  }
  std::printf("loss %.4f -> %.4f%s\n", first, last, last < first ? ": loss decreased" : "");
  return last < first ? 0 : 1;
}
