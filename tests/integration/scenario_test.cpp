// CRM scenarios end to end: a support mailbox on the real dovecot fixture with a rule, the
// real `mailscan` executable, and what an operator then sees in query/explain/status/dry-run.
// The rule's move runs after the messages are tracked (tests/integration/actions_test.cpp
// has the server-side actions in detail).
#include "tests/support/dovecot_fixture.hpp"
#include "tests/support/mailscan_cli.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>

namespace fs = std::filesystem;
using namespace mscan;

namespace {

std::string mail(const std::string& id, const std::string& from, const std::string& to,
                 const std::string& subject, const std::string& body, const std::string& extra = "") {
  return fmt::format("From: {}\r\nTo: {}\r\nSubject: {}\r\nMessage-ID: <{}@test>\r\n"
                     "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n{}\r\n{}",
                     from, to, subject, id, extra, body);
}

const nlohmann::json* find_by(const nlohmann::json& list, const std::string& key, const std::string& value) {
  for (auto& e : list)
    if (e.contains(key) && e.at(key).is_string() && e.at(key) == value)
      return &e;
  return nullptr;
}

} // namespace

TEST_CASE("scenario: a support mailbox with rules creates tickets and contacts and links references", "[integration][scenario]") {
  REQUIRE(test::dovecot_available());
  test::dovecot_fixture dc{{{{"support", "pw-s"}}}};
  // 1. A new request from an unknown sender at a customer: contact + ticket created.
  dc.seed("support", "INBOX", mail("new1", "Nina New <nina@acme.example>", "support@corp.example",
                                   "Printer on fire", "Please help.\r\n"));
  // 2. A reply to ticket TT17: a comment of the reply-above text only.
  dc.seed("support", "INBOX", mail("reply1", "Bob <bob@acme.example>", "support@corp.example",
                                   "Re: [TT17] Printer", "Still broken.\r\n\r\nOn Mon, 23 Nov 2026, Support wrote:\r\n> quoted old text\r\n",
                                   "In-Reply-To: <t17@corp.example>\r\n"));
  // 3. The ticket number only in the body: no link to TT99 (a new ticket instead).
  dc.seed("support", "INBOX", mail("body1", "Bob <bob@acme.example>", "support@corp.example",
                                   "Question", "About TT99 again\r\n"));
  // 4. Cc to support: the rule looks at To only; the Cc'd customer still links.
  dc.seed("support", "INBOX", mail("cc1", "Ann <ann@corp.example>", "ben@corp.example", "FYI",
                                   "x\r\n", "Cc: Bob <bob@acme.example>\r\n"));
  // 5. Internal-only thread: no account link.
  dc.seed("support", "INBOX", mail("int1", "Ann <ann@corp.example>", "ben@corp.example", "Lunch", "x\r\n"));
  // 6. References: OPP-1042 known; OPP-10421 is not OPP-1042 (unknown: an alert).
  dc.seed("support", "INBOX", mail("ref1", "Ann <ann@corp.example>", "ben@corp.example",
                                   "OPP-1042 and OPP-10421", "x\r\n"));

  // 7. A reply (not to support: no rule) to the new request: inherits its ticket by thread.
  dc.seed("support", "INBOX", mail("thr1", "Nina New <nina@acme.example>", "ann@corp.example",
                                   "Re: Printer on fire", "Thanks\r\n", "In-Reply-To: <new1@test>\r\n"));

  auto dir = test::unique_test_dir("scenario");
  std::string cfg = fmt::format(R"([engine]
data_dir = "data"
log_dir = "logs"
days_back = 0
internal_domains = ["corp.example"]

[[mailbox]]
user = "support"
address = "support@corp.example"
host = "127.0.0.1"
port = {}
security = "none"
username = "support"
password = "pw-s"
folders = "INBOX"

{}

[[item_pattern]]
kind = "opportunity"
regex = "OPP-\\d+"

[[rule]]
name = "Support desk"
users = ["support"]
folders = ["INBOX"]
conditions = [ {{ field = "to", op = "contains", value = "support@corp.example" }} ]
actions = [
  {{ type = "create_contact" }},
  {{ type = "create_or_update_ticket", status = "Open", assignee = "alice", ticket_regex = "TT\\d+" }},
  {{ type = "move", folder = "Processed" }},
]
)",
                                dc.imap_port(), test::acme_directory_toml);
  std::ofstream(dir / "mailscan.toml") << cfg;
  auto conf = (dir / "mailscan.toml").string();

  auto run = test::run_mailscan({"run", "--config", conf, "--once"});
  INFO("stdout: " << run.out << "\nstderr: " << run.err);
  REQUIRE(run.code == 0);

  auto tickets = nlohmann::json::parse(test::run_mailscan({"query", "--config", conf, "tickets", "--json"}).out).at("tickets");
  INFO("tickets: " << tickets.dump(2));
  auto t17 = find_by(tickets, "number", "TT17");
  REQUIRE(t17);
  REQUIRE(t17->at("comments").size() == 1);
  auto text = t17->at("comments")[0].at("text").get<std::string>();
  CHECK(text.find("Still broken.") != std::string::npos);
  CHECK(text.find("quoted old text") == std::string::npos);
  CHECK_FALSE(find_by(tickets, "number", "TT99"));
  std::size_t created = 0;
  for (auto& t : tickets)
    if (t.at("status") == "Open") {
      ++created;
      CHECK(t.at("assignee") == "alice");
    }
  CHECK(created == 2);  // the new request and the body-only question
  // Numbered in the order they were tracked (UID order here): TT1, TT2.
  CHECK(find_by(tickets, "number", "TT1"));
  CHECK(find_by(tickets, "number", "TT2"));

  auto contacts = nlohmann::json::parse(test::run_mailscan({"query", "--config", conf, "contacts", "--json"}).out).at("contacts");
  auto nina = find_by(contacts, "email", "nina@acme.example");
  REQUIRE(nina);
  CHECK(nina->at("created_by_rule") == "Support desk");
  CHECK(nina->at("account") == "Acme Ltd");
  CHECK(find_by(contacts, "email", "bob@acme.example")->at("created_by_rule").is_null());

  auto alerts = nlohmann::json::parse(test::run_mailscan({"query", "--config", conf, "alerts", "--json"}).out).at("alerts");
  CHECK(find_by(alerts, "reference", "OPP-10421"));
  CHECK_FALSE(find_by(alerts, "reference", "OPP-1042"));

  auto msgs = nlohmann::json::parse(test::run_mailscan({"query", "--config", conf, "messages", "--json"}).out).at("messages");
  REQUIRE(msgs.size() == 7);
  nlohmann::json new1_tickets, thr1_tickets;
  for (auto& m : msgs) {
    auto id = m.at("message_id").get<std::string>();
    INFO(m.dump());
    if (id == "<new1@test>")
      new1_tickets = m.at("tickets");
    if (id == "<thr1@test>")
      thr1_tickets = m.at("tickets");
    if (id == "<int1@test>")
      CHECK(m.at("accounts").empty());
    if (id == "<cc1@test>")
      CHECK(m.at("accounts") == nlohmann::json::array({"Acme Ltd"}));
    if (id == "<ref1@test>") {
      CHECK(m.at("items") == nlohmann::json::array({"OPP-1042"}));
    }
  }

  REQUIRE(new1_tickets.size() == 1);
  CHECK(new1_tickets[0] == "TT1");
  CHECK(thr1_tickets == new1_tickets);

  auto ex = test::run_mailscan({"explain", "--config", conf, "<new1@test>"});
  REQUIRE(ex.code == 0);
  CHECK(ex.out.find("Support desk") != std::string::npos);
  CHECK(ex.out.find("to contains 'support@corp.example'") != std::string::npos);
  CHECK(ex.out.find("move:Processed") != std::string::npos);

  auto st = nlohmann::json::parse(test::run_mailscan({"status", "--config", conf, "--json"}).out);
  REQUIRE(st.at("rules").size() == 1);
  CHECK(st.at("rules")[0].at("name") == "Support desk");
  CHECK(st.at("rules")[0].at("hits") == 3);
  CHECK(st.at("mailboxes").size() == 1);

  auto dry = test::run_mailscan({"rules", "dry-run", "--config", conf, "--user", "support"});
  REQUIRE(dry.code == 0);
  CHECK(dry.out.find("(update TT17)") != std::string::npos);
  CHECK(dry.out.find("3 rule hit(s) over 7 tracked message(s)") != std::string::npos);

  // The rule moved the three messages it fired on, once they were tracked.
  CHECK(fs::exists(dc.maildir_path("support", "Processed")));
  CHECK(ex.out.find("action_result move:Processed: because ok") != std::string::npos);
}

TEST_CASE("scenario: a rule with an invalid regex refuses 'mailscan run' with exit 2 naming the rule",
          "[integration][scenario]") {
  auto dir = test::unique_test_dir("scenario_badrule");
  std::ofstream(dir / "mailscan.toml") << R"([engine]
data_dir = "data"
log_dir = "logs"
[[rule]]
name = "Broken desk"
conditions = [ { field = "subject", op = "regex", value = "(urgent" } ]
actions = [ { type = "mark_read" } ]
)";
  auto run = test::run_mailscan({"run", "--config", (dir / "mailscan.toml").string(), "--once"});
  CHECK(run.code == 2);
  CHECK(run.err.find("Broken desk") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "data"));  // refused before anything was opened
  auto dry = test::run_mailscan({"rules", "dry-run", "--config", (dir / "mailscan.toml").string()});
  CHECK(dry.code == 2);
}
