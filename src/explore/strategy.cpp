// SPDX-License-Identifier: MIT
#include "explore/strategy.h"

#include <algorithm>
#include <numeric>
#include <cctype>
#include <sstream>

namespace mirrormmu::explore {

std::string encode_choices(const Choices& c) {
  if (c.empty()) return "0";
  std::string s;
  for (const auto& [key, v] : c) {
    if (!s.empty()) s += '-';
    if (sync::is_fail_key(key)) s += sync::fail_kind_letter(sync::key_fail_kind(key));
    s += std::to_string(sync::key_ordinal(key)) + "." + std::to_string(v);
  }
  return s;
}

std::optional<Choices> decode_choices(const std::string& s) {
  Choices c;
  if (s == "0") return c;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, '-')) {
    uint64_t tag = 0;
    if (!item.empty() && std::isalpha(static_cast<unsigned char>(item[0]))) {
      size_t k = 0;
      while (k < sync::kFailKindCount && sync::fail_kind_letter(static_cast<sync::FailKind>(k)) != item[0]) k++;
      if (k == sync::kFailKindCount) return std::nullopt;
      tag = sync::fail_key(static_cast<sync::FailKind>(k), 0);
      item.erase(0, 1);
    }
    const auto dot = item.find('.');
    if (dot == std::string::npos || dot == 0 || dot + 1 == item.size() || dot > 12) return std::nullopt;
    if (item.find_first_not_of("0123456789.") != std::string::npos) return std::nullopt;
    try {
      const uint64_t ordinal = std::stoull(item.substr(0, dot));
      const unsigned long v = std::stoul(item.substr(dot + 1));
      if (v == 0 || v > 1024) return std::nullopt;
      c[tag | ordinal] = static_cast<uint32_t>(v);
    } catch (...) {
      return std::nullopt;
    }
  }
  return c;
}

uint32_t random_fail(std::mt19937_64& rng, double p, uint32_t alternatives) {
  if (!std::bernoulli_distribution(p)(rng)) return 0;
  return std::uniform_int_distribution<uint32_t>(1, alternatives - 1)(rng);
}

PctStrategy::PctStrategy(uint64_t seed, int depth, uint64_t steps, int nthreads, double fail_p)
    : rng_(seed), prio_(static_cast<size_t>(nthreads)), fail_p_(fail_p) {
  // Distinct initial priorities d, d+1, ... so change points (which assign
  // d-1, d-2, ...) always rank below every initial one.
  std::iota(prio_.begin(), prio_.end(), depth);
  std::shuffle(prio_.begin(), prio_.end(), rng_);
  for (int i = 0; i < depth - 1; i++)
    change_.push_back(std::uniform_int_distribution<uint64_t>(0, std::max<uint64_t>(steps, 1) - 1)(rng_));
  next_low_ = depth - 1;
}

uint32_t PctStrategy::pick_thread(uint64_t d, uint64_t, const std::vector<int>& options, bool current_first) {
  if (current_first && std::find(change_.begin(), change_.end(), d) != change_.end()) {
    const int cur = options[0];
    if (cur < static_cast<int>(prio_.size())) prio_[cur] = next_low_--;
  }
  uint32_t best = 0;
  for (uint32_t i = 1; i < options.size(); i++) {
    const auto p = [&](int t) { return t < static_cast<int>(prio_.size()) ? prio_[t] : 0; };
    if (p(options[i]) > p(options[best])) best = i;
  }
  return best;
}

uint32_t DfsStrategy::decide(uint64_t d, uint32_t alternatives, bool thread, bool current_first) {
  if (d < forced_ && d < path_.size()) return std::min(path_[d].chosen, alternatives - 1);
  path_.resize(d);
  path_.emplace_back(alternatives, thread, current_first);
  path_.back().frozen = blocked_;
  return 0;
}

bool DfsStrategy::asleep(int thread) const {
  for (const auto& s : sleep_)
    if (s.thread == thread) return true;
  return false;
}

