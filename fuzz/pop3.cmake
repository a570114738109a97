# POP3 fuzz target (included by fuzz/CMakeLists.txt): parser + session, compiled in so they
# carry the fuzzer's instrumentation; the IMAP vocabulary it uses comes from mailscan_imap.
mailscan_add_fuzzer(pop3_session_fuzz
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/pop3_session_fuzz.cpp
          ${PROJECT_SOURCE_DIR}/protocols/pop3/response_parser.cpp
          ${PROJECT_SOURCE_DIR}/protocols/pop3/scan_session.cpp
          ${MAILSCAN_IMAP_SESSION_SOURCES}
  LIBS mailscan_common fmt::fmt OpenSSL::Crypto)
