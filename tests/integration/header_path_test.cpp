// The header path against the real dovecot: with no rule reading message text the mailbox
// fetches headers + BODYSTRUCTURE only, and tracks exactly what the text path tracks.
#include "tests/support/dovecot_fixture.hpp"
#include "tests/support/mailscan_cli.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <fstream>
#include <map>
#include <thread>

namespace fs = std::filesystem;
using namespace mscan;

namespace {

std::string plain(int i) {
  return fmt::format("From: Bob <bob@acme.example>\r\nTo: alice@corp.example\r\nSubject: OPP-1042 update {0}\r\n"
                     "Message-ID: <plain-{0}@acme.example>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n"
                     "line one {0}\r\nline two\r\n",
                     i);
}

std::string with_attachment(int i) {
  return fmt::format("From: stranger{0}@newco.example\r\nTo: alice@corp.example\r\nCc: carol@acme.example\r\n"
                     "Subject: the contract {0}\r\nMessage-ID: <att-{0}@newco.example>\r\n"
                     "In-Reply-To: <plain-{0}@acme.example>\r\nDate: Mon, 23 Nov 2026 11:00:00 +0000\r\n"
                     "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b{0}\"\r\n\r\n"
                     "--b{0}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease sign.\r\n"
                     "--b{0}\r\nContent-Type: application/pdf; name=\"c{0}.pdf\"\r\n"
                     "Content-Disposition: attachment; filename=\"c{0}.pdf\"\r\n"
                     "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJeLjz9MKMSAwIG9iago8PD4+CmVuZG9iago=\r\n"
                     "--b{0}--\r\n",
                     i);
}

std::string config(const test::dovecot_fixture& dc, const fs::path& dir, std::string_view engine_extra,
                   std::string_view rule_conditions) {
  auto conf = dir / "mailscan.toml";
  std::ofstream(conf) << fmt::format(R"([engine]
data_dir = "data"
log_dir = "logs"
days_back = 0
batch_size = 8
info_logging = true
internal_domains = ["corp.example"]
{}

[[mailbox]]
user = "alice"
host = "127.0.0.1"
port = {}
security = "none"
username = "alice"
password = "pw"
folders = "INBOX"

{}

[[rule]]
name = "New senders"
conditions = [ {} ]
actions = [ {{ type = "create_contact" }} ]
)",
                                     engine_extra, dc.imap_port(), test::acme_directory_toml, rule_conditions);
  return conf.string();
}

// message_id -> the whole record `query messages --json` shows.
std::map<std::string, nlohmann::json> tracked(const std::string& conf) {
  auto r = test::run_mailscan({"query", "--config", conf, "messages", "--json"});
  std::map<std::string, nlohmann::json> out;
  if (r.code != 0 || r.out.empty())
    return out;
  auto json = nlohmann::json::parse(r.out);
  for (auto& m : json.at("messages"))
    out[m.at("message_id").get<std::string>()] = m;
  return out;
}

std::string fetch_path(const std::string& conf) {
  auto r = test::run_mailscan({"test-mailbox", "--config", conf, "alice", "--json"});
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  return nlohmann::json::parse(r.out).at("mailboxes").at(0).at("fetch").get<std::string>();
}


template <class Pred>
bool eventually(Pred p) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < until) {
    if (p())
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // polling with a deadline
  }
  return p();
}

} // namespace