uint32_t DfsStrategy::decide_new_thread(uint64_t d, const std::vector<int>& options, bool current_first) {
  path_.resize(d);
  Node n(static_cast<uint32_t>(options.size()), true, current_first);
  n.continuing = current_first ? options[0] : -1;
  for (size_t k = 0; k < options.size() && k < 64; k++)
    if (asleep(options[k])) n.asleep |= uint64_t{1} << k;
  if (blocked_) {
    n.frozen = true;
  } else if (n.asleep & 1) {
    // Option 0 would only repeat, in another order, what was explored when
    // it went to sleep: run another thread if the bound allows.
    uint32_t k = 1;
    while (k < n.alternatives && k < 64 && (n.asleep >> k & 1)) k++;
    const bool affordable = !current_first || preemptions_before(d) + 1 <= max_preempt_;
    if (k < n.alternatives && k < 64 && affordable) {
      n.chosen = k;
    } else {
      blocked_ = true;
      n.frozen = true;
    }
  }
  if (n.chosen == 0 && current_first && !dpor_) awaiting_ = static_cast<int64_t>(d);
  path_.push_back(n);
  return n.chosen;
}

uint32_t DfsStrategy::pick_thread(uint64_t seq, uint64_t, const std::vector<int>& options, bool current_first) {
  const auto alternatives = static_cast<uint32_t>(options.size());
  if (!reduce_) return decide(seq, alternatives, true, current_first);
  if (seq >= forced_ || seq >= path_.size()) {
    const uint32_t c = decide_new_thread(seq, options, current_first);
    if (dpor_) {
      note_options(path_[seq], options);
      dpor_chose(seq, options, c, current_first);
    }
    return c;
  }
  const Node& n = path_[seq];
  if (dpor_) dpor_chose(seq, options, std::min(n.chosen, alternatives - 1), current_first);
  const uint32_t c = std::min(n.chosen, alternatives - 1);
  if (dpor_) return c;
  if (c == 0 && current_first && !n.first_step_known) awaiting_ = static_cast<int64_t>(seq);
  // The thread that could have gone on sleeps while a sibling runs, until a
  // step dependent on the one it would have taken. Not with DPOR: under a
  // preemption bound the two together lose interleavings that each alone
  // keeps (a sibling DPOR left out was what the sleeper's equivalent
  // execution relied on); tests/explore/random_programs_test.cpp finds such
  // programs within a few hundred.
  if (c != 0 && n.current_first && n.first_step_known && !blocked_ && !n.first_step_wide)
    sleep_.push_back({n.continuing, pending0_});
  return c;
}

uint32_t DfsStrategy::pick_fail(uint64_t seq, uint64_t, sync::FailKind, uint32_t alternatives) {
  return decide(seq, alternatives, false, false);
}

void DfsStrategy::on_step(int thread, const sync::StepFootprint& step) {
  if (!reduce_) return;
  if (tracking_) dpor_step(thread, step);
  // A sleeping thread runs only when it is all that can: everything from
  // here on reorders an execution already explored.
  if (!blocked_ && asleep(thread)) blocked_ = true;
  if (awaiting_ >= 0) {
    Node& n = path_[static_cast<size_t>(awaiting_)];
    // pending0_ is still what this step's point said it would be.
    n.first_step_wide = step.global || step.ntouched > 0 || step.also_read != pending0_.also_read ||
                        step.added != pending0_.added;
    n.first_step_known = true;
    awaiting_ = -1;
  }
  std::erase_if(sleep_, [&](const Sleeper& s) { return s.thread == thread || sync::dependent(s.step, step); });
}

void DfsStrategy::on_run(int threads) {
  if (!dpor_) return;
  races_.barrier();
  tracking_ = threads > 1;
}

void DfsStrategy::note_options(Node& n, const std::vector<int>& options) const {
  if (options.size() > n.opts.size()) {
    n.nopts = 0;  // every option will be asked for
    return;
  }
  n.nopts = static_cast<uint8_t>(options.size());
  for (size_t k = 0; k < options.size(); k++) n.opts[k] = static_cast<int8_t>(options[k]);
}

