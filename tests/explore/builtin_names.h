// SPDX-License-Identifier: MIT
// The built-in scenarios a parameterised explorer test runs over: every TD
// race and every plain race on the model, named as `explore` takes them.
#pragma once

#include <cctype>
#include <string>
#include <vector>

#include "explore/scenario.h"
#include "workload/plain_explored.h"

namespace mirrormmu::test {

inline std::vector<std::string> builtin_scenario_names() {
  register_plain_source();
  std::vector<std::string> names;
  for (const auto& s : explore::builtin_scenarios()) names.push_back(s.name);
  for (const auto& s : plain_scenarios()) names.push_back(plain_source_name("model", s.name));
  return names;
}

// gtest wants parameter names of letters, digits and underscores.
struct ScenarioParamName {
  template <class Info>
  std::string operator()(const Info& info) const {
    std::string n = info.param;
    for (char& c : n)
      if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
    return n;
  }
};

}  // namespace mirrormmu::test
