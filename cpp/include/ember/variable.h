// variable.h: a layer's weight. Each variable owns its aligned storage; models refer
// to it, so a layer shared by two models (or used twice in one) is one set of weights.
#pragma once
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>
#include "ember/buffer.h"

namespace ember {

class Variable {
 public:
  explicit Variable(std::vector<int64_t> shape) : shape_(std::move(shape)) {
    int64_t size = 1;
    for (int64_t d : shape_) {
      if (d < 0 || (d > 0 && size > (int64_t(1) << 40) / d))
        throw std::invalid_argument("Variable: invalid shape");
      size *= d;
    }
    size_ = size;
    data_.resize(size);
  }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t size() const { return size_; }
  float* data() { return data_.data(); }
  const float* data() const { return data_.data(); }

 private:
  std::vector<int64_t> shape_;
  int64_t size_ = 0;
  FloatBuffer data_;
};

using VariablePtr = std::shared_ptr<Variable>;

}  // namespace ember