TEST_CASE("header path: tracks the same messages, contacts, accounts, items and attachments as the text path",
          "[integration][header_path]") {
  test::dovecot_fixture dc{{{{"alice", "pw"}}}};
  for (int i = 0; i < 12; ++i) {
    dc.seed("alice", "INBOX", plain(i));
    dc.seed("alice", "INBOX", with_attachment(i));
  }
  const std::string has_att = R"({ field = "has_attachment", op = "equals", value = "true" })";
  auto header_dir = test::unique_test_dir("header-path");
  auto text_dir = test::unique_test_dir("header-path-text");
  auto body_dir = test::unique_test_dir("header-path-body");
  auto header_conf = config(dc, header_dir, "", has_att);
  auto text_conf = config(dc, text_dir, "fetch_text = \"always\"", has_att);
  // A body rule brings the text back without any other setting.
  auto body_conf = config(dc, body_dir, "", R"({ field = "body", op = "contains", value = "sign" })");
  CHECK(fetch_path(header_conf) == "headers");
  CHECK(fetch_path(text_conf) == "text");
  CHECK(fetch_path(body_conf) == "text");

  // Dovecot's own counters (one mscan_stats line per finished session; 3 test-mailbox so far).
  REQUIRE(test::run_mailscan({"run", "--config", header_conf, "--once"}).code == 0);
  REQUIRE(dc.wait_for_log("mscan_stats", 4));
  const auto after_header = dc.imap_stats();
  REQUIRE(test::run_mailscan({"run", "--config", text_conf, "--once"}).code == 0);
  REQUIRE(dc.wait_for_log("mscan_stats", 5));
  const auto after_text = dc.imap_stats();
  INFO("header path: hdr " << after_header.fetch_hdr_count << " body " << after_header.fetch_body_count
                           << "; text path: hdr " << after_text.fetch_hdr_count - after_header.fetch_hdr_count
                           << " body " << after_text.fetch_body_count - after_header.fetch_body_count);
  CHECK(after_header.fetch_hdr_count == 24);
  CHECK(after_header.fetch_body_count == 0);  // no text part was read from the server
  CHECK(after_text.fetch_body_count - after_header.fetch_body_count >= 24);  // per FETCH item
  REQUIRE(test::run_mailscan({"run", "--config", body_conf, "--once"}).code == 0);
  CHECK(test::engine_logs(header_dir).find("header_path=1 text_path=0") != std::string::npos);
  CHECK(test::engine_logs(text_dir).find("header_path=0 text_path=1 ([engine] fetch_text") != std::string::npos);

  const auto h = tracked(header_conf), t = tracked(text_conf), b = tracked(body_conf);
  REQUIRE(h.size() == 24);
  REQUIRE(t.size() == 24);
  REQUIRE(b.size() == 24);
  for (auto& [id, rec] : t) {
    INFO(id);
    REQUIRE(h.count(id));
    CHECK(h.at(id) == rec);  // the whole record: subject, addresses, links, attachments, warnings
  }
  // The rules fired on the header path as on the text path: every stranger became a contact.
  CHECK(h.at("<att-3@newco.example>").at("contacts").dump().find("stranger3@newco.example") != std::string::npos);
  CHECK(h.at("<plain-3@acme.example>").at("items").dump().find("OPP-1042") != std::string::npos);
  CHECK(h.at("<att-3@newco.example>").at("attachments").at(0).at("name") == "c3.pdf");
  // The body rule read the text: it fired on the messages that say "sign" only.
  CHECK(b.at("<att-3@newco.example>").at("contacts").dump().find("stranger3@newco.example") != std::string::npos);
}

TEST_CASE("header path: a body rule added by SIGHUP brings the text back, nothing else to do",
          "[integration][header_path]") {
  test::dovecot_fixture dc{{{{"alice", "pw"}}}};
  dc.seed("alice", "INBOX", plain(1));
  auto dir = test::unique_test_dir("header-path-reload");
  auto conf = config(dc, dir, "poll_interval_s = 1",
                     R"({ field = "has_attachment", op = "equals", value = "true" })");
  auto pid = test::spawn_mailscan({"run", "--config", conf}, dir / "run.out");
  REQUIRE(pid > 0);
  CHECK(eventually([&] { return tracked(conf).size() == 1; }));
  CHECK(dc.imap_stats().fetch_body_count == 0);

  std::ofstream(conf, std::ios::app) << R"(
[[rule]]
name = "Signatures"
conditions = [ { field = "body", op = "contains", value = "please sign" } ]
actions = [ { type = "create_contact" } ]
)";
  ::kill(pid, SIGHUP);
  CHECK(eventually([&] { return test::engine_logs(dir).find("config_reloaded") != std::string::npos; }));
  dc.seed("alice", "INBOX",
          "From: Dana <dana@newco.example>\r\nTo: alice@corp.example\r\nSubject: papers\r\n"
          "Message-ID: <sign-1@newco.example>\r\nDate: Mon, 23 Nov 2026 12:00:00 +0000\r\n\r\n"
          "Could you please sign the papers?\r\n");
  // The body rule fired: the text was fetched (no attachment, so the other rule cannot have).
  CHECK(eventually([&] {
    auto t = tracked(conf);
    auto it = t.find("<sign-1@newco.example>");
    return it != t.end() && it->second.at("contacts").dump().find("dana@newco.example") != std::string::npos;
  }));
  ::kill(pid, SIGTERM);
  CHECK(test::wait_exit(pid) == 0);
  CHECK(eventually([&] { return dc.imap_stats().fetch_body_count > 0; }));  // written at each logout
}
