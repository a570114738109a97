// CRM linking end to end below the actors: config -> directory -> link_message (references,
// rules, actions) and the query renderings derived from the stored reasons.
#include "core/rules.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>
#include <unistd.h>

using namespace mscan;

namespace {

const char* base_config = R"(
[engine]
internal_domains = ["corp.example"]
[[mailbox]]
user = "support"
address = "support@corp.example"
[[account]]
name = "Acme Ltd"
domains = ["acme.example"]
parent_domains = true
[[account]]
name = "Beta GmbH"
domains = ["beta.example"]
[[contact]]
email = "bob@acme.example"
name = "Bob"
account = "Acme Ltd"
[[item]]
kind = "opportunity"
reference = "OPP-1042"
[[item_pattern]]
kind = "opportunity"
regex = "OPP-\\d+"
[[rule]]
name = "Support desk"
users = ["support"]
folders = ["INBOX"]
conditions = [ { field = "to", op = "contains", value = "support@corp.example" } ]
actions = [
  { type = "create_contact" },
  { type = "create_or_update_ticket", status = "Open", assignee = "alice", priority = "high", ticket_regex = "TT\\d+" },
  { type = "move", folder = "Processed" },
]
)";

struct fixture {
  core::config cfg;
  core::crm_linker linker;
  explicit fixture(std::string extra = "") {
    auto c = core::parse_config(std::string{base_config} + extra, "/tmp/crm.toml");
    REQUIRE(c.has_value());
    cfg = c.value();
    auto l = core::build_linker(cfg, std::make_shared<const core::directory>(cfg));
    REQUIRE(l.has_value());
    linker = l.value();
  }
  storage::message_record link(const std::string& raw, std::string folder = "INBOX") {
    auto msg = mime::parse_message(raw);
    core::fetch_context ctx{"support", folder, 1, 1, raw.size(), 0};
    return core::link_message(linker, msg, ctx);
  }
};

std::string mail(std::string from, std::string to, std::string subject, std::string body = "Hello\r\n",
                 std::string extra = "") {
  return "From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject +
         "\r\nMessage-ID: <" + std::to_string(std::hash<std::string>{}(from + subject)) +
         "@x>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n" + extra + "\r\n" + body;
}

bool has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

const storage::link_reason* reason(const storage::message_record& r, std::string kind, std::string target = "") {
  for (auto& x : r.reasons)
    if (x.kind == kind && (target.empty() || x.target == target))
      return &x;
  return nullptr;
}

} // namespace

TEST_CASE("parent domains link only when the account says so", "[unit][crm]") {
  fixture f;
  auto r1 = f.link(mail("x@eu.acme.example", "someone@corp.example", "hi"));
  CHECK(has(r1.accounts, "Acme Ltd"));
  auto r2 = f.link(mail("x@eu.beta.example", "someone@corp.example", "hi"));
  CHECK_FALSE(has(r2.accounts, "Beta GmbH"));
  auto r3 = f.link(mail("x@beta.example", "someone@corp.example", "hi"));
  CHECK(has(r3.accounts, "Beta GmbH"));
}

TEST_CASE("free-mail list can be overridden and internal-only mail links no account", "[unit][crm]") {
  fixture f(R"(
[[account]]
name = "Gmail fans"
domains = ["gmail.com"]
)");
  CHECK(f.link(mail("x@gmail.com", "y@corp.example", "hi")).accounts.empty());
  auto c = core::parse_config(std::string{base_config} + R"(
[[account]]
name = "Gmail fans"
domains = ["gmail.com"]
)", "/tmp/crm.toml");
  REQUIRE(c.has_value());
  c.value().engine.freemail_domains = {"yahoo.com"};
  core::directory d(c.value());
  CHECK(d.account_for_domain("gmail.com") != nullptr);
  CHECK_FALSE(d.is_freemail("gmail.com"));
  CHECK(d.is_freemail("yahoo.com"));

  auto internal = f.link(mail("ann@corp.example", "ben@corp.example", "lunch"));
  CHECK(internal.accounts.empty());
  CHECK(internal.contacts.empty());
}

