# SMTP fuzz target (included by fuzz/CMakeLists.txt); sources compiled in for coverage.
mailscan_add_fuzzer(smtp_session_fuzz
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/smtp_session_fuzz.cpp
          ${PROJECT_SOURCE_DIR}/protocols/smtp/reply_parser.cpp
          ${PROJECT_SOURCE_DIR}/protocols/smtp/smtp_session.cpp
          ${PROJECT_SOURCE_DIR}/protocols/imap/command_writer.cpp
          ${PROJECT_SOURCE_DIR}/protocols/imap/response.cpp
          ${PROJECT_SOURCE_DIR}/protocols/imap/response_parser.cpp
          ${PROJECT_SOURCE_DIR}/protocols/imap/utf7.cpp
  LIBS mailscan_common fmt::fmt)
