// Incremental scanning against the real dovecot: the first-scan window, UIDVALIDITY resets,
// expunges and renamed folders — each must leave every message tracked exactly once.
#include "tests/support/dovecot_fixture.hpp"
#include "tests/support/imap_test_client.hpp"
#include "tests/support/mailscan_cli.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <set>
#include <sys/wait.h>

namespace fs = std::filesystem;
using namespace mscan;

namespace {

std::string message(int i, std::string_view tag = "m") {
  return fmt::format("From: c{0}@customer.example\r\nTo: alice@corp.example\r\nSubject: {1} {0}\r\n"
                     "Message-ID: <{1}-{0}@customer.example>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n"
                     "body {0}\r\n",
                     i, tag);
}

struct tracked {
  std::size_t messages = 0, sightings = 0;
  std::map<std::string, std::size_t> by_folder;
};

tracked query(const std::string& conf) {
  auto r = test::run_mailscan({"query", "--config", conf, "messages", "--json"});
  REQUIRE(r.code == 0);
  tracked t;
  std::set<std::string> ids;
  auto json = nlohmann::json::parse(r.out);  // named: a range-for over a temporary's member dangles
  for (auto& m : json.at("messages")) {
    CHECK(ids.insert(m.at("message_id").get<std::string>()).second);
    ++t.messages;
    for (auto& s : m.at("sightings")) {
      ++t.sightings;
      ++t.by_folder[s.at("folder").get<std::string>()];
    }
  }
  return t;
}

std::string config_for(const test::dovecot_fixture& dc, const fs::path& dir, int days_back, std::string folders,
                       std::string scan = "all") {
  auto conf = dir / "mailscan.toml";
  std::ofstream(conf) << fmt::format(
    "[engine]\ndata_dir = \"data\"\nlog_dir = \"logs\"\ndays_back = {}\nbatch_size = 7\n\n"
    "[[mailbox]]\nuser = \"alice\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n"
    "username = \"alice\"\npassword = \"pw\"\nfolders = \"{}\"\nscan = \"{}\"\n",
    days_back, dc.imap_port(), folders, scan);
  return conf.string();
}

} // namespace

TEST_CASE("scan: the first scan of a folder reads only the days_back window, later scans only new UIDs",
          "[integration][scan]") {
  test::dovecot_fixture dc{{{{"alice", "pw"}}}};
  auto now = std::chrono::system_clock::now();
  for (int i = 0; i < 10; ++i)  // old mail: outside a 14-day window
    dc.seed("alice", "INBOX", message(i, "old"), false, now - std::chrono::hours(24 * 60));
  for (int i = 0; i < 5; ++i)
    dc.seed("alice", "INBOX", message(i, "recent"), false, now - std::chrono::hours(24));
  auto dir = test::unique_test_dir("scan-window");
  auto conf = config_for(dc, dir, 14, "INBOX");
  REQUIRE(test::run_mailscan({"run", "--config", conf, "--once"}).code == 0);
  CHECK(query(conf).messages == 5);
  // Old mail arriving later (new UIDs) is new to the mailbox: tracked whatever its date.
  for (int i = 0; i < 3; ++i)
    dc.seed("alice", "INBOX", message(i, "late"), false, now - std::chrono::hours(24 * 90));
  REQUIRE(test::run_mailscan({"run", "--config", conf, "--once"}).code == 0);
  CHECK(query(conf).messages == 8);
}

