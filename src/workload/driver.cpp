#include "workload/workload.h"

namespace mirrormmu {

bool Driver::op(const std::string& name, const std::function<int()>& fn) {
  if (failed_) return false;
  ops_++;
  const int r = fn();
  if (checker_) {
    if (r < 0 && !tolerate_errors_ && !vm_.bugs().bugged()) checker_->report("op_failed", name + " returned " + std::to_string(r));
    checker_->check(name);
    if (!checker_->ok()) failed_ = true;
  }
  return !failed_;
}

}  // namespace mirrormmu