TEST_CASE("references: known items link as whole tokens and unknown ones are alerts", "[unit][crm]") {
  fixture f;
  auto r = f.link(mail("bob@acme.example", "ann@corp.example", "Re: OPP-1042 and OPP-7"));
  CHECK(has(r.items, "OPP-1042"));
  REQUIRE(reason(r, "alert", "OPP-7"));
  CHECK(reason(r, "alert", "OPP-7")->cause == "opportunity");
  auto longer = f.link(mail("bob@acme.example", "ann@corp.example", "OPP-10421"));
  CHECK_FALSE(has(longer.items, "OPP-1042"));
  CHECK(reason(longer, "alert", "OPP-10421"));
}

TEST_CASE("rule actions: unknown sender becomes a contact and a ticket is created with fields", "[unit][crm]") {
  fixture f;
  auto r = f.link(mail("new.person@acme.example", "support@corp.example", "Printer broken",
                       "It is broken, see TT99 in the body\r\n"));
  REQUIRE(reason(r, "rule", "Support desk"));
  CHECK(reason(r, "rule", "Support desk")->cause.find("to contains") != std::string::npos);
  REQUIRE(reason(r, "contact_created", "new.person@acme.example"));
  CHECK(reason(r, "contact_created", "new.person@acme.example")->cause == "Support desk");
  CHECK(reason(r, "contact_account", "new.person@acme.example")->cause == "Acme Ltd");
  CHECK(has(r.contacts, "new.person@acme.example"));
  // The ticket number only in the body: no link to TT99, a new ticket instead.
  CHECK_FALSE(has(r.tickets, "TT99"));
  REQUIRE(r.tickets.size() == 1);
  auto n = r.tickets.front();
  // Numbered by the store (TT1, TT2, ...): the record carries the marker until then.
  CHECK(n == std::string(storage::new_ticket_marker) + "TT");
  CHECK(reason(r, "ticket_status", n)->cause == "Open");
  CHECK(reason(r, "ticket_assignee", n)->cause == "alice");
  CHECK(reason(r, "ticket_priority", n)->cause == "high");
  REQUIRE(reason(r, "action", "move:Processed"));
  // Same message again (a replayed batch): the same ticket number.
  auto again = f.link(mail("new.person@acme.example", "support@corp.example", "Printer broken",
                           "It is broken, see TT99 in the body\r\n"));
  CHECK(again.tickets == r.tickets);
}

TEST_CASE("rule actions: a reply naming a ticket adds a reply-above comment", "[unit][crm]") {
  fixture f;
  auto r = f.link(mail("bob@acme.example", "support@corp.example", "Re: [TT17] Printer",
                       "Still broken.\r\n\r\nOn Mon, 23 Nov 2026, Support wrote:\r\n> old text\r\n",
                       "In-Reply-To: <t17@corp.example>\r\n"));
  CHECK(has(r.tickets, "TT17"));
  auto c = reason(r, "comment", "TT17");
  REQUIRE(c);
  CHECK(c->cause.find("Still broken.") != std::string::npos);
  CHECK(c->cause.find("old text") == std::string::npos);
  // A known sender is not created again.
  CHECK_FALSE(reason(r, "contact_created"));
}

TEST_CASE("rule actions: a reply without a number updates the ticket its thread's root created", "[unit][crm]") {
  fixture f;
  auto root = f.link(mail("new.person@acme.example", "support@corp.example", "Printer broken"));
  REQUIRE(root.tickets.size() == 1);
  auto reply = f.link(mail("new.person@acme.example", "support@corp.example", "Re: Printer broken",
                           "Any news?\r\n", "In-Reply-To: " + root.message_id + "\r\n"));
  // The store resolves the root's ticket (tests/unit/storage/tickets_test.cpp).
  REQUIRE(reply.tickets.size() == 1);
  CHECK(reply.tickets.front() == std::string(storage::root_ticket_marker) + "TT/" + root.key);
  CHECK(reason(reply, "comment", reply.tickets.front()));
  CHECK_FALSE(reason(reply, "ticket_status"));
}

TEST_CASE("rules are scoped to folders and Cc and Bcc link contacts", "[unit][crm]") {
  fixture f;
  auto other = f.link(mail("bob@acme.example", "support@corp.example", "hi"), "Archive");
  CHECK_FALSE(reason(other, "rule"));
  auto cc = f.link(mail("bob@acme.example", "ann@corp.example", "hi", "x\r\n",
                        "Cc: Support <support@corp.example>\r\n"));
  CHECK_FALSE(reason(cc, "rule"));  // the rule looks at To only
  auto bcc = f.link(mail("ann@corp.example", "ben@corp.example", "hi", "x\r\n",
                         "Bcc: bob@acme.example\r\n"));
  CHECK(has(bcc.contacts, "bob@acme.example"));
  CHECK(has(bcc.accounts, "Acme Ltd"));
}