TEST_CASE("scan: a folder whose first message is in the window keeps the window on the client",
          "[integration][scan]") {
  // Message 1 is recent, so the folder is searched ALL (no per-message date lookups on the
  // server); mail appended later with old dates must still be left out, as SINCE would.
  test::dovecot_fixture dc{{{{"alice", "pw"}}}};
  auto now = std::chrono::system_clock::now();
  for (int i = 0; i < 5; ++i)
    dc.seed("alice", "INBOX", message(i, "recent"), false, now - std::chrono::hours(24));
  for (int i = 0; i < 4; ++i)
    dc.seed("alice", "INBOX", message(i, "old"), false, now - std::chrono::hours(24 * 60));
  for (int i = 0; i < 2; ++i)
    dc.seed("alice", "INBOX", message(i, "today"), false, now - std::chrono::hours(1));
  auto dir = test::unique_test_dir("scan-window-client");
  auto conf = config_for(dc, dir, 14, "INBOX");
  REQUIRE(test::run_mailscan({"run", "--config", conf, "--once"}).code == 0);
  CHECK(query(conf).messages == 7);
  // The checkpoint passed the old ones: nothing is fetched again, nothing added.
  REQUIRE(test::run_mailscan({"run", "--config", conf, "--once"}).code == 0);
  CHECK(query(conf).messages == 7);
}

TEST_CASE("scan: a UIDVALIDITY reset rescans the folder and tracks nothing twice", "[integration][scan]") {
  test::dovecot_fixture dc{{{{"alice", "pw"}}}};
  for (int i = 0; i < 20; ++i)
    dc.seed("alice", "Projects", message(i));
  auto dir = test::unique_test_dir("scan-uidvalidity");
  auto conf = config_for(dc, dir, 0, "INBOX; Projects");
  REQUIRE(test::run_mailscan({"run", "--config", conf, "--once"}).code == 0);
  CHECK(query(conf).messages == 20);

  dc.delete_folder("alice", "Projects");  // recreated below: a new UIDVALIDITY, new UIDs
  for (int i = 0; i < 25; ++i)
    dc.seed("alice", "Projects", message(i));
  auto r = test::run_mailscan({"run", "--config", conf, "--once"});
  INFO(r.out);
  REQUIRE(r.code == 0);
  auto t = query(conf);
  CHECK(t.messages == 25);
  CHECK(t.sightings == 25);  // the copies seen under the old UIDVALIDITY are superseded
}

TEST_CASE("scan: expunged messages stay tracked, a renamed folder adds sightings, not messages",
          "[integration][scan]") {
  test::dovecot_fixture dc{{{{"alice", "pw"}}}};
  for (int i = 0; i < 12; ++i)
    dc.seed("alice", "Clients", message(i));
  auto dir = test::unique_test_dir("scan-rename");
  auto conf = config_for(dc, dir, 0, "*");
  REQUIRE(test::run_mailscan({"run", "--config", conf, "--once"}).code == 0);
  CHECK(query(conf).messages == 12);

  // Expunge: remove three message files from the maildir; the history stays.
  std::size_t removed = 0;
  for (auto& sub : {"cur", "new"})
    for (auto& f : fs::directory_iterator(dc.maildir_path("alice", "Clients") / sub))
      if (removed < 3 && f.is_regular_file()) {
        fs::remove(f.path());
        ++removed;
      }
  REQUIRE(test::run_mailscan({"run", "--config", conf, "--once"}).code == 0);
  CHECK(query(conf).messages == 12);

  // Rename the folder on disk: a folder with a new name is scanned from scratch, and every
  // message in it is one more sighting of an already tracked message.
  fs::rename(dc.maildir_path("alice", "Clients"), dc.maildir_path("alice", "Customers"));
  auto r = test::run_mailscan({"run", "--config", conf, "--once"});
  INFO(r.out);
  REQUIRE(r.code == 0);
  auto t = query(conf);
  CHECK(t.messages == 12);
  CHECK(t.by_folder["Customers"] == 9);
}

TEST_CASE("scan: a configured folder that does not exist is a reported error", "[integration][scan]") {
  test::dovecot_fixture dc{{{{"alice", "pw"}}}};
  dc.seed("alice", "INBOX", message(1));
  auto dir = test::unique_test_dir("scan-missing");
  auto conf = config_for(dc, dir, 0, "INBOX; Sent Items");
  auto r = test::run_mailscan({"run", "--config", conf, "--once"});
  INFO(r.out);
  CHECK(r.code == 3);
  CHECK(r.out.find("alice: Error (folder_not_found)") != std::string::npos);
  CHECK(r.out.find("Sent Items") != std::string::npos);
}

