// Kept sessions and IDLE push against the real dovecot (docs/imap.md "Kept sessions"): polls
// of a kept mailbox log in once, a kept slot goes to a mailbox that waits for it, IDLE tracks
// new mail long before poll_interval, and a connection the server closes is simply replaced.
#include "tests/support/dovecot_fixture.hpp"
#include "tests/support/mailscan_cli.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <fstream>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;
using namespace mscan;

namespace {

std::string message(const std::string& tag, int n) {
  return fmt::format("From: Bob <bob@acme.example>\r\nTo: alice@corp.example\r\nSubject: kept {0} {1}\r\n"
                     "Message-ID: <kept-{0}-{1}@acme.example>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n"
                     "body {1}\r\n",
                     tag, n);
}

using test::eventually;

std::size_t count(const std::string& text, std::string_view what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
    ++n;
  return n;
}

struct kept_env {
  test::dovecot_fixture dc;
  fs::path dir;
  std::string conf;
  pid_t pid = -1;

  kept_env(std::string_view name, std::vector<std::string> users, std::string engine, bool rawlog = false)
      : dc{[&] {
          test::dovecot_options o;
          for (auto& u : users)
            o.users.push_back({u, "pw-" + u});
          o.rawlog = rawlog;
          return o;
        }()},
        dir{test::unique_test_dir(name)} {
    std::string cfg = fmt::format("[engine]\ndata_dir = \"data\"\nlog_dir = \"logs\"\ndays_back = 30\n"
                                  "info_logging = true\n{}\n\n",
                                  engine);
    for (auto& u : users)
      cfg += fmt::format("[[mailbox]]\nuser = \"{0}\"\nhost = \"127.0.0.1\"\nport = {1}\nsecurity = \"none\"\n"
                         "username = \"{0}\"\npassword = \"pw-{0}\"\nfolders = \"INBOX\"\n\n",
                         u, dc.imap_port());
    conf = (dir / "mailscan.toml").string();
    std::ofstream(conf) << cfg;
  }
  void start() {
    pid = test::spawn_mailscan({"run", "--config", conf}, dir / "run.log");
    REQUIRE(pid > 0);
  }
  int stop() {
    ::kill(pid, SIGTERM);
    return test::wait_exit(pid);
  }
  std::string logs() const { return test::engine_logs(dir); }
  std::size_t logins(const std::string& user) const { return dc.count_in_log(fmt::format("Login: user=<{}>", user)); }
};

} // namespace

TEST_CASE("kept sessions: later polls of a kept mailbox log in once and cost one STATUS each",
          "[integration][kept]") {
  REQUIRE(test::dovecot_available());
  kept_env e{"kept-reuse", {"alice", "bob"}, "poll_interval_s = 1\nkeep_sessions = 4\nmax_connections = 4", true};
  for (int i = 0; i < 3; ++i) {
    e.dc.seed("alice", "INBOX", message("alice", i));
    e.dc.seed("bob", "INBOX", message("bob", i));
  }
  e.start();
  // Four polls each on the kept connection (about one a second).
  bool polled = eventually([&] {
    auto l = e.logs();
    return count(l, "event=scan_ok user=alice") >= 5 && count(l, "event=scan_ok user=bob") >= 5;
  });
  // New mail is found by the STATUS check of a kept session and fetched on it.
  e.dc.seed("alice", "INBOX", message("alice", 3));
  bool fetched = eventually([&] { return test::tracked_count(e.conf) == 7; });
  auto logs = e.logs();
  int code = e.stop();
  INFO("run log: " << test::read_whole_file(e.dir / "run.log").substr(0, 3000) << "\ndovecot: " << e.dc.log_tail(40));
  CHECK(polled);
  CHECK(fetched);
  CHECK(code == 0);
  CHECK(e.logins("alice") == 1);
  CHECK(e.logins("bob") == 1);
  CHECK(count(logs, "session=kept") >= 8);
  CHECK(count(logs, "scan_failed") == 0);
  // SIGTERM logged both kept sessions out (LOGOUT, not a dropped connection).
  CHECK(e.dc.wait_for_log("Disconnected: Logged out", 2));
  // Each poll of an unchanged INBOX was one STATUS; the folder was opened only for the first
  // scan and once for the new message (and the engine never re-selected it otherwise).
  auto statuses = e.dc.count_in_rawlog(" STATUS ");
  auto opens = e.dc.count_in_rawlog(" EXAMINE ") + e.dc.count_in_rawlog(" SELECT ");
  CHECK(statuses >= 8);
  CHECK(opens <= 3);
}

TEST_CASE("kept sessions: a kept slot goes at once to a mailbox that waits for it", "[integration][kept]") {
  REQUIRE(test::dovecot_available());
  // One connection in all, two mailboxes: a kept session must never keep the other waiting.
  kept_env e{"kept-reclaim", {"alice", "bob"}, "poll_interval_s = 1\nkeep_sessions = 1\nmax_connections = 1"};
  e.dc.seed("alice", "INBOX", message("alice", 0));
  e.dc.seed("bob", "INBOX", message("bob", 0));
  e.start();
  bool both = eventually([&] {
    auto l = e.logs();
    return count(l, "event=scan_ok user=alice") >= 4 && count(l, "event=scan_ok user=bob") >= 4;
  });
  int code = e.stop();
  auto logs = e.logs();
  INFO("run log: " << test::read_whole_file(e.dir / "run.log").substr(0, 3000) << "\nlogs: " << logs.substr(0, 6000));
  CHECK(both);
  CHECK(code == 0);
  CHECK(test::tracked_count(e.conf) == 2);
  CHECK(count(logs, "scan_failed") == 0);
  // Every session ended (one mscan_stats line each), all with LOGOUT but possibly the one
  // that was scanning when SIGTERM came: a stopped pass closes without waiting for the server.
  const auto logins = e.logins("alice") + e.logins("bob");
  CHECK(e.dc.wait_for_log("mscan_stats", logins));
  CHECK(e.dc.count_in_log("Disconnected: Logged out") + 1 >= logins);
}

