# The scanner rules engine and reference matching (RE2: linear time on untrusted mail).
# Included from core/CMakeLists.txt.
add_library(mailscan_rules rules.cpp references.cpp)
target_include_directories(mailscan_rules PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(mailscan_rules
  PUBLIC mailscan_core
  PRIVATE PkgConfig::RE2 fmt::fmt mailscan_warnings)

# Benchmark: evaluate() with 1,000 rules + 10,000 reference patterns over the real corpus,
# beside parse_message alone in the same run (bench/rules_bench.cpp).
if(EXISTS "${PROJECT_SOURCE_DIR}/bench/rules_bench.cpp")
  add_executable(rules_bench "${PROJECT_SOURCE_DIR}/bench/rules_bench.cpp")
  target_link_libraries(rules_bench PRIVATE mailscan_rules PkgConfig::RE2 mailscan_warnings)
  target_compile_definitions(rules_bench PRIVATE MAILSCAN_CORPUS_DIR="${MAILSCAN_CORPUS_DIR}")
endif()

# Benchmark: parse + link_message (1,000,000 contacts, 100,000 accounts, 10,000 reference
# patterns, 1,000 rules) beside parse alone in the same run (bench/matching_bench.cpp).
if(EXISTS "${PROJECT_SOURCE_DIR}/bench/matching_bench.cpp")
  add_executable(matching_bench "${PROJECT_SOURCE_DIR}/bench/matching_bench.cpp")
  target_link_libraries(matching_bench PRIVATE mailscan_rules mailscan_mime fmt::fmt mailscan_warnings)
endif()
