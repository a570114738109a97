# Included from fuzz/CMakeLists.txt. The parser is compiled a second time with coverage
# instrumentation (fuzzer-no-link) so libFuzzer can steer through it. UBSan findings abort
# (clang's default is to print and go on, which a fuzzing run never reports).
file(GLOB _mime_sources CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/protocols/mime/*.cpp")
add_library(mailscan_mime_fuzzing STATIC ${_mime_sources})
target_link_libraries(mailscan_mime_fuzzing PUBLIC mailscan_common)
target_compile_options(mailscan_mime_fuzzing PRIVATE
  -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined)
mailscan_add_fuzzer(mime_parse_fuzz
  SOURCES "${CMAKE_CURRENT_SOURCE_DIR}/mime_parse_fuzz.cpp"
  LIBS mailscan_mime_fuzzing)
target_compile_options(mime_parse_fuzz PRIVATE -fno-sanitize-recover=undefined)
