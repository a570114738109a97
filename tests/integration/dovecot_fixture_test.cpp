// The real-dovecot fixture itself: start/stop, plain and TLS access, seeding, scale, auth
// failures, counters and cleanup. Every test starts its own private instance.
#include <catch2/catch.hpp>

#include <cerrno>
#include <chrono>
#include <ctime>
#include <fstream>
#include <signal.h>
#include <stdexcept>
#include <string>

#include "tests/support/dovecot_fixture.hpp"
#include "tests/support/imap_test_client.hpp"
#include "tests/support/login_storm.hpp"

using namespace mscan::test;
using namespace std::chrono_literals;

namespace {

bool process_exists(int pid) { return ::kill(pid, 0) == 0 || errno != ESRCH; }
bool process_group_exists(int pgid) { return ::kill(-pgid, 0) == 0 || errno != ESRCH; }

std::unique_ptr<imap_test_client> connect_plain_or_fail(std::uint16_t port) {
  auto c = imap_test_client::connect_plain(port);
  if (!c) FAIL(c.error());
  return std::move(*c);
}

imap_test_client::lines run(imap_test_client& c, std::string_view cmd) {
  auto r = c.command(cmd);
  if (!r) FAIL(std::string(cmd) + ": " + r.error());
  return std::move(*r);
}

bool tagged_ok(const imap_test_client& c) {
  return c.last_status().find(" OK") != std::string::npos;
}

std::string message(const std::string& subject, const std::string& body = "hello") {
  return "From: Bob <bob@acme.example>\r\nTo: alice@corp.example\r\nSubject: " + subject +
         "\r\nMessage-ID: <" + subject + "@acme.example>\r\nDate: Mon, 23 Nov 2026 10:00:00 "
         "+0000\r\n\r\n" + body + "\r\n";
}

#define REQUIRE_DOVECOT()                                   \
  do {                                                      \
    if (!dovecot_available()) {                             \
      WARN("/usr/sbin/dovecot not installed: test skipped"); \
      return;                                               \
    }                                                       \
  } while (false)

}  // namespace

TEST_CASE("dovecot fixture starts fast and stops its own process", "[integration][dovecot]") {
  REQUIRE_DOVECOT();
  int pid = 0;
  std::filesystem::path root;
  {
    auto t0 = std::chrono::steady_clock::now();
    dovecot_fixture dv({.users = {{"alice", "secret"}}});
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - t0).count();
    INFO("start took " << ms << " ms");
    CHECK(ms < 2000);
    pid = dv.pid();
    root = dv.root();
    REQUIRE(pid > 0);
    CHECK(process_exists(pid));
    CHECK(dv.imap_port() != 0);
    CHECK(dv.imaps_port() != 0);
    CHECK(dv.imap_port() != dv.imaps_port());
    CHECK(dv.pop3_port() == 0);
    CHECK(std::filesystem::exists(dv.ca_file()));
    CHECK(std::filesystem::exists(dv.wrong_ca_file()));
    CHECK(root.string().find("/test-tmp/dovecot.") != std::string::npos);
    CHECK(dv.count_in_log("starting up for imap") == 1);
  }
  CHECK_FALSE(process_exists(pid));
  CHECK_FALSE(process_group_exists(pid));  // no stray imap/login/auth children
  CHECK_FALSE(std::filesystem::exists(root));
}

TEST_CASE("a dovecot that cannot start throws with its log tail", "[integration][dovecot]") {
  REQUIRE_DOVECOT();
  std::string what;
  try {
    // Only the auth process dies of this; the master keeps restarting it: the fixture must
    // notice the Fatal line instead of waiting 10 s for a login that never works.
    dovecot_fixture dv({.users = {{"alice", "secret"}}, .auth_mechanisms = "plain no-such-mech"});
  } catch (const std::runtime_error& e) {
    what = e.what();
  }
  INFO(what);
  CHECK(what.find("Fatal") != std::string::npos);
  CHECK(what.find("Unknown authentication mechanism 'NO-SUCH-MECH'") != std::string::npos);
  auto kept = what.find("(kept for inspection: ");
  REQUIRE(kept != std::string::npos);
  auto path = what.substr(kept + 22, what.find(')', kept) - kept - 22);
  CHECK(std::filesystem::exists(std::filesystem::path(path) / "dovecot.conf"));
  std::filesystem::remove_all(path);
}

