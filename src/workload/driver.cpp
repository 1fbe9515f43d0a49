#include "workload/workload.h"

#include <algorithm>
#include <cerrno>

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

int touch_pages(Vm& vm, int vcpu, uint64_t gpa, uint64_t npages, bool write, std::mt19937_64* rng) {
  std::vector<uint64_t> order(npages);
  for (uint64_t i = 0; i < npages; i++) order[i] = gpa + (i << kPageShift);
  if (rng) std::shuffle(order.begin(), order.end(), *rng);
  for (uint64_t p : order) {
    switch (vm.vcpu_access(vcpu, p, write)) {
      case ExitReason::None:
      case ExitReason::Mmio: break;
      case ExitReason::VmDead: return -EIO;
      case ExitReason::NoMemory: return -ENOMEM;
      default: return -EFAULT;
    }
  }
  return 0;
}

VmConfig td_vm_config(const WorkloadConfig& c, uint64_t pool_pages) {
  VmConfig v;
  v.type = VmType::Td;
  v.ept_levels = c.ept_levels;
  v.nr_vcpus = c.vcpus;
  v.design = c.design;
  v.pool_pages = pool_pages;
  return v;
}

}  // namespace mirrormmu
