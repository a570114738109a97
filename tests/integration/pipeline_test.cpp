// The walking skeleton end to end through real parts: a private dovecot seeded with the
// real-world corpus, the `mailscan` executable as an operator runs it, and its JSON output.
#include "core/config.hpp"
#include "protocols/mime/message.hpp"
#include "storage/store.hpp"
#include "tests/support/dovecot_fixture.hpp"
#include "tests/support/mailscan_cli.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <sys/wait.h>

namespace fs = std::filesystem;
using namespace mscan;

namespace {

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs the real executable, as an operator would.
std::string mailbox_toml(const std::string& user, std::uint16_t port, const std::string& security,
                         const std::string& ca_file, const std::string& password) {
  return fmt::format("[[mailbox]]\nuser = \"{0}\"\naddress = \"{0}@corp.example\"\nhost = \"127.0.0.1\"\n"
                     "port = {1}\nsecurity = \"{2}\"\n{3}username = \"{0}\"\npassword = \"{4}\"\n"
                     "folders = \"*\"\n\n",
                     user, port, security, ca_file.empty() ? "" : fmt::format("ca_file = \"{}\"\n", ca_file),
                     password);
}

} // namespace

TEST_CASE("skeleton: three mailboxes over plain, TLS and STARTTLS are tracked exactly once",
          "[integration][pipeline]") {
  REQUIRE(test::dovecot_available());
  test::dovecot_fixture dc{{{{"alice", "pw-a"}, {"bob", "pw-b"}, {"carol", "pw-c"}}}};
  auto corpus = test::corpus_files();
  REQUIRE(corpus.size() >= 100);

  // alice gets the whole corpus, bob the first 40 (so 40 messages are seen twice), carol the
  // last 30 in a subfolder.
  dc.seed_files("alice", "INBOX", corpus);
  dc.seed_files("bob", "INBOX", {corpus.begin(), corpus.begin() + 40});
  dc.seed_files("carol", "Archive/2024", {corpus.end() - 30, corpus.end()});

  // Expected distinct messages, computed with the same message model the engine uses.
  std::set<std::string> keys;
  for (auto& f : corpus) {
    auto m = mime::parse_message(read_all(f));
    keys.insert(m.message_id);
  }

  auto dir = test::unique_test_dir("pipeline");
  std::string cfg = fmt::format("[engine]\ndata_dir = \"data\"\nlog_dir = \"logs\"\ndays_back = 0\n"
                                "max_connections = 2\nmax_connections_per_host = 2\nbatch_size = 25\n\n");
  cfg += mailbox_toml("alice", dc.imap_port(), "none", "", "pw-a");
  cfg += mailbox_toml("bob", dc.imaps_port(), "tls", dc.ca_file(), "pw-b");
  cfg += mailbox_toml("carol", dc.imap_port(), "starttls", dc.ca_file(), "pw-c");
  cfg += "[[account]]\nname = \"Example Org\"\ndomains = [\"example.org\"]\n\n";
  {
    std::ofstream(dir / "mailscan.toml") << cfg;
  }
  auto conf = (dir / "mailscan.toml").string();

  auto first = test::run_mailscan({"run", "--config", conf, "--once"});
  INFO("stdout: " << first.out << "\nstderr: " << first.err << "\ndovecot: " << dc.log_tail(20));
  REQUIRE(first.code == 0);
  CHECK(first.err.empty());

  auto q = test::run_mailscan({"query", "--config", conf, "messages", "--json"});
  REQUIRE(q.code == 0);
  auto j = nlohmann::json::parse(q.out);
  auto& msgs = j.at("messages");
  std::size_t sightings = 0;
  std::set<std::string> seen_ids;
  for (auto& m : msgs) {
    sightings += m.at("sightings").size();
    auto id = m.at("message_id").get<std::string>();
    if (!id.empty())
      CHECK(seen_ids.insert(id).second);  // exactly once
  }
  // Every seeded copy is one sighting: 150 + 40 + 30 (no copy lost, none doubled).
  CHECK(sightings == corpus.size() + 40 + 30);
  // Messages without a Message-ID are keyed by a fingerprint; the rest by their ID.
  CHECK(msgs.size() >= keys.size() - 1);
  CHECK(msgs.size() <= corpus.size());

  // The second pass over unchanged mailboxes adds nothing and fetches no message bodies.
  REQUIRE(dc.wait_for_log("mscan_stats", 3));
  auto before = dc.imap_stats();
  auto second = test::run_mailscan({"run", "--config", conf, "--once"});
  REQUIRE(second.code == 0);
  REQUIRE(dc.wait_for_log("mscan_stats", 6));
  auto after = dc.imap_stats();
  CHECK(after.fetch_body_count == before.fetch_body_count);
  auto q2 = test::run_mailscan({"query", "--config", conf, "messages", "--json"});
  CHECK(nlohmann::json::parse(q2.out).at("messages").size() == msgs.size());

  // status shows every mailbox as scanned and OK.
  auto st = test::run_mailscan({"status", "--config", conf, "--json"});
  REQUIRE(st.code == 0);
  // The parsed document must outlive the loop: a range-for over a member of a temporary
  // dangles (ASan found the same pattern elsewhere).
  const auto status = nlohmann::json::parse(st.out);
  for (auto& m : status.at("mailboxes")) {
    CHECK(m.at("state") == "ok");
    CHECK(!m.at("last_scanned").is_null());
  }
}

