# SPDX-License-Identifier: MIT
# Writes OUT: a C++ initializer list of every place in the sources that names
# a bug/warn site (Site::name), as {Site::name, "src/file.cpp", line}, for
# `mirrormmu sites`. Run at build time, so the locations always match the
# code being built. Inputs: SRC_DIR (the repository root), OUT.
file(GLOB_RECURSE files RELATIVE ${SRC_DIR} ${SRC_DIR}/src/*.cpp ${SRC_DIR}/src/*.h)
list(SORT files)
set(body "")
foreach(f ${files})
  # The declarations and the tracker itself are not where a site fires.
  if(f MATCHES "^src/base/bug\\.(h|cpp)$" OR f MATCHES "^src/cli/")
    continue()
  endif()
  file(STRINGS ${SRC_DIR}/${f} lines)
  set(n 0)
  foreach(line IN LISTS lines)
    math(EXPR n "${n} + 1")
    string(REGEX MATCHALL "Site::[a-z_0-9]+" hits "${line}")
    foreach(h ${hits})
      string(REPLACE "Site::" "" name "${h}")
      if(name STREQUAL "kCount")
        continue()
      endif()
      string(APPEND body "    {Site::${name}, \"${f}\", ${n}},\n")
    endforeach()
  endforeach()
endforeach()
file(WRITE ${OUT}.tmp "${body}")
# Only touch OUT when it changed, so dependents rebuild only then.
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
