// SPDX-License-Identifier: MIT
// kvm_get_running_vcpu(): the vCPU whose ioctl (KVM_RUN, a vCPU-scoped
// KVM_TDX_* command) the current thread is in, or -1 on a VM ioctl or a
// worker. The kernel keeps it per CPU between vcpu_load() and vcpu_put();
// here a thread is a CPU that never migrates, so a thread-local does; the
// deterministic engine swaps it per virtual thread (sync/vthread_locals.h).
#pragma once

namespace mirrormmu {

namespace detail {
inline thread_local int t_running_vcpu = -1;
}

inline int kvm_get_running_vcpu() { return detail::t_running_vcpu; }

// vcpu_load() .. vcpu_put() around a vCPU ioctl. Nests: an inner guard for
// the same vCPU restores the outer state.
class VcpuLoadGuard {
 public:
  explicit VcpuLoadGuard(int vcpu) : prev_(detail::t_running_vcpu) { detail::t_running_vcpu = vcpu; }
  ~VcpuLoadGuard() { detail::t_running_vcpu = prev_; }
  VcpuLoadGuard(const VcpuLoadGuard&) = delete;
  VcpuLoadGuard& operator=(const VcpuLoadGuard&) = delete;

 private:
  int prev_;
};

}  // namespace mirrormmu
