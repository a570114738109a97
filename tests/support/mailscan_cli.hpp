#pragma once
// Runs the real `mailscan` executable the way an operator does, for integration tests, and
// gives every test its own directory under the build tree.
#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <thread>
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

// The CRM directory most end-to-end tests match against (TOML): the account Acme Ltd
// (acme.example), its contact Bob and the opportunity OPP-1042.
inline constexpr std::string_view acme_directory_toml = R"([[account]]
name = "Acme Ltd"
domains = ["acme.example"]

[[contact]]
email = "bob@acme.example"
name = "Bob"
account = "Acme Ltd"

[[item]]
kind = "opportunity"
reference = "OPP-1042"
)";

// How many messages `query messages --json` lists for this config; 0 while there is no store
// yet or the query fails (tests poll it with eventually()).
std::size_t tracked_count(const std::filesystem::path& conf);

// A whole file ("" when it cannot be read).
std::string read_whole_file(const std::filesystem::path& p);
// Every engine log file under DIR/logs, concatenated.
std::string engine_logs(const std::filesystem::path& dir);

// Polls `pred` until it holds or `limit` passes (then one last try): a deadline, never a
// fixed sleep as synchronisation.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(30),
                std::chrono::milliseconds step = std::chrono::milliseconds(200)) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (pred())
      return true;
    std::this_thread::sleep_for(step);
  }
  return pred();
}

} // namespace mscan::test
