// Rules' server-side actions on the real dovecot fixture with the real `mailscan`: move to a
// folder that does not exist yet (created, mUTF-7 name), delete, mark_read — each carried out
// only after the message is durably tracked, its result visible in `explain` — plus rule hit
// counters in `status --json`. The server is checked with a separate IMAP client.
#include "tests/support/dovecot_fixture.hpp"
#include "tests/support/imap_test_client.hpp"
#include "tests/support/mailscan_cli.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <iterator>

namespace fs = std::filesystem;
using namespace mscan;

namespace {

std::string mail(const std::string& id, const std::string& subject) {
  return fmt::format("From: Bob <bob@acme.example>\r\nTo: support@corp.example\r\nSubject: {}\r\n"
                     "Message-ID: <{}@test>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nbody\r\n",
                     subject, id);
}

// "Done/Ärger": a folder below another, with a non-ASCII name (mUTF-7 on the wire).
const std::string target = "Done/\xc3\x84rger";
const std::string target_wire = "Done/&AMQ-rger";

std::string config(const test::dovecot_fixture& dc, const std::string& extra_engine = "") {
  return fmt::format(R"([engine]
data_dir = "data"
log_dir = "logs"
days_back = 0
{}

[[mailbox]]
user = "support"
address = "support@corp.example"
host = "127.0.0.1"
port = {}
security = "none"
username = "support"
password = "pw-s"

[[rule]]
name = "File it"
folders = ["INBOX"]
conditions = [ {{ field = "subject", op = "contains", value = "[move]" }} ]
actions = [ {{ type = "mark_read" }}, {{ type = "move", folder = "{}" }} ]

[[rule]]
name = "Bin it"
folders = ["INBOX"]
conditions = [ {{ field = "subject", op = "contains", value = "[delete]" }} ]
actions = [ {{ type = "delete" }} ]

[[rule]]
name = "Read it"
folders = ["INBOX"]
conditions = [ {{ field = "subject", op = "contains", value = "[read]" }} ]
actions = [ {{ type = "mark_read" }} ]

[[rule]]
name = "Never"
conditions = [ {{ field = "subject", op = "contains", value = "no such subject" }} ]
actions = [ {{ type = "mark_read" }} ]
)",
                     extra_engine, dc.imap_port(), target);
}

std::unique_ptr<test::imap_test_client> login(const test::dovecot_fixture& dc) {
  auto c = test::imap_test_client::connect_plain(dc.imap_port());
  REQUIRE(c);
  REQUIRE((*c)->command("LOGIN support pw-s"));
  return std::move(*c);
}

long long count(test::imap_test_client& c, const std::string& folder_wire, const char* item = "MESSAGES") {
  auto r = c.command(fmt::format("STATUS \"{}\" ({})", folder_wire, item));
  if (!r || c.last_status().find(" OK") == std::string::npos)
    return -1;  // no such folder
  return test::status_item(*r, item);
}

// The FETCH line of the message with `subject` in INBOX, "" when it is not there.
std::string inbox_flags(test::imap_test_client& c, const std::string& subject) {
  REQUIRE(c.command("SELECT INBOX"));
  auto r = c.command(fmt::format("UID SEARCH SUBJECT \"{}\"", subject));
  REQUIRE(r);
  std::string uid;
  for (auto& l : *r)
    if (l.rfind("* SEARCH ", 0) == 0)
      uid = l.substr(9);
  if (uid.empty())
    return {};
  auto f = c.command("UID FETCH " + uid + " (FLAGS)");
  REQUIRE(f);
  return f->empty() ? std::string{} : f->front();
}

std::string read_logs(const fs::path& dir) {
  std::string all;
  for (auto& e : fs::directory_iterator(dir)) {
    std::ifstream in(e.path());
    all.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return all;
}

nlohmann::json messages(const std::string& conf) {
  return nlohmann::json::parse(test::run_mailscan({"query", "--config", conf, "messages", "--json"}).out).at("messages");
}

} // namespace

