# Operations: mailbox health state machine and failure notifications (webhook).
# Included from core/CMakeLists.txt.
add_library(mailscan_ops mailbox_health.cpp notifier.cpp)
target_include_directories(mailscan_ops PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(mailscan_ops
  PUBLIC mailscan_core mailscan_storage nlohmann_json::nlohmann_json
  PRIVATE mailscan_net OpenSSL::SSL OpenSSL::Crypto Threads::Threads fmt::fmt mailscan_warnings)
