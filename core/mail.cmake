# Outgoing mail: templates, composing, the outbox and sending through [smtp].
# Included from core/CMakeLists.txt.
add_library(mailscan_mail STATIC outgoing_mail.cpp outbox.cpp)
target_include_directories(mailscan_mail PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(mailscan_mail
  PUBLIC mailscan_core mailscan_storage
  PRIVATE mailscan_smtp mailscan_net mailscan_imap mailscan_mime fmt::fmt mailscan_warnings)