TEST_CASE("actions: move (folder created), delete and mark_read happen after tracking, tracked once", "[integration][actions]") {
  REQUIRE(test::dovecot_available());
  test::dovecot_fixture dc{{{{"support", "pw-s"}}}};
  dc.seed("support", "INBOX", mail("m1", "[move] file me"));
  dc.seed("support", "INBOX", mail("m2", "[delete] spam"));
  dc.seed("support", "INBOX", mail("m3", "[read] fyi"));
  dc.seed("support", "INBOX", mail("m4", "plain"));
  auto dir = test::unique_test_dir("actions");
  std::ofstream(dir / "mailscan.toml") << config(dc);
  auto conf = (dir / "mailscan.toml").string();
  {
    auto c = login(dc);
    CHECK(count(*c, target_wire) == -1);  // the destination does not exist yet
  }

  auto run = test::run_mailscan({"run", "--config", conf, "--once"});
  INFO("stdout: " << run.out << "\nstderr: " << run.err);
  REQUIRE(run.code == 0);
  {
    auto c = login(dc);
    CHECK(count(*c, "INBOX") == 2);          // m1 moved, m2 deleted and expunged
    CHECK(count(*c, target_wire) == 1);      // created, m1 there
    CHECK(inbox_flags(*c, "[move]").empty());
    CHECK(inbox_flags(*c, "[delete]").empty());
    CHECK(inbox_flags(*c, "[read]").find("\\Seen") != std::string::npos);
    CHECK(inbox_flags(*c, "plain").find("\\Seen") == std::string::npos);
    // mark_read ran before the move: the moved copy is \Seen too.
    REQUIRE(c->command("SELECT \"" + target_wire + "\""));
    auto f = c->command("UID FETCH 1:* (FLAGS)");
    REQUIRE(f);
    CHECK(f->front().find("\\Seen") != std::string::npos);
  }
  CHECK(messages(conf).size() == 4);  // the deleted message stays tracked

  auto ex = test::run_mailscan({"explain", "--config", conf, "<m1@test>"});
  REQUIRE(ex.code == 0);
  INFO(ex.out);
  CHECK(ex.out.find("action_result move:" + target + ": because ok: folder created") != std::string::npos);
  CHECK(ex.out.find("action_result mark_read: because ok") != std::string::npos);
  auto ex2 = test::run_mailscan({"explain", "--config", conf, "<m2@test>"});
  CHECK(ex2.out.find("action_result delete: because ok") != std::string::npos);

  // A second pass lists the new folder and fetches m1 there: still one message (two
  // sightings), no rule fires there (the rules are for INBOX), nothing moves again.
  auto again = test::run_mailscan({"run", "--config", conf, "--once"});
  INFO("stdout: " << again.out << "\nstderr: " << again.err);
  REQUIRE(again.code == 0);
  auto msgs = messages(conf);
  CHECK(msgs.size() == 4);
  auto m1 = test::run_mailscan({"explain", "--config", conf, "<m1@test>"});
  CHECK(m1.out.find("seen: support / " + target) != std::string::npos);
  {
    auto c = login(dc);
    CHECK(count(*c, target_wire) == 1);
    CHECK(count(*c, "INBOX") == 2);
  }

  // Rule statistics: stored counters, an extension of status --json.
  auto st = nlohmann::json::parse(test::run_mailscan({"status", "--config", conf, "--json"}).out);
  INFO(st.dump(2));
  REQUIRE(st.at("rules").size() == 4);
  for (auto& r : st.at("rules")) {
    if (r.at("name") == "Never") {
      CHECK(r.at("hits") == 0);
      CHECK(r.at("last_hit").is_null());
    } else {
      CHECK(r.at("hits") == 1);
      CHECK(r.at("last_hit").is_string());
    }
  }
  auto human = test::run_mailscan({"status", "--config", conf});
  CHECK(human.out.find("rule File it: 1 hit(s), last ") != std::string::npos);
}