void DfsStrategy::dpor_chose(uint64_t seq, const std::vector<int>& options, uint32_t chosen, bool current_first) {
  Node& n = path_[seq];
  n.done |= uint64_t{1} << chosen;
  n.backtrack |= uint64_t{1} << chosen;
  const int t = options[chosen];
  if (t < 0 || t >= RaceTracker::kMaxThreads) return;  // the tracker overflows at its first step
  // A thread switched in (not one going on) starts a run of steps here.
  if (!(current_first && chosen == 0)) run_start_[static_cast<size_t>(t)] = static_cast<int32_t>(seq);
  next_origin_[static_cast<size_t>(t)] = {static_cast<int32_t>(seq), run_start_[static_cast<size_t>(t)]};
}

void DfsStrategy::dpor_step(int thread, const sync::StepFootprint& step) {
  RaceTracker::Origin origin;
  if (thread >= 0 && thread < RaceTracker::kMaxThreads) {
    auto& next = next_origin_[static_cast<size_t>(thread)];
    // Switched to without a choice (every other thread blocked or done):
    // a run with no decision to reorder at its start.
    if (next.node < 0 && thread != last_stepper_) run_start_[static_cast<size_t>(thread)] = -1;
    origin = next.node >= 0 ? next : RaceTracker::Origin{-1, run_start_[static_cast<size_t>(thread)]};
    next = {};
  }
  last_stepper_ = thread;
  races_.step(thread, step, origin, found_);
  for (const auto& r : found_) {
    ask(r.earlier.node, r.thread);
    ask(r.earlier.switched_in, r.thread);
  }
  found_.clear();
}

// Race-driven: `thread` should be tried at `node`; if it could not run
// there, every option is (its step may be reached through any of them).
void DfsStrategy::ask(int64_t node, int thread) {
  if (node < 0 || static_cast<size_t>(node) >= path_.size()) return;
  Node& n = path_[static_cast<size_t>(node)];
  const uint64_t all = n.alternatives >= 64 ? ~uint64_t{0} : (uint64_t{1} << n.alternatives) - 1;
  for (uint8_t k = 0; k < n.nopts; k++)
    if (n.opts[k] == thread) {
      n.backtrack |= uint64_t{1} << k;
      return;
    }
  n.backtrack |= all;
}

// The next option races asked for at thread decision i, within the bound and
// not asleep; false when there is none, counting what DPOR left out.
bool DfsStrategy::next_dpor(size_t i) {
  Node& n = path_[i];
  const uint32_t alts = std::min<uint32_t>(n.alternatives, 64);
  const auto within_bound = [&](uint32_t c) { return !(n.current_first && c != 0) || before_[i] + 1 <= max_preempt_; };
  for (uint32_t c = 0; c < alts; c++) {
    const uint64_t bit = uint64_t{1} << c;
    if (!(n.backtrack & bit) || (n.done & bit)) continue;
    n.done |= bit;
    if (!within_bound(c)) continue;
    if (n.frozen || (n.asleep & bit)) {
      pruned_++;
      continue;
    }
    n.chosen = c;
    path_.resize(i + 1);
    forced_ = i + 1;
    return true;
  }
  for (uint32_t c = 0; c < alts; c++) {
    const uint64_t bit = uint64_t{1} << c;
    if ((n.done & bit) || !within_bound(c)) continue;
    n.done |= bit;
    const bool slept = n.frozen || (n.asleep & bit);
    pruned_++;
    pruned_by_races_ += !slept;
  }
  return false;
}

int DfsStrategy::preemptions_before(size_t i) const {
  int n = 0;
  for (size_t j = 0; j < i; j++) n += path_[j].thread && path_[j].current_first && path_[j].chosen != 0;
  return n;
}

namespace {

uint64_t splitmix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t deviation_key(size_t position, uint32_t choice) { return splitmix(position * 1031 + choice); }

}  // namespace

