// SPDX-License-Identifier: MIT
#include "explore/races.h"

#include <cstring>
#include <functional>

namespace mirrormmu::explore {

void RaceTracker::reset() {
  clock_ = {};
  globals_ = {};
  last_step_ = {};
  last_global_ = {};
  start_ = {};
  started_ = {};
  nthreads_ = 0;
  live_ = 0;
  overflowed_ = false;
  // Every entry of the table belongs to an older generation now.
  if (++generation_ == 0) {
    for (auto& o : table_) o.generation = 0;
    generation_ = 1;
  }
}

void RaceTracker::barrier() {
  for (const Clock& c : clock_) join(start_, c);
}

void RaceTracker::grow() {
  std::vector<Object> old = std::move(table_);
  table_.assign(old.empty() ? 4096 : old.size() * 2, Object{});
  live_ = 0;
  for (const Object& o : old)
    if (o.generation == generation_) {
      Object& n = object(o.key);
      n = o;
    }
}

// The table has room: step() grows it before taking any entry, so the
// entries of one step stay where they are while it runs.
RaceTracker::Object& RaceTracker::object(const void* key) {
  const size_t mask = table_.size() - 1;
  size_t i = std::hash<const void*>{}(key) * 0x9e3779b97f4a7c15ull >> 20 & mask;
  for (;; i = (i + 1) & mask) {
    Object& o = table_[i];
    if (o.generation != generation_) {
      o = Object{};
      o.key = key;
      o.generation = generation_;
      live_++;
      return o;
    }
    if (o.key == key) return o;
  }
}

void RaceTracker::step(int p, const sync::StepFootprint& f, Origin origin, std::vector<Race>& out) {
  if (overflowed_) return;
  if (p < 0 || p >= kMaxThreads) {
    overflowed_ = true;
    return;
  }
  // Threads below `nthreads_` are all the loops below need to look at.
  if (p >= nthreads_) nthreads_ = p + 1;
  if (!started_[static_cast<size_t>(p)]) {
    started_[static_cast<size_t>(p)] = true;
    clock_[static_cast<size_t>(p)] = start_;
  }
  // What p knew before this step: its own earlier steps and whatever they
  // were ordered after.
  Clock c = clock_[static_cast<size_t>(p)];
  const auto report = [&](const Access& a, int q, const Clock& known) {
    if (q != p && a.index > known[static_cast<size_t>(q)]) out.push_back({a.origin, p});
  };
  if (f.global) {
    // Dependent with every earlier step: each thread's last one races
    // unless already ordered before this one.
    for (int q = 0; q < nthreads_; q++) report(last_step_[static_cast<size_t>(q)], q, c);
    for (int q = 0; q < nthreads_; q++) join(c, clock_[static_cast<size_t>(q)]);
  } else {
    for (int q = 0; q < nthreads_; q++) report(last_global_[static_cast<size_t>(q)], q, c);
    // Ordered after every global step: a step that happens before one of
    // them is no race of this step's own.
    join(c, globals_);
  }
  const Clock known = c;
  // The objects, and how this step accessed each: what a step touched
  // beyond its point it may have written (sync::dependent).
  constexpr int kMaxKeys = 4 + sync::StepFootprint::kMaxTouched;
  const void* keys[kMaxKeys];
  Kind kinds[kMaxKeys];
  int n = 0;
  const auto add_key = [&](const void* key, Kind k) {
    if (key == nullptr) return;
    keys[n] = key;
    kinds[n++] = k;
  };
  if (!f.global) {
    add_key(f.object, f.reads_only ? Kind::Read : Kind::Write);
    add_key(f.page, Kind::Read);
    add_key(f.also_read, Kind::Read);
    add_key(f.added, Kind::Add);
    for (int i = 0; i < f.ntouched; i++) add_key(f.touched[i], Kind::Write);
  }
  while ((live_ + static_cast<size_t>(n) + 1) * 2 > table_.size()) grow();
  Object* objs[kMaxKeys];
  for (int i = 0; i < n; i++) {
    Object& o = object(keys[i]);
    objs[i] = &o;
    if (o.writer >= 0) report(o.write, o.writer, known);
    join(c, o.write_clock);
    if (kinds[i] != Kind::Read) {
      for (int q = 0; q < nthreads_; q++) report(o.reads[static_cast<size_t>(q)], q, known);
      join(c, o.read_clock);
    }
    if (kinds[i] != Kind::Add) {
      for (int q = 0; q < nthreads_; q++) report(o.adds[static_cast<size_t>(q)], q, known);
      join(c, o.add_clock);
    }
  }
  c[static_cast<size_t>(p)]++;
  clock_[static_cast<size_t>(p)] = c;
  const Access me{c[static_cast<size_t>(p)], origin};
  last_step_[static_cast<size_t>(p)] = me;
  if (f.global) {
    last_global_[static_cast<size_t>(p)] = me;
    join(globals_, c);
  }
  for (int i = 0; i < n; i++) {
    Object& o = *objs[i];
    switch (kinds[i]) {
      case Kind::Write:
        o.writer = static_cast<int8_t>(p);
        o.write = me;
        o.write_clock = c;
        o.read_clock = {};
        o.reads = {};
        o.add_clock = {};
        o.adds = {};
        break;
      case Kind::Read:
        o.reads[static_cast<size_t>(p)] = me;
        join(o.read_clock, c);
        break;
      case Kind::Add:
        o.adds[static_cast<size_t>(p)] = me;
        join(o.add_clock, c);
        break;
    }
  }
}

}  // namespace mirrormmu::explore