TEST_CASE("actions: a move the server refuses is a recorded, logged failure, the mail stays put", "[integration][actions]") {
  REQUIRE(test::dovecot_available());
  test::dovecot_fixture dc{{{{"support", "pw-s"}}}};
  dc.seed("support", "INBOX", mail("m1", "[move] file me"));
  auto dir = test::unique_test_dir("actions_refused");
  auto cfg = config(dc);
  const std::string bad = std::string(200, 'x') + "/" + std::string(300, 'y');  // too long a name
  cfg.replace(cfg.find(target), target.size(), bad);
  std::ofstream(dir / "mailscan.toml") << cfg;
  auto conf = (dir / "mailscan.toml").string();
  auto run = test::run_mailscan({"run", "--config", conf, "--once"});
  INFO("stdout: " << run.out << "\nstderr: " << run.err);
  REQUIRE(run.code == 0);  // an action failure does not fail the scan
  auto ex = test::run_mailscan({"explain", "--config", conf, "<m1@test>"});
  INFO(ex.out);
  CHECK(ex.out.find("action_result move:" + bad + ": because failed: ") != std::string::npos);
  CHECK(ex.out.find("action_result mark_read: because ok") != std::string::npos);
  CHECK(read_logs(dir / "logs").find("event=action_failed") != std::string::npos);
  auto c = login(dc);
  CHECK(count(*c, "INBOX") == 1);
  CHECK(messages(conf).size() == 1);
  // The next pass does not fetch or act on it again.
  REQUIRE(test::run_mailscan({"run", "--config", conf, "--once"}).code == 0);
  CHECK(count(*c, "INBOX") == 1);
  CHECK(messages(conf).size() == 1);
}

TEST_CASE("actions: nothing happens on the server when the write is not durable", "[integration][actions]") {
  REQUIRE(test::dovecot_available());
  test::dovecot_fixture dc{{{{"support", "pw-s"}}}};
  dc.seed("support", "INBOX", mail("m1", "[move] file me"));
  dc.seed("support", "INBOX", mail("m2", "[delete] spam"));
  dc.seed("support", "INBOX", mail("m3", "[read] fyi"));
  auto dir = test::unique_test_dir("actions_nodurable");
  // The writer refuses every commit below the free-space reserve (1 TiB: as on a full disk).
  std::ofstream(dir / "mailscan.toml") << config(dc, "min_free_disk_mb = 1048576");
  auto conf = (dir / "mailscan.toml").string();
  auto run = test::run_mailscan({"run", "--config", conf, "--once"});
  INFO("stdout: " << run.out << "\nstderr: " << run.err);
  CHECK(run.code == 3);
  auto c = login(dc);
  CHECK(count(*c, "INBOX") == 3);
  CHECK(count(*c, target_wire) == -1);
  CHECK(inbox_flags(*c, "[read]").find("\\Seen") == std::string::npos);
  CHECK(inbox_flags(*c, "[move]").find("\\Seen") == std::string::npos);
  CHECK(inbox_flags(*c, "[delete]").find("\\Deleted") == std::string::npos);
}

TEST_CASE("actions: a later folder's actions wait for its own batch, not an earlier folder's checkpoint", "[integration][actions]") {
  REQUIRE(test::dovecot_available());
  test::dovecot_fixture dc{{{{"support", "pw-s"}}}};
  dc.seed("support", "INBOX", mail("i1", "[read] zero"));
  dc.seed("support", "INBOX", mail("p1", "plain"));
  dc.seed("support", "Other", mail("o1", "[read] one"));
  dc.seed("support", "Other", mail("o2", "[read] two"));
  auto dir = test::unique_test_dir("actions_folders");
  // Slow commits: INBOX's checkpoint batch is acknowledged only after Other's first batch is
  // fetched and waiting for its own acknowledgement.
  auto cfg = config(dc, "write_delay_ms = 300");
  // "Read it" for every folder.
  cfg.replace(cfg.find("folders = [\"INBOX\"]\nconditions = [ { field = \"subject\", op = \"contains\", value = \"[read]\""),
              std::string("folders = [\"INBOX\"]\n").size(), "");
  std::ofstream(dir / "mailscan.toml") << cfg;
  auto conf = (dir / "mailscan.toml").string();
  auto run = test::run_mailscan({"run", "--config", conf, "--once"});
  INFO("stdout: " << run.out << "\nstderr: " << run.err);
  REQUIRE(run.code == 0);
  auto c = login(dc);
  CHECK(count(*c, "Other", "UNSEEN") == 0);
  CHECK(count(*c, "INBOX", "UNSEEN") == 1);
  for (auto id : {"<i1@test>", "<o1@test>", "<o2@test>"}) {
    auto ex = test::run_mailscan({"explain", "--config", conf, id});
    INFO(ex.out);
    CHECK(ex.out.find("action_result mark_read: because ok") != std::string::npos);
  }
}
