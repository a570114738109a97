# IMAP fuzz targets (included by fuzz/CMakeLists.txt). The sources under test are compiled
# into each target so that they carry the fuzzer's coverage instrumentation and sanitizers.
set(MAILSCAN_IMAP_PARSER_SOURCES
  ${PROJECT_SOURCE_DIR}/protocols/imap/response.cpp
  ${PROJECT_SOURCE_DIR}/protocols/imap/response_parser.cpp)
mailscan_add_fuzzer(imap_response_fuzz
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/imap_response_fuzz.cpp ${MAILSCAN_IMAP_PARSER_SOURCES}
  LIBS mailscan_common fmt::fmt)
# The whole sans-I/O IMAP session (the POP3 target reuses its vocabulary too).
set(MAILSCAN_IMAP_SESSION_SOURCES ${MAILSCAN_IMAP_PARSER_SOURCES}
  ${PROJECT_SOURCE_DIR}/protocols/imap/utf7.cpp
  ${PROJECT_SOURCE_DIR}/protocols/imap/command_writer.cpp
  ${PROJECT_SOURCE_DIR}/protocols/imap/scan_session.cpp
  ${PROJECT_SOURCE_DIR}/protocols/imap/scan_session_ext.cpp
  ${PROJECT_SOURCE_DIR}/protocols/imap/body_structure.cpp)
mailscan_add_fuzzer(imap_session_fuzz
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/imap_session_fuzz.cpp ${MAILSCAN_IMAP_SESSION_SOURCES}
  LIBS mailscan_common fmt::fmt)
find_package(ZLIB REQUIRED)
mailscan_add_fuzzer(imap_deflate_fuzz
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/imap_deflate_fuzz.cpp ${PROJECT_SOURCE_DIR}/protocols/imap/deflate_stream.cpp
  LIBS mailscan_common fmt::fmt ZLIB::ZLIB)
