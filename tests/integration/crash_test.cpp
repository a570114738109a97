// Exactly-once under SIGKILL: a scan of a few thousand messages is killed at many points
// (mid-fetch, mid-batch, mid-group-commit, mid-checkpoint), restarted each time, and finally
// run to completion. Every message must then be tracked exactly once, with exactly one
// sighting per seeded copy — nothing lost, nothing doubled.
#include "tests/support/dovecot_fixture.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <fcntl.h>
#include <csignal>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <spawn.h>
#include <sys/wait.h>
#include <thread>

namespace fs = std::filesystem;
using namespace mscan;

extern char** environ;

namespace {

fs::path unique_dir(std::string_view name) {
  auto base = fs::path{MAILSCAN_BINARY_DIR} / "test-tmp";
  fs::create_directories(base);
  std::string tmpl = (base / fmt::format("{}.XXXXXX", name)).string();
  REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
  return tmpl;
}

std::string mailscan_bin() { return fmt::format("{}/apps/mailscan/mailscan", MAILSCAN_BINARY_DIR); }

pid_t spawn_run(const fs::path& conf, const fs::path& out) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  auto bin = mailscan_bin();
  auto conf_s = conf.string();
  std::vector<char*> argv{bin.data(), const_cast<char*>("run"), const_cast<char*>("--config"), conf_s.data(),
                          const_cast<char*>("--once"), nullptr};
  pid_t pid = -1;
  int rc = posix_spawn(&pid, bin.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  REQUIRE(rc == 0);
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string capture(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[65536];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
    out.append(buf, n);
  ::pclose(p);
  return out;
}

std::string synthetic_message(int user, int i) {
  return fmt::format(
    "From: \"Customer {2}\" <c{2}@customer{3}.example>\r\nTo: u{0}@corp.example\r\n"
    "Subject: Order {1} for user {0} (OPP-{4})\r\nDate: Mon, 23 Nov 2026 10:{5:02}:00 +0000\r\n"
    "Message-ID: <crash-{0}-{1}@customer{3}.example>\r\nMIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n\r\nBody of message {1} for user {0}.\r\n{6}\r\n",
    user, i, i % 97, i % 13, 1000 + i % 50, i % 60, std::string(600, 'x'));
}

} // namespace

TEST_CASE("crash safety: SIGKILL at 24 points while mail arrives, then every message tracked exactly once",
          "[integration][crash]") {
  constexpr int users = 3, per_user = 1000, shared = 200;
  test::dovecot_fixture dc{{{{"u0", "p0"}, {"u1", "p1"}, {"u2", "p2"}}}};
  for (int u = 0; u < users; ++u)
    for (int i = 0; i < per_user; ++i)
      dc.seed(fmt::format("u{}", u), "INBOX", synthetic_message(u, i));
  // The same 200 messages also sit in u0's "Sent": one message, two sightings each.
  for (int i = 0; i < shared; ++i)
    dc.seed("u0", "Sent", synthetic_message(1, i));

  auto dir = unique_dir("crash");
  std::string cfg = "[engine]\ndata_dir = \"data\"\nlog_dir = \"logs\"\ndays_back = 0\nbatch_size = 50\n\n";
  for (int u = 0; u < users; ++u)
    cfg += fmt::format("[[mailbox]]\nuser = \"u{0}\"\nhost = \"127.0.0.1\"\nport = {1}\nsecurity = \"none\"\n"
                       "username = \"u{0}\"\npassword = \"p{0}\"\nfolders = \"*\"\n\n",
                       u, dc.imap_port());
  std::ofstream(dir / "mailscan.toml") << cfg;
  auto conf = dir / "mailscan.toml";

  // Kill points spread from "just started" to "probably finished", deterministic per seed.
  // Every round also delivers new mail (appended while the previous run may have been
  // scanning), so each run has real work to be killed in.
  std::mt19937 rng{20261124};
  std::uniform_int_distribution<int> delay_ms{5, 250};
  int killed = 0, appended = 0;
  for (int round = 0; round < 24; ++round) {
    for (int u = 0; u < users; ++u)
      for (int i = 0; i < 100; ++i)
        dc.seed(fmt::format("u{}", u), "INBOX", synthetic_message(u, 10000 + round * 100 + i));
    appended += users * 100;
    auto pid = spawn_run(conf, dir / "runs.log");
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));  // the kill point itself
    ::kill(pid, SIGKILL);
    if (wait_exit(pid) == 128 + SIGKILL)
      ++killed;
  }
  INFO("runs killed before finishing: " << killed);
  CHECK(killed >= 20);

  auto pid = spawn_run(conf, dir / "final.log");
  int code = wait_exit(pid);
  std::ifstream fin(dir / "final.log");
  std::stringstream final_out;
  final_out << fin.rdbuf();
  INFO(final_out.str());
  REQUIRE(code == 0);

  auto json = capture(fmt::format("{} query --config {} messages --json", mailscan_bin(), conf.string()));
  auto msgs = nlohmann::json::parse(json).at("messages");
  std::set<std::string> ids;
  std::size_t sightings = 0;
  for (auto& m : msgs) {
    CHECK(ids.insert(m.at("message_id").get<std::string>()).second);
    sightings += m.at("sightings").size();
  }
  CHECK(msgs.size() == static_cast<std::size_t>(users * per_user + appended));
  CHECK(sightings == static_cast<std::size_t>(users * per_user + shared + appended));

  auto status = nlohmann::json::parse(
    capture(fmt::format("{} status --config {} --json", mailscan_bin(), conf.string())));
  std::uint64_t tracked = 0;
  for (auto& m : status.at("mailboxes"))
    tracked += m.at("messages_tracked").get<std::uint64_t>();
  // messages_tracked counts messages per user: u0 has its 1000 plus the 200 shared ones.
  CHECK(tracked == static_cast<std::uint64_t>(users * per_user + shared + appended));
}
