# Included from fuzz/CMakeLists.txt. The parser is compiled a second time with coverage
# instrumentation (fuzzer-no-link) so libFuzzer can steer through it.
file(GLOB _mime_sources CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/protocols/mime/*.cpp")
add_library(mailscan_mime_fuzzing STATIC ${_mime_sources})
target_link_libraries(mailscan_mime_fuzzing PUBLIC mailscan_common)
target_compile_options(mailscan_mime_fuzzing PRIVATE -fsanitize=fuzzer-no-link,address,undefined)
mailscan_add_fuzzer(mime_parse_fuzz
  SOURCES "${CMAKE_CURRENT_SOURCE_DIR}/mime_parse_fuzz.cpp"
  LIBS mailscan_mime_fuzzing)