TEST_CASE("scan: scan = unread tracks only unseen mail and marks it Seen once tracked", "[integration][scan]") {
  test::dovecot_fixture dc{{{{"alice", "pw"}}}};
  for (int i = 0; i < 17; ++i)
    dc.seed("alice", "INBOX", message(i, "unseen"));
  for (int i = 0; i < 4; ++i)
    dc.seed("alice", "INBOX", message(i, "read"), true);
  auto unseen = [&] {
    auto c = test::imap_test_client::connect_plain(dc.imap_port());
    REQUIRE(c);
    REQUIRE((*c)->command("LOGIN alice pw"));
    auto r = (*c)->command("STATUS INBOX (UNSEEN)");
    REQUIRE(r);
    return test::status_item(*r, "UNSEEN");
  };
  REQUIRE(unseen() == 17);
  auto dir = test::unique_test_dir("scan-unread");
  auto conf = config_for(dc, dir, 0, "INBOX", "unread");
  auto r = test::run_mailscan({"run", "--config", conf, "--once"});
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK(query(conf).messages == 17);
  CHECK(unseen() == 0);
  // Nothing new: a second pass tracks nothing more.
  REQUIRE(test::run_mailscan({"run", "--config", conf, "--once"}).code == 0);
  CHECK(query(conf).messages == 17);
}

TEST_CASE("scan: a refused login's deliberate delay is not slowness: no slow mark, one attempt",
          "[integration][scan][slow_lane]") {
  // Dovecot answers a failed LOGIN only after ~0.5 s (its delayed-failure timer; real
  // servers wait seconds on purpose). That silence is past slow_response_ms and past the
  // early threshold while 4 mailboxes queue behind on the one connection: counted as
  // slowness it would mark bob slow or, with the lane full, make him yield and log in again
  // with the wrong password (a second failed attempt: what locks accounts out).
  test::dovecot_options o;
  for (int i = 0; i < 12; ++i)
    o.users.push_back({fmt::format("u{}", i), "pw"});
  o.users.push_back({"bob", "right"});
  test::dovecot_fixture dc{o};
  auto dir = test::unique_test_dir("scan-auth-delay");
  std::string cfg = "[engine]\ndata_dir = \"data\"\nlog_dir = \"logs\"\ndays_back = 0\ninfo_logging = true\n"
                    "max_connections = 1\nmax_connections_per_host = 1\nslow_response_ms = 300\n\n";
  auto block = [&](const std::string& user, const std::string& pw) {
    cfg += fmt::format("[[mailbox]]\nuser = \"{0}\"\nhost = \"127.0.0.1\"\nport = {1}\nsecurity = \"none\"\n"
                       "username = \"{0}\"\npassword = \"{2}\"\nfolders = \"INBOX\"\n\n",
                       user, dc.imap_port(), pw);
  };
  for (int i = 0; i < 8; ++i)  // enough leases for the host's usual answer time to be known
    block(fmt::format("u{}", i), "pw");
  block("bob", "wrong");
  for (int i = 8; i < 12; ++i)
    block(fmt::format("u{}", i), "pw");
  std::ofstream(dir / "mailscan.toml") << cfg;
  auto r = test::run_mailscan({"run", "--config", (dir / "mailscan.toml").string(), "--once"});
  INFO(r.out << r.err);
  CHECK(r.out.find("bob: ") != std::string::npos);
  std::size_t slow = 0, yielded = 0, bob_failed = 0;
  for (auto& f : fs::directory_iterator(dir / "logs")) {
    std::ifstream in(f.path());
    for (std::string line; std::getline(in, line);) {
      slow += line.find("event=mailbox_slow") != std::string::npos;
      yielded += line.find("event=lease_yielded") != std::string::npos;
      bob_failed += line.find("user=bob") != std::string::npos && line.find("login_failed") != std::string::npos;
    }
  }
  CHECK(slow == 0);
  CHECK(yielded == 0);
  CHECK(bob_failed >= 1);
  CHECK(dc.count_in_log("auth failed") <= 1);
}
