// IMAP extensions against the real dovecot: an unchanged poll opens no folder (counted in
// dovecot's rawlog of what the server received), test-mailbox shows the server's ID answer,
// and IDLE wakes on new mail.
#include "tests/integration/imap_session_driver.hpp"
#include "tests/support/dovecot_fixture.hpp"
#include "tests/support/mailscan_cli.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>

namespace fs = std::filesystem;
using namespace mscan;

namespace {

std::string message(int i) {
  return fmt::format("From: c{0}@customer.example\r\nTo: alice@corp.example\r\nSubject: poll {0}\r\n"
                     "Message-ID: <poll-{0}@customer.example>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n"
                     "body {0}\r\n",
                     i);
}

std::string config_for(const test::dovecot_fixture& dc, const fs::path& dir, std::string_view folders,
                       std::string_view scan) {
  auto conf = dir / "mailscan.toml";
  std::ofstream(conf) << fmt::format(
      "[engine]\ndata_dir = \"data\"\nlog_dir = \"logs\"\n\n"
      "[[mailbox]]\nuser = \"alice\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n"
      "username = \"alice\"\npassword = \"pw\"\nfolders = \"{}\"\nscan = \"{}\"\n",
      dc.imap_port(), folders, scan);
  return conf.string();
}

// Commands dovecot received after login, by verb, summed over every session so far.
struct command_counts {
  std::size_t select = 0, status = 0, list = 0, search = 0, fetch = 0, store = 0, logout = 0;
  std::size_t total() const { return select + status + list + search + fetch + store + logout; }
};
command_counts counts(const test::dovecot_fixture& dc) {
  command_counts c;
  c.select = dc.count_in_rawlog(" SELECT ") + dc.count_in_rawlog(" EXAMINE ");
  c.status = dc.count_in_rawlog(" STATUS ");
  c.list = dc.count_in_rawlog(" LIST ");
  c.search = dc.count_in_rawlog(" SEARCH ");
  c.fetch = dc.count_in_rawlog(" FETCH ");
  c.store = dc.count_in_rawlog(" STORE ");
  c.logout = dc.count_in_rawlog(" LOGOUT");
  return c;
}
command_counts operator-(const command_counts& a, const command_counts& b) {
  return {a.select - b.select, a.status - b.status, a.list - b.list, a.search - b.search,
          a.fetch - b.fetch, a.store - b.store, a.logout - b.logout};
}

// The driver's connection and session for alice's INBOX over plain IMAP.
net::endpoint_options plain_endpoint(const test::dovecot_fixture& dc) {
  net::endpoint_options eo;
  eo.host = "127.0.0.1";
  eo.port = dc.imap_port();
  eo.implicit_tls = false;
  eo.connect_timeout_ms = 5000;
  eo.idle_timeout_ms = 15000;
  return eo;
}
imap::session_options alice_inbox() {
  imap::session_options so;
  so.username = "alice";
  so.secret = "pw";
  so.folders = {"INBOX"};
  return so;
}

// run --once, then wait until dovecot logged the end of that many sessions (the rawlog is
// complete only then).
void poll_once(const test::dovecot_fixture& dc, const std::string& conf, std::size_t sessions) {
  auto r = test::run_mailscan({"run", "--config", conf, "--once"});
  INFO(r.err);
  REQUIRE(r.code == 0);
  REQUIRE(dc.wait_for_log("mscan_stats", sessions));
}

} // namespace

TEST_CASE("imap: an unchanged second poll opens no folder — STATUS (or LIST-STATUS) and LOGOUT only",
          "[integration][imap]") {
  const auto [folders, scan] = GENERATE(std::pair{"INBOX", "all"}, std::pair{"*", "all"}, std::pair{"*", "unread"});
  INFO("folders " << folders << " scan " << scan);
  test::dovecot_options o;
  o.users = {{"alice", "pw"}};
  o.rawlog = true;
  test::dovecot_fixture dc{o};
  for (int i = 0; i < 3; ++i) dc.seed("alice", "INBOX", message(i));
  dc.seed("alice", "Sent", message(10), true);
  auto dir = test::unique_test_dir("imap-unchanged");
  const auto conf = config_for(dc, dir, folders, scan);
  const std::size_t folders_scanned = std::string_view(folders) == "*" ? 2 : 1;

  poll_once(dc, conf, 1);
  const auto first = counts(dc);
  CHECK(first.select == folders_scanned);
  CHECK(test::tracked_count(conf) == (std::string_view(folders) == "*" && std::string_view(scan) == "all" ? 4u : 3u));

  poll_once(dc, conf, 2);
  const auto second = counts(dc) - first;
  CHECK(second.select == 0);
  CHECK(second.search == 0);
  CHECK(second.fetch == 0);
  CHECK(second.store == 0);
  CHECK(second.logout == 1);
  // The issue #7 budget: at most 2 commands after login for an unchanged mailbox.
  CHECK(second.total() <= 2);

  // New mail is still seen at the next poll, exactly once.
  dc.seed("alice", "INBOX", message(20));
  poll_once(dc, conf, 3);
  const auto third = counts(dc) - first - second;
  CHECK(third.select == 1);
  CHECK(test::tracked_count(conf) == (std::string_view(folders) == "*" && std::string_view(scan) == "all" ? 5u : 4u));
  fs::remove_all(dir);
}