bool DfsStrategy::owns(uint64_t key) const {
  return key % static_cast<uint64_t>(shards_) == static_cast<uint64_t>(shard_);
}

int DfsStrategy::deviations(size_t end, size_t pos[2], uint32_t choice[2]) const {
  int n = 0;
  for (size_t j = 0; j < end && n < 2; j++)
    if (path_[j].chosen != 0) {
      pos[n] = j;
      choice[n] = path_[j].chosen;
      n++;
    }
  return n;
}

bool DfsStrategy::owns_current() const {
  if (shards_ == 1) return true;
  size_t pos[2];
  uint32_t choice[2];
  switch (deviations(path_.size(), pos, choice)) {
    case 0: return shard_ == 0;
    case 1: return owns(deviation_key(pos[0], choice[0]));
    default: return true;  // next() never enters a second-level subtree it does not own
  }
}

bool DfsStrategy::would_own(size_t i, uint32_t c, int ndev, const size_t pos[2], const uint32_t choice[2]) const {
  if (shards_ == 1) return true;
  const int before = (ndev >= 1 && pos[0] < i) + (ndev >= 2 && pos[1] < i);
  if (before == 0) return owns(deviation_key(i, c));
  if (before == 1) return owns(splitmix(deviation_key(pos[0], choice[0]) ^ deviation_key(i, c)));
  return true;
}

bool DfsStrategy::next() {
  sleep_.clear();
  blocked_ = false;
  awaiting_ = -1;
  if (dpor_) {
    // A thread the tracker could not follow: ask for everything.
    if (races_.overflowed())
      for (Node& n : path_) n.backtrack = ~uint64_t{0};
    races_.reset();
    run_start_.fill(-1);
    next_origin_.fill({});
    last_stepper_ = -1;
  }
  // The current execution's first two deviations: a node before the second
  // one that changes makes a new execution with fewer deviations, shared by
  // every shard; one that becomes a second deviation opens a subtree only
  // its owner walks.
  size_t pos[2] = {0, 0};
  uint32_t choice[2] = {0, 0};
  const int ndev = shards_ > 1 ? deviations(path_.size(), pos, choice) : 0;
  // Backtrack to the deepest decision with an untried alternative that keeps
  // the preemption count within the bound (and, sharded, whose subtree is
  // this shard's, and, reducing, whose thread is not asleep there).
  // Preemptions taken above each node, counted once: asked node by node,
  // it made every backtrack quadratic in an execution's decisions, and an
  // execution whose VMM walks a whole root has thousands.
  before_.resize(path_.size() + 1);
  before_[0] = 0;
  for (size_t j = 0; j < path_.size(); j++)
    before_[j + 1] = before_[j] + (path_[j].thread && path_[j].current_first && path_[j].chosen != 0);
  for (size_t i = path_.size(); i-- > 0;) {
    Node& n = path_[i];
    if (dpor_ && n.thread) {
      if (next_dpor(i)) return true;
      continue;
    }
    if (n.chosen + 1 >= n.alternatives) continue;
    const bool preempting = n.thread && n.current_first;  // every non-zero choice preempts
    if (preempting && n.chosen == 0 && before_[i] + 1 > max_preempt_) continue;
    // Exactly one deviation before i: i would be the second.
    const bool second = shards_ > 1 && ndev >= 1 && pos[0] < i && (ndev == 1 || pos[1] >= i);
    uint32_t c = n.chosen + 1;
    for (; c < n.alternatives; c++) {
      if (second && !owns(splitmix(deviation_key(pos[0], choice[0]) ^ deviation_key(i, c)))) continue;
      const bool slept = n.frozen || (n.thread && c < 64 && (n.asleep >> c & 1));
      if (!slept) break;
      pruned_ += would_own(i, c, ndev, pos, choice);
    }
    if (c >= n.alternatives) continue;
    n.chosen = c;
    path_.resize(i + 1);
    forced_ = i + 1;
    return true;
  }
  return false;
}

}  // namespace mirrormmu::explore