TEST_CASE("invalid fixture options are refused before starting", "[integration][dovecot]") {
  REQUIRE_DOVECOT();
  CHECK_THROWS_AS(dovecot_fixture({.max_connections = 0}), std::runtime_error);
  CHECK_THROWS_AS(dovecot_fixture({.users = {{"a:b", "x"}}}), std::runtime_error);
  CHECK_THROWS_AS(dovecot_fixture({.users = {{"../x", "x"}}}), std::runtime_error);
}

TEST_CASE("LOGIN over plain TCP, then STARTTLS verified", "[integration][dovecot]") {
  REQUIRE_DOVECOT();
  dovecot_fixture dv({.users = {{"alice", "pa ss\"word\\x"}}});
  auto c = connect_plain_or_fail(dv.imap_port());
  CHECK(c->greeting().starts_with("* OK"));
  CHECK(c->greeting().find("STARTTLS") != std::string::npos);
  run(*c, "LOGIN alice \"pa ss\\\"word\\\\x\"");
  CHECK(tagged_ok(*c));
  auto sel = run(*c, "SELECT INBOX");
  CHECK(tagged_ok(*c));
  CHECK(exists_count(sel) == 0);
  run(*c, "LOGOUT");

  auto t = connect_plain_or_fail(dv.imap_port());
  auto up = t->starttls({.ca_file = dv.ca_file(), .host_name = "localhost"});
  INFO((up ? std::string() : up.error()));
  REQUIRE(up);
  CHECK(t->is_tls());
  run(*t, "LOGIN alice \"pa ss\\\"word\\\\x\"");
  CHECK(tagged_ok(*t));
}

TEST_CASE("implicit TLS verifies against ca_file and fails with wrong_ca_file",
          "[integration][dovecot]") {
  REQUIRE_DOVECOT();
  dovecot_fixture dv({.users = {{"alice", "secret"}}});
  for (std::string host : {"localhost", "127.0.0.1"}) {
    auto ok = imap_test_client::connect_tls(dv.imaps_port(),
                                            {.ca_file = dv.ca_file(), .host_name = host});
    INFO(host << ": " << (ok ? std::string() : ok.error()));
    REQUIRE(ok);
    CHECK((*ok)->greeting().starts_with("* OK"));
    run(**ok, "LOGIN alice secret");
    CHECK(tagged_ok(**ok));
  }
  auto wrong_ca = imap_test_client::connect_tls(
      dv.imaps_port(), {.ca_file = dv.wrong_ca_file(), .host_name = "localhost"});
  REQUIRE_FALSE(wrong_ca);
  CHECK(wrong_ca.error().find("certificate") != std::string::npos);

  auto wrong_name = imap_test_client::connect_tls(
      dv.imaps_port(), {.ca_file = dv.ca_file(), .host_name = "mail.example.org"});
  CHECK_FALSE(wrong_name);

  auto plain_starttls_wrong = connect_plain_or_fail(dv.imap_port());
  CHECK_FALSE(plain_starttls_wrong->starttls({.ca_file = dv.wrong_ca_file()}));
}

TEST_CASE("seeding three users from the corpus, counted via STATUS and EXAMINE",
          "[integration][dovecot]") {
  REQUIRE_DOVECOT();
  auto corpus = corpus_files();
  REQUIRE(corpus.size() >= 30);
  dovecot_fixture dv({.users = {{"alice", "a-pw"}, {"bob", "b-pw"}}});
  dv.add_user({"carol", "c-pw"});  // while running

  std::vector<std::filesystem::path> part1(corpus.begin(), corpus.begin() + 10);
  std::vector<std::filesystem::path> part2(corpus.begin() + 10, corpus.begin() + 17);
  std::vector<std::filesystem::path> rest(corpus.begin() + 17, corpus.end());
  dv.seed_files("alice", "INBOX", part1);
  dv.seed_files("bob", "Sent", part2);
  dv.seed_files("carol", "Archive/2024", rest);
  dv.seed("carol", "Résumé", message("utf8-folder"), /*seen=*/true);
  dv.seed("carol", "Résumé", message("utf8-folder-2"));

  struct expectation {
    std::string user, password, folder_wire;
    long long messages, unseen;
  };
  std::vector<expectation> expected{
      {"alice", "a-pw", "INBOX", 10, 10},
      {"bob", "b-pw", "Sent", 7, 7},
      {"bob", "b-pw", "INBOX", 0, 0},
      {"carol", "c-pw", "Archive/2024", static_cast<long long>(rest.size()),
       static_cast<long long>(rest.size())},
      {"carol", "c-pw", "R&AOk-sum&AOk-", 2, 1},  // "Résumé" in modified UTF-7
  };
  for (const auto& e : expected) {
    auto c = connect_plain_or_fail(dv.imap_port());
    run(*c, "LOGIN " + e.user + " " + e.password);
    REQUIRE(tagged_ok(*c));
    auto st = run(*c, "STATUS \"" + e.folder_wire + "\" (MESSAGES UNSEEN UIDNEXT)");
    INFO(e.user << " " << e.folder_wire << ": " << c->last_status());
    CHECK(status_item(st, "MESSAGES") == e.messages);
    CHECK(status_item(st, "UNSEEN") == e.unseen);
    CHECK(status_item(st, "UIDNEXT") == e.messages + 1);
    auto ex = run(*c, "EXAMINE \"" + e.folder_wire + "\"");
    CHECK(exists_count(ex) == e.messages);
  }

  // LIST shows the hierarchy with "/" and the UTF-8 folder in modified UTF-7.
  auto c = connect_plain_or_fail(dv.imap_port());
  run(*c, "LOGIN carol c-pw");
  auto list = run(*c, "LIST \"\" \"*\"");
  std::string all;
  for (auto& l : list) all += l + "\n";
  CHECK(all.find("\"/\" Archive/2024") != std::string::npos);
  CHECK(all.find("R&AOk-sum&AOk-") != std::string::npos);
}