TEST_CASE("imap: test-mailbox shows the server's ID answer", "[integration][imap]") {
  test::dovecot_fixture dc{{{{"alice", "pw"}}}};
  dc.seed("alice", "INBOX", message(1));
  auto dir = test::unique_test_dir("imap-id");
  const auto conf = config_for(dc, dir, "INBOX", "all");
  auto j = test::run_mailscan({"test-mailbox", "--config", conf, "alice", "--json"});
  REQUIRE(j.code == 0);
  auto entry = nlohmann::json::parse(j.out).at("mailboxes").at(0);
  CHECK(entry.at("server_id").at("name") == "Dovecot");
  auto h = test::run_mailscan({"test-mailbox", "--config", conf, "alice"});
  REQUIRE(h.code == 0);
  CHECK(h.out.find("server id:    name=Dovecot") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("imap: IDLE wakes on new mail, rescan fetches it on the same connection", "[integration][imap]") {
  test::dovecot_fixture dc{{{{"alice", "pw"}}}};
  dc.seed("alice", "INBOX", message(1));
  net::io_runtime rt;
  const auto eo = plain_endpoint(dc);
  auto so = alice_inbox();
  so.idle = true;
  int idles = 0;
  std::vector<imap::idle_activity> activity;
  test::scan_driver_options d;
  d.deadline = std::chrono::seconds(20);
  d.on_other = [&](imap::scan_session& s, const imap::session_output& o) {
    if (std::holds_alternative<imap::idle_started>(o)) {
      // First IDLE: new mail arrives (APPEND-like, as a delivery agent writes it). Second
      // IDLE, after the rescan: done.
      if (++idles == 1) dc.seed("alice", "INBOX", message(2));
      else s.stop_idle(imap::idle_stop::logout);
    } else if (auto* a = std::get_if<imap::idle_activity>(&o)) {
      activity.push_back(*a);
      if (a->what == imap::idle_activity::kind::exists) s.stop_idle(imap::idle_stop::rescan);
    }
  };
  auto r = test::run_scan(rt, eo, so, d);
  INFO(dc.log_tail());
  if (r.error) FAIL_CHECK(r.error->detail);
  REQUIRE_FALSE(r.error);
  REQUIRE(r.complete);
  CHECK(idles == 2);
  REQUIRE_FALSE(activity.empty());
  CHECK(activity.front().what == imap::idle_activity::kind::exists);
  CHECK(activity.front().number == 2);
  REQUIRE(r.messages.size() == 2);
  CHECK(r.messages[0].uid == 1);
  CHECK(r.messages[1].uid == 2);
}

TEST_CASE("imap: COMPRESS=DEFLATE round trip — every message arrives intact, fewer bytes on the wire",
          "[integration][imap]") {
  test::dovecot_options o;
  o.users = {{"alice", "pw"}};
  o.compress = true;
  o.rawlog = true;
  test::dovecot_fixture dc{o};
  std::vector<std::string> sent;
  for (int i = 0; i < 20; ++i) {
    std::string m = message(i);
    for (int k = 0; k < 200; ++k) m += fmt::format("line {} of a compressible body {}\r\n", k, i);
    dc.seed("alice", "INBOX", m);
    sent.push_back(m);
  }
  net::io_runtime rt;
  const auto eo = plain_endpoint(dc);
  auto so = alice_inbox();
  so.fetch = imap::fetch_strategy::whole_message;
  so.batch_size = 7;
  so.compress = true;
  auto r = test::run_scan(rt, eo, so);
  INFO(dc.log_tail());
  if (r.error) FAIL_CHECK(r.error->detail);
  REQUIRE_FALSE(r.error);
  REQUIRE(r.complete);
  CHECK(r.compressed);
  REQUIRE(r.messages.size() == sent.size());
  std::size_t plain = 0;
  for (std::size_t i = 0; i < sent.size(); ++i) {
    CHECK(r.messages[i].raw == sent[i]);
    plain += sent[i].size();
  }
  CHECK(r.bytes_received * 4 < plain);
  // Without the option nothing changes.
  so.compress = false;
  auto p = test::run_scan(rt, eo, so);
  REQUIRE(p.complete);
  CHECK_FALSE(p.compressed);
  CHECK(p.bytes_received > plain);

  // The engine with `compress = true`: every message tracked through the compressed stream.
  auto dir = test::unique_test_dir("imap-compress");
  auto conf = config_for(dc, dir, "INBOX", "all");
  std::ofstream(conf, std::ios::app) << "compress = true\n";
  auto run = test::run_mailscan({"run", "--config", conf, "--once"});
  INFO(run.err);
  REQUIRE(run.code == 0);
  CHECK(test::tracked_count(conf) == sent.size());
  REQUIRE(dc.wait_for_log("mscan_stats", 3));
  CHECK(dc.count_in_rawlog(" COMPRESS DEFLATE") == 2);  // the driver's first session and the engine's
  fs::remove_all(dir);
}
