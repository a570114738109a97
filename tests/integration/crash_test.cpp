// Exactly-once under SIGKILL: a scan of a few thousand messages is killed at many points
// (mid-fetch, mid-batch, mid-group-commit, mid-checkpoint), restarted each time, and finally
// run to completion. Every message must then be tracked exactly once, with exactly one
// sighting per seeded copy — nothing lost, nothing doubled.
#include "tests/support/dovecot_fixture.hpp"
#include "tests/support/mailscan_cli.hpp"

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

namespace {

std::string synthetic_message(int user, int i) {
  return fmt::format(
    "From: \"Customer {2}\" <c{2}@customer{3}.example>\r\nTo: u{0}@corp.example\r\n"
    "Subject: Order {1} for user {0} (OPP-{4})\r\nDate: Mon, 23 Nov 2026 10:{5:02}:00 +0000\r\n"
    "Message-ID: <crash-{0}-{1}@customer{3}.example>\r\nMIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n\r\nBody of message {1} for user {0}.\r\n{6}\r\n",
    user, i, i % 97, i % 13, 1000 + i % 50, i % 60, std::string(600, 'x'));
}

} // namespace

TEST_CASE("crash safety: SIGKILL at 20+ points while mail arrives, then every message tracked exactly once",
          "[integration][crash]") {
  constexpr int users = 3, per_user = 1000, shared = 200;
  test::dovecot_fixture dc{{{{"u0", "p0"}, {"u1", "p1"}, {"u2", "p2"}}}};
  for (int u = 0; u < users; ++u)
    for (int i = 0; i < per_user; ++i)
      dc.seed(fmt::format("u{}", u), "INBOX", synthetic_message(u, i));
  // The same 200 messages also sit in u0's "Sent": one message, two sightings each.
  for (int i = 0; i < shared; ++i)
    dc.seed("u0", "Sent", synthetic_message(1, i));

  auto dir = test::unique_test_dir("crash");
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
  std::uniform_int_distribution<int> delay_ms{5, 150};  // the header path scans a round in ~200 ms
  int killed = 0, appended = 0;
  for (int round = 0; killed < 20 && round < 60; ++round) {
    for (int u = 0; u < users; ++u)
      for (int i = 0; i < 150; ++i)
        dc.seed(fmt::format("u{}", u), "INBOX", synthetic_message(u, 10000 + round * 150 + i));
    appended += users * 150;
    auto pid = test::spawn_mailscan({"run", "--config", conf.string(), "--once"}, dir / "runs.log");
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));  // the kill point itself
    ::kill(pid, SIGKILL);
    if (test::wait_exit(pid) == 128 + SIGKILL)
      ++killed;
  }
  INFO("runs killed before finishing: " << killed);
  CHECK(killed >= 20);

  auto pid = test::spawn_mailscan({"run", "--config", conf.string(), "--once"}, dir / "final.log");
  int code = test::wait_exit(pid);
  std::ifstream fin(dir / "final.log");
  std::stringstream final_out;
  final_out << fin.rdbuf();
  INFO(final_out.str());
  REQUIRE(code == 0);

  auto json = test::run_mailscan({"query", "--config", conf.string(), "messages", "--json"}).out;
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
    test::run_mailscan({"status", "--config", conf.string(), "--json"}).out);
  std::uint64_t tracked = 0;
  for (auto& m : status.at("mailboxes"))
    tracked += m.at("messages_tracked").get<std::uint64_t>();
  // messages_tracked counts messages per user: u0 has its 1000 plus the 200 shared ones.
  CHECK(tracked == static_cast<std::uint64_t>(users * per_user + shared + appended));
}
