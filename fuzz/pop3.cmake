# POP3 fuzz target (included by fuzz/CMakeLists.txt): parser + session, compiled in so they
# carry the fuzzer's instrumentation; the IMAP vocabulary it uses comes from mailscan_imap.
mailscan_add_fuzzer(pop3_session_fuzz
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/pop3_session_fuzz.cpp
          ${PROJECT_SOURCE_DIR}/protocols/pop3/response_parser.cpp
          ${PROJECT_SOURCE_DIR}/protocols/pop3/scan_session.cpp
          ${PROJECT_SOURCE_DIR}/protocols/imap/command_writer.cpp
          ${PROJECT_SOURCE_DIR}/protocols/imap/scan_session.cpp
          ${PROJECT_SOURCE_DIR}/protocols/imap/response.cpp
          ${PROJECT_SOURCE_DIR}/protocols/imap/response_parser.cpp
          ${PROJECT_SOURCE_DIR}/protocols/imap/utf7.cpp
          ${PROJECT_SOURCE_DIR}/protocols/imap/body_structure.cpp
  LIBS mailscan_common fmt::fmt OpenSSL::Crypto)