TEST_CASE("kept sessions: IDLE tracks new mail long before poll_interval", "[integration][kept]") {
  REQUIRE(test::dovecot_available());
  kept_env e{"kept-idle", {"alice"}, "poll_interval_s = 600\nkeep_sessions = 1\nidle = true"};
  e.dc.seed("alice", "INBOX", message("alice", 0));
  e.start();
  REQUIRE(eventually([&] { return test::tracked_count(e.conf) == 1; }));
  // Wait until the session idles (dovecot: the IDLE command is running).
  REQUIRE(eventually([&] { return count(e.logs(), "event=scan_ok user=alice") >= 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let IDLE start (not a sync point)
  auto t0 = std::chrono::steady_clock::now();
  e.dc.seed("alice", "INBOX", message("alice", 1));
  bool pushed = eventually([&] { return test::tracked_count(e.conf) == 2; }, std::chrono::seconds(30));
  auto took = std::chrono::steady_clock::now() - t0;
  e.dc.seed("alice", "INBOX", message("alice", 2));
  bool again = eventually([&] { return test::tracked_count(e.conf) == 3; }, std::chrono::seconds(30));
  int code = e.stop();
  INFO("run log: " << test::read_whole_file(e.dir / "run.log").substr(0, 3000) << "\ndovecot: " << e.dc.log_tail(40));
  CHECK(pushed);
  CHECK(again);
  CHECK(took < std::chrono::seconds(60));  // poll_interval is 600 s
  CHECK(code == 0);
  CHECK(e.logins("alice") == 1);
}

TEST_CASE("kept sessions: a kept connection the server closes is replaced by a new login, no failed pass",
          "[integration][kept]") {
  REQUIRE(test::dovecot_available());
  kept_env e{"kept-lost", {"alice"}, "poll_interval_s = 1\nkeep_sessions = 1"};
  e.dc.seed("alice", "INBOX", message("alice", 0));
  e.start();
  REQUIRE(eventually([&] { return count(e.logs(), "session=kept") >= 1; }));
  // The kept session is between polls most of the time: kick it (BYE) until one is lost.
  bool lost = eventually([&] {
    e.dc.kick("alice");
    return count(e.logs(), "event=kept_session_lost") >= 1;
  });
  auto logins = e.logins("alice");
  e.dc.seed("alice", "INBOX", message("alice", 1));
  bool fetched = eventually([&] { return test::tracked_count(e.conf) == 2; });
  bool kept_again = eventually([&] { return count(e.logs(), "session=kept") >= 3; });
  int code = e.stop();
  auto logs = e.logs();
  INFO("run log: " << test::read_whole_file(e.dir / "run.log").substr(0, 3000) << "\nlogs: " << logs.substr(0, 6000));
  CHECK(lost);
  CHECK(fetched);
  CHECK(kept_again);
  CHECK(code == 0);
  CHECK(e.logins("alice") >= 2);
  CHECK(logins >= 1);
}

TEST_CASE("kept sessions: SIGHUP logs out the kept session of a removed mailbox, the others stay kept",
          "[integration][kept]") {
  REQUIRE(test::dovecot_available());
  kept_env e{"kept-reload", {"alice", "bob"}, "poll_interval_s = 1\nkeep_sessions = 2"};
  e.dc.seed("alice", "INBOX", message("alice", 0));
  e.dc.seed("bob", "INBOX", message("bob", 0));
  e.start();
  REQUIRE(eventually([&] {
    auto l = e.logs();
    return count(l, "event=scan_ok user=alice") >= 2 && count(l, "event=scan_ok user=bob") >= 2;
  }));
  CHECK(e.dc.count_in_log("Disconnected: Logged out") == 0);  // both kept
  // bob leaves the config: his kept connection is logged out (LOGOUT) while the run goes on.
  std::string text = test::read_whole_file(e.conf);
  auto at = text.find("[[mailbox]]\nuser = \"bob\"");
  REQUIRE(at != std::string::npos);
  std::ofstream(e.conf) << text.substr(0, at);
  ::kill(e.pid, SIGHUP);
  bool bob_out = e.dc.wait_for_log("Disconnected: Logged out", 1, std::chrono::seconds(15));
  auto ended = e.dc.log_tail(200);
  auto alice_polls = count(e.logs(), "event=scan_ok user=alice");
  bool alice_on = eventually([&] { return count(e.logs(), "event=scan_ok user=alice") >= alice_polls + 2; });
  int code = e.stop();
  INFO("run log: " << test::read_whole_file(e.dir / "run.log").substr(0, 3000) << "\ndovecot: " << e.dc.log_tail(40));
  CHECK(bob_out);
  CHECK(ended.find("imap(bob)") != std::string::npos);   // the session that ended is bob's
  CHECK(ended.find("imap(alice)") == std::string::npos);  // alice's stays kept
  CHECK(alice_on);
  CHECK(code == 0);
  CHECK(e.logins("alice") == 1);
  CHECK(e.logins("bob") == 1);
}
