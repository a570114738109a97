# OAuth2 for mailboxes (sans-I/O token logic, sealed secrets, provider presets live in core).
# Included from core/CMakeLists.txt.
add_library(mailscan_oauth secret_box.cpp oauth_token.cpp)
target_include_directories(mailscan_oauth PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(mailscan_oauth
  PUBLIC mailscan_core nlohmann_json::nlohmann_json
  PRIVATE OpenSSL::Crypto fmt::fmt mailscan_warnings)
