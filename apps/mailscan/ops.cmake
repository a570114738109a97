# Operations commands (diagnose, test-mailbox, force-sync) as a library, so unit tests link
# the same code the executable runs. Included from apps/mailscan/CMakeLists.txt.
add_library(mailscan_ops_app STATIC diagnose.cpp)
target_include_directories(mailscan_ops_app PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(mailscan_ops_app
  PUBLIC mailscan_actors mailscan_ops nlohmann_json::nlohmann_json
  PRIVATE fmt::fmt mailscan_warnings)
target_link_libraries(mailscan PRIVATE mailscan_ops_app)
