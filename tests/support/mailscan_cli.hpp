#pragma once
// Runs the real `mailscan` executable the way an operator does, for integration tests, and
// gives every test its own directory under the build tree.
#include <filesystem>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace mscan::test {

struct cli_result {
  int code = -1;    // exit status, or 128 + signal
  std::string out;  // stdout
  std::string err;  // stderr
};

// A new unique directory MAILSCAN_BINARY_DIR/test-tmp/<name>.XXXXXX (kept for inspection).
std::filesystem::path unique_test_dir(std::string_view name);
// The built executable.
std::string mailscan_path();
// Runs `mailscan ARGS...` to completion (no shell: arguments are passed as they are).
cli_result run_mailscan(const std::vector<std::string>& args);
// Starts `mailscan ARGS...` in the background, stdout and stderr appended to `log`.
pid_t spawn_mailscan(const std::vector<std::string>& args, const std::filesystem::path& log);
// Waits for a spawned process: its exit status, or 128 + the signal that ended it.
int wait_exit(pid_t pid);
// Everything the engine logged under DIR/logs (the configs' log_dir = "logs"), file by file.
std::string engine_logs(const std::filesystem::path& dir);

} // namespace mscan::test