TEST_CASE("skeleton: a wrong password and a wrong CA are reported per mailbox, exit 3",
          "[integration][pipeline]") {
  test::dovecot_fixture dc{{{{"alice", "right"}, {"bob", "pw-b"}}}};
  dc.seed("alice", "INBOX", "From: a@b.example\r\nSubject: x\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n");
  auto dir = test::unique_test_dir("pipeline-fail");
  std::string cfg = "[engine]\ndata_dir = \"data\"\ndays_back = 0\n\n";
  cfg += mailbox_toml("alice", dc.imap_port(), "none", "", "wrong-secret-value");
  cfg += mailbox_toml("bob", dc.imaps_port(), "tls", dc.wrong_ca_file(), "pw-b");
  std::ofstream(dir / "mailscan.toml") << cfg;
  auto conf = (dir / "mailscan.toml").string();
  auto r = test::run_mailscan({"run", "--config", conf, "--once"});
  INFO(r.out << r.err);
  CHECK(r.code == 3);
  CHECK(r.out.find("alice: Error (login_failed)") != std::string::npos);
  CHECK(r.out.find("bob: Error (certificate_invalid)") != std::string::npos);
  CHECK(r.out.find("wrong-secret-value") == std::string::npos);
  CHECK(r.err.find("wrong-secret-value") == std::string::npos);
  auto st = test::run_mailscan({"status", "--config", conf, "--json"});
  auto j = nlohmann::json::parse(st.out);
  for (auto& m : j.at("mailboxes")) {
    CHECK(m.at("state") == "error");
    CHECK(m.at("consecutive_failures") == 1);
  }
}

TEST_CASE("skeleton: a broken config is one clear line and exit 2", "[integration][pipeline]") {
  auto dir = test::unique_test_dir("pipeline-config");
  std::ofstream(dir / "bad.toml") << "[engine]\ndays_back = \"two weeks\"\n";
  auto r = test::run_mailscan({"run", "--config", (dir / "bad.toml").string(), "--once"});
  CHECK(r.code == 2);
  CHECK(r.err.rfind("mailscan: config: ", 0) == 0);
  CHECK(r.err.find("bad.toml:2: [engine]: key 'days_back': expected an integer") != std::string::npos);
}

TEST_CASE("run: a password rejected after earlier successes stops logins until the config changes",
          "[integration][pipeline][health]") {
  test::dovecot_fixture dc{{{{"alice", "old-pw"}}}};
  dc.seed("alice", "INBOX", "From: a@b.example\r\nSubject: x\r\nMessage-ID: <h1@y>\r\n\r\nbody\r\n");
  auto dir = test::unique_test_dir("pipeline-health");
  auto write = [&](const std::string& pw) {
    std::ofstream(dir / "mailscan.toml") << "[engine]\ndata_dir = \"data\"\ndays_back = 0\n\n"
                                         << mailbox_toml("alice", dc.imap_port(), "none", "", pw);
  };
  auto conf = (dir / "mailscan.toml").string();
  auto state = [&] {
    auto j = nlohmann::json::parse(test::run_mailscan({"status", "--config", conf, "--json"}).out);
    return j.at("mailboxes").at(0).at("state").get<std::string>();
  };
  write("old-pw");
  REQUIRE(test::run_mailscan({"run", "--config", conf, "--once"}).code == 0);
  CHECK(state() == "ok");

  dc.set_password("alice", "new-pw");  // changed on the server, not yet in the config
  auto r = test::run_mailscan({"run", "--config", conf, "--once"});
  CHECK(r.code == 3);
  CHECK(r.out.find("alice: Error (login_failed)") != std::string::npos);
  CHECK(state() == "credentials_changed");

  // No further LOGIN with the rejected password (servers lock accounts that retry).
  auto attempts = dc.count_in_log("auth failed");
  CHECK(attempts > 0);
  auto again = test::run_mailscan({"run", "--config", conf, "--once"});
  CHECK(again.out.find("alice: Error (credentials_changed)") != std::string::npos);
  CHECK(dc.count_in_log("auth failed") == attempts);

  write("new-pw");
  auto fixed = test::run_mailscan({"run", "--config", conf, "--once"});
  INFO(fixed.out);
  CHECK(fixed.code == 0);
  CHECK(state() == "ok");
}
