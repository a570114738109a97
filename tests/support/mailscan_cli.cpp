#include "tests/support/mailscan_cli.hpp"

#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <poll.h>
#include <spawn.h>
#include <stdexcept>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

extern char** environ;

namespace mscan::test {

namespace fs = std::filesystem;

fs::path unique_test_dir(std::string_view name) {
  auto base = fs::path{MAILSCAN_BINARY_DIR} / "test-tmp";
  fs::create_directories(base);
  std::string tmpl = (base / (std::string{name} + ".XXXXXX")).string();
  if (::mkdtemp(tmpl.data()) == nullptr)
    throw std::runtime_error("mkdtemp failed for " + tmpl);
  return tmpl;
}

std::string read_whole_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string engine_logs(const fs::path& dir) {
  std::string all;
  std::error_code ec;
  for (auto& f : fs::recursive_directory_iterator(dir / "logs", ec))
    if (f.is_regular_file())
      all += read_whole_file(f.path());
  return all;
}

std::size_t tracked_count(const fs::path& conf) {
  auto r = run_mailscan({"query", "--config", conf.string(), "messages", "--json"});
  if (r.code != 0)
    return 0;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  return j.is_object() && j.contains("messages") ? j["messages"].size() : 0;
}

std::string mailscan_path() { return std::string{MAILSCAN_BINARY_DIR} + "/apps/mailscan/mailscan"; }

namespace {

pid_t spawn(const std::vector<std::string>& args, posix_spawn_file_actions_t* fa) {
  auto bin = mailscan_path();
  std::vector<std::string> all{bin};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, bin.c_str(), fa, nullptr, argv.data(), environ) != 0)
    throw std::runtime_error("cannot start " + bin);
  return pid;
}

} // namespace

int wait_exit(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

cli_result run_mailscan(const std::vector<std::string>& args) {
  int out[2], err[2];
  if (::pipe(out) != 0 || ::pipe(err) != 0)
    throw std::runtime_error("pipe failed");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  posix_spawn_file_actions_addclose(&fa, out[0]);
  posix_spawn_file_actions_addclose(&fa, err[0]);
  auto pid = spawn(args, &fa);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);
  ::close(err[1]);
  cli_result r;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open_fds = 2;
  char buf[65536];
  while (open_fds > 0) {
    if (::poll(fds, 2, -1) < 0 && errno != EINTR)
      break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
        continue;
      auto n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, static_cast<std::size_t>(n));
      } else {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  r.code = wait_exit(pid);
  return r;
}

pid_t spawn_mailscan(const std::vector<std::string>& args, const fs::path& log) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  auto pid = spawn(args, &fa);
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

} // namespace mscan::test