TEST_CASE("a bad rule regex is refused naming the rule", "[unit][crm]") {
  auto c = core::parse_config(std::string{base_config} + R"(
[[rule]]
name = "Broken"
conditions = [ { field = "subject", op = "regex", value = "(urgent" } ]
)", "/tmp/crm.toml");
  REQUIRE(c.has_value());
  auto l = core::build_linker(c.value(), std::make_shared<const core::directory>(c.value()));
  REQUIRE_FALSE(l.has_value());
  CHECK(l.error().message.find("Broken") != std::string::npos);
}

TEST_CASE("directory CSV: kind from a column or from the file name", "[unit][crm]") {
  char tmpl[] = "/tmp/crm_dirXXXXXX";
  REQUIRE(mkdtemp(tmpl));
  std::string dir = tmpl;
  {
    std::ofstream o(dir + "/directory.csv");
    o << "kind,name,domains,email,account,reference\n"
         "account,Acme Ltd,acme.example,,,\n"
         "contact,Bob,,bob@acme.example,Acme Ltd,\n"
         "ticket,,,,,TT5\n";
  }
  {
    std::ofstream o(dir + "/crm.toml");
    o << "[engine]\ndirectory_file = \"directory.csv\"\n";
  }
  auto c = core::load_config(dir + "/crm.toml");
  std::filesystem::remove_all(dir);
  REQUIRE(c.has_value());
  REQUIRE(c.value().accounts.size() == 1);
  CHECK(c.value().accounts[0].domains == std::vector<std::string>{"acme.example"});
  REQUIRE(c.value().contacts.size() == 1);
  CHECK(c.value().contacts[0].account == "Acme Ltd");
  REQUIRE(c.value().items.size() == 1);
  CHECK(c.value().items[0].kind == "ticket");
  CHECK(c.value().items[0].reference == "TT5");
}

TEST_CASE("a mailbox opens folders read-write only when an active rule for it can act on the server", "[unit][crm]") {
  auto rule = [](std::string type, std::vector<std::string> users, bool active = true) {
    core::rule_config r;
    r.name = type;
    r.active = active;
    r.users = std::move(users);
    r.actions.push_back({});
    r.actions.back().type = std::move(type);
    return r;
  };
  CHECK_FALSE(core::has_server_actions({}, "support"));
  CHECK_FALSE(core::has_server_actions({rule("create_contact", {}), rule("create_or_update_ticket", {})}, "support"));
  CHECK(core::has_server_actions({rule("mark_read", {})}, "support"));
  CHECK(core::has_server_actions({rule("move", {"support"})}, "support"));
  CHECK_FALSE(core::has_server_actions({rule("delete", {"ann"})}, "support"));
  CHECK_FALSE(core::has_server_actions({rule("delete", {}, false)}, "support"));
}

TEST_CASE("rule actions: a message parsed without reply_above still gets its comment (the matcher's way)",
          "[unit][crm]") {
  fixture f;
  f.linker.reply_marker = "-- reply above --";  // build_linker's copy of [engine] reply_marker
  const auto raw = mail("bob@acme.example", "support@corp.example", "Re: [TT17] Printer",
                        "Still broken.\r\n-- reply above --\r\nold text\r\n", "In-Reply-To: <t17@corp.example>\r\n");
  mime::parse_options o;
  o.reply_marker = "-- reply above --";
  o.reply_above = false;
  auto msg = mime::parse_message(raw, o);
  CHECK(msg.reply_above.empty());
  core::fetch_context ctx{"support", "INBOX", 1, 1, raw.size(), 0};
  auto r = core::link_message(f.linker, msg, ctx);
  auto c = reason(r, "comment", "TT17");
  REQUIRE(c);
  o.reply_above = true;
  CHECK(c->cause == mime::parse_message(raw, o).reply_above);
  CHECK(c->cause.find("Still broken.") != std::string::npos);
  CHECK(c->cause.find("old text") == std::string::npos);
}
