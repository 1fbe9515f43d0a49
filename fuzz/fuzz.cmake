# SPDX-License-Identifier: MIT
# libFuzzer targets (clang only): scenario files, replay strings and the
# command line's parser. Everything else is compiled with
# -fsanitize=fuzzer-no-link (the fuzz preset), so coverage reaches into it.
set(MIRRORMMU_CLI_LIB_SOURCES ${MIRRORMMU_CLI_SOURCES})
list(FILTER MIRRORMMU_CLI_LIB_SOURCES EXCLUDE REGEX "/main\\.cpp$")

foreach(target scenario schedule cli)
  add_executable(fuzz_${target} ${PROJECT_SOURCE_DIR}/fuzz/${target}_fuzz.cpp)
  target_link_options(fuzz_${target} PRIVATE -fsanitize=fuzzer)
  target_link_libraries(fuzz_${target} PRIVATE mirrormmu_core)
endforeach()
target_sources(fuzz_cli PRIVATE ${MIRRORMMU_CLI_LIB_SOURCES} ${MIRRORMMU_SITE_LOCATIONS})
target_include_directories(fuzz_cli PRIVATE ${CMAKE_BINARY_DIR}/generated)
target_link_libraries(fuzz_cli PRIVATE CLI11::CLI11)