TEST_CASE("seeding order is UID order, delete_folder gives a new UIDVALIDITY",
          "[integration][dovecot]") {
  REQUIRE_DOVECOT();
  dovecot_fixture dv({.users = {{"alice", "secret"}}});
  for (int i = 1; i <= 12; ++i) dv.seed("alice", "Order", message("m" + std::to_string(i)));
  auto c = connect_plain_or_fail(dv.imap_port());
  run(*c, "LOGIN alice secret");
  auto ex = run(*c, "EXAMINE Order");
  REQUIRE(exists_count(ex) == 12);
  auto f = run(*c, "UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
  int expect = 1;
  for (const auto& line : f) {
    if (!line.starts_with("* ")) continue;
    INFO(line);
    CHECK(line.find("UID " + std::to_string(expect) + " ") != std::string::npos);
    CHECK(line.find("Subject: m" + std::to_string(expect) + "\r\n") != std::string::npos);
    ++expect;
  }
  CHECK(expect == 13);
  auto st1 = run(*c, "STATUS Sent (UIDVALIDITY)");  // Sent does not exist yet
  CHECK(c->last_status().find(" NO") != std::string::npos);
  run(*c, "LOGOUT");

  dv.seed("alice", "Sent", message("s1"));
  auto c2 = connect_plain_or_fail(dv.imap_port());
  run(*c2, "LOGIN alice secret");
  auto before = status_item(run(*c2, "STATUS Sent (UIDVALIDITY MESSAGES)"), "UIDVALIDITY");
  REQUIRE(before > 0);
  run(*c2, "LOGOUT");
  dv.delete_folder("alice", "Sent");
  dv.seed("alice", "Sent", message("s2"));
  dv.seed("alice", "Sent", message("s3"));
  auto c3 = connect_plain_or_fail(dv.imap_port());
  run(*c3, "LOGIN alice secret");
  auto st = run(*c3, "STATUS Sent (UIDVALIDITY MESSAGES)");
  CHECK(status_item(st, "MESSAGES") == 2);
  CHECK(status_item(st, "UIDVALIDITY") != before);
}

TEST_CASE("300 concurrent connections log in at the same time", "[integration][dovecot]") {
  REQUIRE_DOVECOT();
  std::vector<dovecot_user> users;
  for (int i = 0; i < 10; ++i) users.push_back({"u" + std::to_string(i), "pw" + std::to_string(i)});
  dovecot_fixture dv({.users = users});
  auto r = concurrent_logins(dv.imap_port(), users, 300, 60s);
  std::string errors;
  for (auto& e : r.errors) errors += e + "\n";
  INFO("elapsed " << r.elapsed.count() << " ms; errors:\n" << errors << dv.log_tail(20));
  CHECK_FALSE(r.timed_out);
  CHECK(r.connected == 300);
  CHECK(r.logged_in == 300);
  CHECK(r.logged_out == 300);
  CHECK(dv.wait_for_log("Disconnected: Logged out mscan_stats", 300));
}

TEST_CASE("wrong password gets NO [AUTHENTICATIONFAILED], passwords change while running",
          "[integration][dovecot]") {
  REQUIRE_DOVECOT();
  dovecot_fixture dv({.users = {{"alice", "right"}}});
  auto c = connect_plain_or_fail(dv.imap_port());
  run(*c, "LOGIN alice wrong");
  CHECK(c->last_status().starts_with("a1 NO [AUTHENTICATIONFAILED]"));
  run(*c, "LOGIN nobody-here wrong");
  CHECK(c->last_status().starts_with("a2 NO [AUTHENTICATIONFAILED]"));
  // auth_failure_delay = 0 and trusted loopback: no penalty slows the next login.
  auto t0 = std::chrono::steady_clock::now();
  run(*c, "LOGIN alice right");
  CHECK(tagged_ok(*c));
  CHECK(std::chrono::steady_clock::now() - t0 < 1s);

  // Two changes within one second, same length: both must be seen by dovecot.
  dv.set_password("alice", "new-1");
  dv.set_password("alice", "new-2");
  auto c2 = connect_plain_or_fail(dv.imap_port());
  run(*c2, "LOGIN alice right");
  CHECK(c2->last_status().find("NO [AUTHENTICATIONFAILED]") != std::string::npos);
  run(*c2, "LOGIN alice new-1");
  CHECK(c2->last_status().find("NO [AUTHENTICATIONFAILED]") != std::string::npos);
  run(*c2, "LOGIN alice new-2");
  CHECK(tagged_ok(*c2));

  dv.add_user({"dave", "d"});
  auto c3 = connect_plain_or_fail(dv.imap_port());
  run(*c3, "LOGIN dave d");
  CHECK(tagged_ok(*c3));
  // The log carries no password.
  CHECK(dv.count_in_log("new-2") == 0);
  CHECK(dv.count_in_log("right") == 0);
}

TEST_CASE("cleanup kills only the fixture's own dovecot, also when the test throws",
          "[integration][dovecot]") {
  REQUIRE_DOVECOT();
  dovecot_fixture outer({.users = {{"alice", "secret"}}});
  int inner_pid = 0;
  CHECK_THROWS_AS(
      [&] {
        dovecot_fixture inner({.users = {{"bob", "secret"}}});
        inner_pid = inner.pid();
        auto c = connect_plain_or_fail(inner.imap_port());
        run(*c, "LOGIN bob secret");  // a live session (an imap child) while we throw
        throw std::logic_error("test body failed");
      }(),
      std::logic_error);
  REQUIRE(inner_pid > 0);
  CHECK_FALSE(process_exists(inner_pid));
  CHECK_FALSE(process_group_exists(inner_pid));
  // The other instance is untouched.
  CHECK(process_exists(outer.pid()));
  auto c = connect_plain_or_fail(outer.imap_port());
  run(*c, "LOGIN alice secret");
  CHECK(tagged_ok(*c));
}

TEST_CASE("session counters: a flags-only rescan fetches no bodies", "[integration][dovecot]") {
  REQUIRE_DOVECOT();
  dovecot_fixture dv({.users = {{"alice", "secret"}}, .rawlog = true});
  for (int i = 1; i <= 5; ++i) dv.seed("alice", "INBOX", message("m" + std::to_string(i)));
  {
    auto c = connect_plain_or_fail(dv.imap_port());
    run(*c, "LOGIN alice secret");
    run(*c, "EXAMINE INBOX");
    run(*c, "UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])");
    run(*c, "UID FETCH 1:3 (BODY.PEEK[])");
    run(*c, "LOGOUT");
  }
  REQUIRE(dv.wait_for_log("mscan_stats", 1));
  auto first = dv.imap_stats("alice");
  CHECK(first.sessions == 1);
  CHECK(first.fetch_hdr_count == 5);
  CHECK(first.fetch_body_count == 3);
  {
    auto c = connect_plain_or_fail(dv.imap_port());
    run(*c, "LOGIN alice secret");
    run(*c, "EXAMINE INBOX");
    run(*c, "UID FETCH 1:* (UID FLAGS)");
    run(*c, "LOGOUT");
  }
  REQUIRE(dv.wait_for_log("mscan_stats", 2));
  auto second = dv.imap_stats("alice");
  CHECK(second.sessions == 2);
  CHECK(second.fetch_body_count == first.fetch_body_count);  // the rescan fetched no bodies
  CHECK(dv.imap_stats("nobody").sessions == 0);
  CHECK(dv.count_in_rawlog(" UID FETCH ") == 3);
  // rawlog starts after login (in the imap process): LOGIN itself is never in it.
  CHECK(dv.count_in_rawlog(" LOGOUT") == 2);
  CHECK(dv.count_in_rawlog(" LOGIN ") == 0);
}

TEST_CASE("pop3 listeners when asked for", "[integration][dovecot]") {
  REQUIRE_DOVECOT();
  dovecot_fixture dv({.users = {{"alice", "secret"}}, .pop3 = true});
  REQUIRE(dv.pop3_port() != 0);
  REQUIRE(dv.pop3s_port() != 0);
  auto plain = imap_test_client::connect_plain(dv.pop3_port());
  REQUIRE(plain);
  CHECK((*plain)->greeting().starts_with("+OK"));
  auto tls = imap_test_client::connect_tls(dv.pop3s_port(), {.ca_file = dv.ca_file()});
  INFO((tls ? std::string() : tls.error()));
  REQUIRE(tls);
  CHECK((*tls)->greeting().starts_with("+OK"));
}

TEST_CASE("per-user connection limit answers NO [LIMIT] (throttling)", "[integration][dovecot]") {
  REQUIRE_DOVECOT();
  dovecot_fixture dv({.users = {{"alice", "secret"}}, .max_userip_connections = 1});
  auto first = connect_plain_or_fail(dv.imap_port());
  run(*first, "LOGIN alice secret");
  REQUIRE(tagged_ok(*first));
  auto second = connect_plain_or_fail(dv.imap_port());
  run(*second, "LOGIN alice secret");
  INFO(second->last_status());
  // Dovecot 2.3.19: "a1 NO [LIMIT] Maximum number of connections from user+IP exceeded ..."
  CHECK(second->last_status().starts_with("a1 NO [LIMIT]"));
}

TEST_CASE("kick, remove_user and stop while clients are connected", "[integration][dovecot]") {
  REQUIRE_DOVECOT();
  dovecot_fixture dv({.users = {{"alice", "secret"}, {"bob", "pw"}}});
  auto c = connect_plain_or_fail(dv.imap_port());
  run(*c, "LOGIN alice secret");
  REQUIRE(tagged_ok(*c));
  REQUIRE(dv.wait_for_log("Login: user=<alice>", 1));
  CHECK(dv.kick("alice"));
  auto bye = c->read_response();
  INFO((bye ? *bye : bye.error()));
  REQUIRE(bye);
  CHECK(bye->starts_with("* BYE"));
  CHECK_FALSE(dv.kick("nobody-logged-in"));

  dv.remove_user("bob");
  auto b = connect_plain_or_fail(dv.imap_port());
  run(*b, "LOGIN bob pw");
  CHECK(b->last_status().find("NO [AUTHENTICATIONFAILED]") != std::string::npos);

  int pid = dv.pid();
  auto port = dv.imap_port();
  dv.stop();
  CHECK_FALSE(process_exists(pid));
  auto refused = imap_test_client::connect_plain(port, 2s);
  CHECK_FALSE(refused);
  CHECK(dv.count_in_log("Login: user=<alice>") == 1);  // the log outlives the instance
}

TEST_CASE("the readiness probe leaves no dropped connection in the log", "[integration][dovecot]") {
  REQUIRE_DOVECOT();
  dovecot_fixture dv({.users = {{"alice", "secret"}}, .pop3 = true});
  CHECK(dv.wait_for_log("Aborted login by logging out", 2));
  CHECK(dv.count_in_log("Disconnected: Connection closed") == 0);
}

TEST_CASE("seed with an internal date: SEARCH SINCE sees it", "[integration][dovecot]") {
  REQUIRE_DOVECOT();
  dovecot_fixture dv({.users = {{"alice", "secret"}}});
  auto now = std::chrono::system_clock::now();
  dv.seed("alice", "INBOX", message("old"), false, now - std::chrono::hours(24 * 30));
  dv.seed("alice", "INBOX", message("new"));
  auto c = connect_plain_or_fail(dv.imap_port());
  run(*c, "LOGIN alice secret");
  run(*c, "EXAMINE INBOX");
  std::time_t t = std::chrono::system_clock::to_time_t(now - std::chrono::hours(24 * 10));
  char since[32];
  std::strftime(since, sizeof since, "%d-%b-%Y", std::gmtime(&t));
  auto r = run(*c, std::string("UID SEARCH SINCE ") + since);
  REQUIRE(r.size() == 2);
  CHECK(r[0] == "* SEARCH 2");
  auto all = run(*c, "UID FETCH 1 (INTERNALDATE)");
  std::time_t old_t = std::chrono::system_clock::to_time_t(now - std::chrono::hours(24 * 30));
  char old_day[32];
  std::strftime(old_day, sizeof old_day, "%d-%b-%Y", std::localtime(&old_t));
  CHECK(all[0].find(old_day) != std::string::npos);
}
