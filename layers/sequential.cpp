// Sequential and ModuleList containers.
#include "layers/layers.h"

namespace orbit {

Sequential::Sequential() : Module("Sequential") {}

Sequential::Sequential(std::initializer_list<std::shared_ptr<Module>> modules) : Module("Sequential") {
  for (const auto& m : modules) push_back(m);
}

Sequential::Sequential(const std::vector<std::shared_ptr<Module>>& modules) : Module("Sequential") {
  for (const auto& m : modules) push_back(m);
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (const auto& m : modules_) y = (*m)(y);
  return y;
}

std::shared_ptr<Module> Sequential::operator[](int64_t index) const {
  const int64_t n = static_cast<int64_t>(modules_.size());
  ORBIT_CHECK(index >= -n && index < n, name(), ": index ", index, " is out of range for ", n, " modules");
  return modules_[static_cast<size_t>(index < 0 ? index + n : index)];
}

void Sequential::set_child(const std::string& name, std::shared_ptr<Module> module) {
  const std::shared_ptr<Module> old = submodule(name);
  Module::set_child(name, module);
  for (auto& m : modules_)
    if (m == old) m = module;
}

ModuleList::ModuleList() : Sequential("ModuleList") {}

ModuleList::ModuleList(std::initializer_list<std::shared_ptr<Module>> modules) : Sequential("ModuleList") {
  for (const auto& m : modules) push_back(m);
}

Tensor ModuleList::forward(const Tensor&) {
  throw Error("ModuleList: has no forward(); iterate over its modules and call them");
}

}  // namespace orbit
