# IMAP fuzz targets (included by fuzz/CMakeLists.txt). The parser sources are compiled into
# the target itself so that they carry the fuzzer's coverage instrumentation and sanitizers.
set(MAILSCAN_IMAP_FUZZ_SOURCES
  ${PROJECT_SOURCE_DIR}/protocols/imap/response.cpp
  ${PROJECT_SOURCE_DIR}/protocols/imap/response_parser.cpp)
mailscan_add_fuzzer(imap_response_fuzz
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/imap_response_fuzz.cpp ${MAILSCAN_IMAP_FUZZ_SOURCES}
  LIBS mailscan_common fmt::fmt)
