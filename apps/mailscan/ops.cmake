# Operations commands (diagnose, test-mailbox, force-sync, serve) and the status service as a
# library, so unit tests link the same code the executable runs.
# Included from apps/mailscan/CMakeLists.txt.

# The dashboard page is compiled in (no files to deploy beside the binary).
set(MAILSCAN_DASHBOARD_SRC "${CMAKE_CURRENT_SOURCE_DIR}/dashboard/index.html")
file(READ "${MAILSCAN_DASHBOARD_SRC}" MAILSCAN_DASHBOARD_HTML)
configure_file(dashboard/dashboard_asset.hpp.in
  "${CMAKE_CURRENT_BINARY_DIR}/generated/apps/mailscan/dashboard_asset.hpp" @ONLY)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${MAILSCAN_DASHBOARD_SRC}")

add_library(mailscan_ops_app STATIC diagnose.cpp status_server.cpp oauth_cmd.cpp)
target_include_directories(mailscan_ops_app
  PUBLIC ${PROJECT_SOURCE_DIR}
  PRIVATE "${CMAKE_CURRENT_BINARY_DIR}/generated")
target_link_libraries(mailscan_ops_app
  PUBLIC mailscan_actors mailscan_ops nlohmann_json::nlohmann_json
  PRIVATE Boost::headers OpenSSL::Crypto Threads::Threads fmt::fmt mailscan_warnings)
target_link_libraries(mailscan PRIVATE mailscan_ops_app)
