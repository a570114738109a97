// The rules engine: every field and operator, groups, scoping, errors, explain, hostile input.
#include "core/rules.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

using namespace mscan;
using mscan::core::condition_config;
using mscan::core::rule_config;

namespace {

condition_config leaf(std::string field, std::string op, std::string value) {
  condition_config c;
  c.field = std::move(field);
  c.op = std::move(op);
  c.value = std::move(value);
  return c;
}

condition_config group(std::string g, std::vector<condition_config> kids) {
  condition_config c;
  c.group = std::move(g);
  c.children = std::move(kids);
  return c;
}

rule_config rule(std::string name, std::vector<condition_config> conds, std::string match = "all") {
  rule_config r;
  r.name = std::move(name);
  r.root = group(std::move(match), std::move(conds));
  core::action_config a;
  a.type = "mark_read";
  r.actions.push_back(a);
  return r;
}

mime::address addr(std::string name, std::string email) {
  mime::address a;
  a.display_name = std::move(name);
  a.email = email;
  a.normalized = email;
  std::transform(a.normalized.begin(), a.normalized.end(), a.normalized.begin(), ::tolower);
  return a;
}

mime::message sample() {
  mime::message m;
  m.subject = "Urgent: printer on fire (OPP-1042)";
  m.from = {addr("Bob Smith", "bob@acme.example")};
  m.to = {addr("", "support@corp.example"), addr("Alice", "alice@corp.example")};
  m.cc = {addr("Carol", "carol@partner.example")};
  m.body_text = "Hello,\nthe printer in room 4 is on fire again.\nRegards, Bob";
  m.date = 1795687200;  // 2026-11-26T10:00:00Z
  return m;
}

core::compiled_rules compile(const std::vector<rule_config>& rules) {
  auto c = core::compile_rules(rules);
  INFO((c ? std::string() : c.error().message));
  REQUIRE(c);
  return std::move(*c);
}

// Whether a single-condition rule fires on `m`.
bool fires(condition_config c, const mime::message& m, std::string_view user = "alice",
           std::string_view folder = "INBOX") {
  auto rs = compile({rule("r", {std::move(c)})});
  return !core::evaluate(rs, m, user, folder).empty();
}

} // namespace

TEST_CASE("string operators on the subject are case-insensitive", "[unit]") {
  auto m = sample();
  CHECK(fires(leaf("subject", "contains", "PRINTER ON FIRE"), m));
  CHECK_FALSE(fires(leaf("subject", "contains", "toner"), m));
  CHECK(fires(leaf("subject", "not_contains", "toner"), m));
  CHECK_FALSE(fires(leaf("subject", "not_contains", "printer"), m));
  CHECK(fires(leaf("subject", "equals", "urgent: PRINTER on fire (opp-1042)"), m));
  CHECK_FALSE(fires(leaf("subject", "equals", "urgent"), m));
  CHECK(fires(leaf("subject", "not_equals", "urgent"), m));
  CHECK_FALSE(fires(leaf("subject", "not_equals", "Urgent: printer on fire (OPP-1042)"), m));
  CHECK(fires(leaf("subject", "starts_with", "URGENT:"), m));
  CHECK_FALSE(fires(leaf("subject", "starts_with", "printer"), m));
  CHECK(fires(leaf("subject", "ends_with", "(opp-1042)"), m));
  CHECK_FALSE(fires(leaf("subject", "ends_with", "urgent"), m));
}

TEST_CASE("non-ASCII values fold case too", "[unit]") {
  auto m = sample();
  m.subject = "ÄNDERUNG der Bestellung";
  CHECK(fires(leaf("subject", "contains", "änderung"), m));
  CHECK(fires(leaf("subject", "starts_with", "Änderung DER"), m));
}

TEST_CASE("values are literals for string operators, patterns only for regex", "[unit]") {
  auto m = sample();
  m.subject = "price: $5.00 (a+b)*";
  CHECK(fires(leaf("subject", "contains", "$5.00 (a+b)*"), m));
  CHECK_FALSE(fires(leaf("subject", "contains", "$5x00"), m));
  CHECK(fires(leaf("subject", "regex", "\\$\\d\\.\\d\\d"), m));
}

TEST_CASE("regex is RE2 as written: case-sensitive unless (?i), unanchored unless anchored", "[unit]") {
  auto m = sample();
  CHECK(fires(leaf("subject", "regex", "OPP-\\d+"), m));
  CHECK_FALSE(fires(leaf("subject", "regex", "urgent"), m));
  CHECK(fires(leaf("subject", "regex", "(?i)urgent"), m));
  CHECK_FALSE(fires(leaf("subject", "regex", "^printer"), m));
  CHECK(fires(leaf("subject", "regex", "fire \\(OPP-\\d+\\)$"), m));
  CHECK(fires(leaf("body", "regex", "room \\d+"), m));
  // An alternation cannot leak into the other patterns of the same field's set.
  auto rs = compile({rule("alt", {leaf("subject", "regex", "nomatch|alsonot")}),
                     rule("lit", {leaf("subject", "contains", "printer")})});
  auto hits = core::evaluate(rs, m, "alice", "INBOX");
  REQUIRE(hits.size() == 1);
  CHECK(hits[0].name == "lit");
}

TEST_CASE("address fields match each address as 'Name <email>' and as the bare email", "[unit]") {
  auto m = sample();
  CHECK(fires(leaf("from", "equals", "bob@acme.example"), m));
  CHECK(fires(leaf("from", "equals", "BOB SMITH <bob@acme.example>"), m));
  CHECK(fires(leaf("from", "starts_with", "bob smith"), m));
  CHECK(fires(leaf("from", "starts_with", "bob@"), m));
  CHECK(fires(leaf("from", "ends_with", "@acme.example"), m));
  CHECK(fires(leaf("from", "ends_with", "@ACME.example>"), m));
  CHECK_FALSE(fires(leaf("from", "equals", "bob"), m));
  CHECK(fires(leaf("to", "equals", "support@corp.example"), m));
  CHECK(fires(leaf("to", "contains", "alice"), m));
  CHECK(fires(leaf("cc", "ends_with", "partner.example"), m));
  CHECK(fires(leaf("from", "regex", "^Bob Smith <"), m));
  CHECK_FALSE(fires(leaf("bcc", "contains", "@"), m));
}

TEST_CASE("not_ operators on address fields hold only when no address matches", "[unit]") {
  auto m = sample();
  CHECK_FALSE(fires(leaf("to", "not_contains", "alice"), m));  // one of two matches
  CHECK(fires(leaf("to", "not_contains", "bob"), m));
  CHECK_FALSE(fires(leaf("to", "not_equals", "support@corp.example"), m));
  CHECK(fires(leaf("to", "not_equals", "support"), m));
  CHECK(fires(leaf("bcc", "not_contains", "anything"), m));  // no Bcc at all
  CHECK(fires(leaf("bcc", "not_equals", ""), m));
}

TEST_CASE("body, folder and has_attachment", "[unit]") {
  auto m = sample();
  CHECK(fires(leaf("body", "contains", "ROOM 4"), m));
  CHECK(fires(leaf("body", "not_contains", "water"), m));
  CHECK(fires(leaf("body", "ends_with", "regards, bob"), m));
  m.body_text += "\r\n\r\n";
  CHECK(fires(leaf("body", "ends_with", "regards, bob"), m));  // trailing whitespace ignored
  m.subject = "  padded subject\t";
  CHECK(fires(leaf("subject", "equals", "padded subject"), m));
  CHECK(fires(leaf("folder", "equals", "inbox"), m, "alice", "INBOX"));
  CHECK_FALSE(fires(leaf("folder", "equals", "inbox"), m, "alice", "INBOX/Sub"));
  CHECK(fires(leaf("folder", "starts_with", "INBOX/"), m, "alice", "INBOX/Sub"));

  CHECK(fires(leaf("has_attachment", "equals", "false"), m));
  CHECK_FALSE(fires(leaf("has_attachment", "equals", "true"), m));
  mime::attachment logo;
  logo.name = "logo.png";
  logo.is_inline = true;
  m.attachments.push_back(logo);
  CHECK_FALSE(fires(leaf("has_attachment", "equals", "false"), m));  // inline without Content-ID counts
  m.attachments.back().content_id = "<logo@x>";
  CHECK(fires(leaf("has_attachment", "equals", "false"), m));  // an HTML body's embedded logo does not
  mime::attachment pdf;
  pdf.name = "quote.pdf";
  m.attachments.push_back(pdf);
  CHECK(fires(leaf("has_attachment", "equals", "TRUE"), m));
  CHECK(fires(leaf("has_attachment", "not_equals", "false"), m));
  CHECK_FALSE(fires(leaf("has_attachment", "not_equals", "true"), m));
}

TEST_CASE("date: before/after, string operators on ISO 8601, missing dates", "[unit]") {
  auto m = sample();  // 2026-11-26T10:00:00Z
  CHECK(fires(leaf("date", "after", "2026-11-26"), m));
  CHECK_FALSE(fires(leaf("date", "before", "2026-11-26"), m));
  CHECK(fires(leaf("date", "before", "2026-11-27"), m));
  CHECK(fires(leaf("date", "before", "2026-11-26T10:00:01Z"), m));
  CHECK_FALSE(fires(leaf("date", "before", "2026-11-26T10:00:00Z"), m));
  CHECK_FALSE(fires(leaf("date", "after", "2026-11-26T10:00:00Z"), m));
  CHECK(fires(leaf("date", "before", "2026-11-26T11:00:00+00:30"), m));   // 10:30Z
  CHECK_FALSE(fires(leaf("date", "after", "2026-11-26T11:00:00+00:30"), m));
  CHECK(fires(leaf("date", "after", "Thu, 26 Nov 2026 09:00:00 +0000"), m));
  CHECK(fires(leaf("date", "starts_with", "2026-11-26T10"), m));
  CHECK(fires(leaf("date", "regex", "^2026-11-\\d\\d"), m));

  m.date.reset();
  CHECK_FALSE(fires(leaf("date", "before", "2100-01-01"), m));
  CHECK_FALSE(fires(leaf("date", "after", "1970-01-01"), m));
  CHECK_FALSE(fires(leaf("date", "contains", "20"), m));
  CHECK(fires(leaf("date", "not_contains", "20"), m));
}

TEST_CASE("nested any/all groups", "[unit]") {
  auto m = sample();
  // all( to contains support, any( subject regex (?i)urgent, from ends_with @acme.example ) )
  auto spec = [](std::string subj_re, std::string from_end) {
    return rule("desk", {leaf("to", "contains", "support@corp.example"),
                         group("any", {leaf("subject", "regex", subj_re),
                                       leaf("from", "ends_with", from_end)})});
  };
  auto run = [&](rule_config r) { return core::evaluate(compile({r}), m, "support", "INBOX").size(); };
  CHECK(run(spec("(?i)urgent", "@acme.example")) == 1);
  CHECK(run(spec("(?i)urgent", "@nowhere.example")) == 1);
  CHECK(run(spec("nomatch", "@acme.example")) == 1);
  CHECK(run(spec("nomatch", "@nowhere.example")) == 0);
  // any at the top, all nested two levels down
  auto deep = rule("deep",
                   {leaf("subject", "contains", "nothing here"),
                    group("all", {leaf("body", "contains", "fire"),
                                  group("any", {leaf("cc", "contains", "nobody"),
                                                leaf("date", "after", "2020-01-01")})})},
                   "any");
  CHECK(run(deep) == 1);
  auto deep_no = rule("deep",
                      {leaf("subject", "contains", "nothing here"),
                       group("all", {leaf("body", "contains", "fire"),
                                     group("any", {leaf("cc", "contains", "nobody"),
                                                   leaf("date", "before", "2020-01-01")})})},
                      "any");
  CHECK(run(deep_no) == 0);
  // negations inside groups (rules with no guard at all)
  CHECK(run(rule("neg", {leaf("subject", "not_contains", "x-spam"), leaf("cc", "not_contains", "spam")})) == 1);
  CHECK(run(rule("negany", {leaf("subject", "not_contains", "urgent"), leaf("cc", "not_contains", "carol")}, "any")) == 0);
}

TEST_CASE("a rule without conditions fires for every message in scope", "[unit]") {
  auto m = sample();
  rule_config r;
  r.name = "all mail";
  CHECK(core::evaluate(compile({r}), m, "alice", "INBOX").size() == 1);
}

TEST_CASE("rules apply only to their users and folders, inactive rules never", "[unit]") {
  auto m = sample();
  auto scoped = rule("scoped", {leaf("subject", "contains", "printer")});
  scoped.users = {"support", "alice"};
  scoped.folders = {"INBOX"};
  auto everyone = rule("everyone", {leaf("subject", "contains", "printer")});
  auto off = rule("off", {leaf("subject", "contains", "printer")});
  off.active = false;
  auto rs = compile({scoped, off, everyone});
  CHECK(rs.stats().rules == 2);

  auto names = [&](std::string_view user, std::string_view folder) {
    std::vector<std::string> out;
    for (auto& h : core::evaluate(rs, m, user, folder))
      out.emplace_back(h.name);
    return out;
  };
  CHECK(names("support", "INBOX") == std::vector<std::string>{"scoped", "everyone"});
  CHECK(names("alice", "INBOX") == std::vector<std::string>{"scoped", "everyone"});
  CHECK(names("bob", "INBOX") == std::vector<std::string>{"everyone"});
  CHECK(names("support", "Sent") == std::vector<std::string>{"everyone"});
  CHECK(names("support", "inbox") == std::vector<std::string>{"scoped", "everyone"});  // INBOX in any case
  CHECK(names("support", "INBOX/Sub") == std::vector<std::string>{"everyone"});
  // rule_index is the position in the configured vector (inactive rules count)
  auto hits = core::evaluate(rs, m, "support", "INBOX");
  REQUIRE(hits.size() == 2);
  CHECK(hits[0].rule_index == 0);
  CHECK(hits[1].rule_index == 2);
}

TEST_CASE("hits carry ordered actions and the conditions that fired", "[unit]") {
  auto m = sample();
  m.body_text = std::string(500, 'x') + " the printer is on fire " + std::string(500, 'y');
  auto r = rule("desk", {leaf("to", "equals", "support@corp.example"),
                         group("any", {leaf("subject", "regex", "nomatch"),
                                       leaf("from", "ends_with", "@acme.example"),
                                       leaf("body", "contains", "printer")}),
                         leaf("cc", "not_contains", "spam"), leaf("body", "contains", "ON FIRE")});
  r.actions.clear();
  for (std::string t : {"create_contact", "create_or_update_ticket", "move"}) {
    core::action_config a;
    a.type = t;
    if (t == "move")
      a.folder = "Processed";
    if (t == "create_or_update_ticket")
      a.ticket_regex = "TT\\d+";
    r.actions.push_back(a);
  }
  auto rs = compile({r});
  auto hits = core::evaluate(rs, m, "support", "INBOX");
  REQUIRE(hits.size() == 1);
  const auto& h = hits[0];
  REQUIRE(h.actions.size() == 3);
  CHECK(h.actions[0].type == "create_contact");
  CHECK(h.actions[1].type == "create_or_update_ticket");
  CHECK(h.actions[2].folder == "Processed");
  REQUIRE(h.tickets.size() == 3);
  CHECK(h.tickets[1].find("Re: [TT42] printer") == std::optional<std::string>("TT42"));
  CHECK(h.tickets[0].find("Re: [TT42] printer") == std::nullopt);

  REQUIRE(h.because.size() == 4);
  CHECK(h.because[0].path == "conditions[0]");
  CHECK(h.because[0].field == "to");
  CHECK(h.because[0].matched == "support@corp.example");
  CHECK(h.because[1].path == "conditions[1].any[1]");  // the first alternative that held
  CHECK(h.because[1].matched == "bob@acme.example");  // the form that ends with it
  CHECK(h.because[2].path == "conditions[2]");
  CHECK(h.because[2].op == "not_contains");
  CHECK(h.because[2].matched.empty());
  CHECK(h.because[3].path == "conditions[3]");
  CHECK(h.because[3].matched.find("on fire") != std::string::npos);
  CHECK(h.because[3].matched.size() < 250);  // an excerpt, not the body
}

TEST_CASE("invalid regexes, dates and operators are errors naming the rule and condition", "[unit]") {
  auto err = [](std::vector<rule_config> rs) {
    auto c = core::compile_rules(rs);
    REQUIRE_FALSE(c);
    return c.error().message;
  };
  auto e = err({rule("fine", {leaf("subject", "contains", "a")}),
                rule("Support desk", {leaf("to", "contains", "x"),
                                      group("any", {leaf("subject", "regex", "(urgent")})})});
  CHECK(e.find("rule 'Support desk'") != std::string::npos);
  CHECK(e.find("conditions[1].any[0]") != std::string::npos);
  CHECK(e.find("subject regex '(urgent'") != std::string::npos);
  CHECK(e.find("missing )") != std::string::npos);

  e = err({rule("dates", {leaf("date", "before", "2026-02-30")})});
  CHECK(e.find("rule 'dates': conditions[0]") != std::string::npos);
  CHECK(e.find("invalid date") != std::string::npos);
  CHECK(err({rule("d2", {leaf("date", "after", "yesterday")})}).find("invalid date") != std::string::npos);
  CHECK(err({rule("d3", {leaf("subject", "before", "2026-01-01")})}).find("only to the date") != std::string::npos);
  CHECK(err({rule("a", {leaf("has_attachment", "contains", "true")})}).find("rule 'a'") != std::string::npos);
  CHECK(err({rule("a", {leaf("has_attachment", "equals", "yes")})}).find("true or false") != std::string::npos);
  CHECK(err({rule("f", {leaf("sender", "equals", "x")})}).find("unknown field 'sender'") != std::string::npos);
  CHECK(err({rule("o", {leaf("subject", "like", "x")})}).find("unknown operator 'like'") != std::string::npos);
  // Backreferences are not RE2 (they would make matching super-linear).
  CHECK(err({rule("br", {leaf("body", "regex", "(a)\\1")})}).find("rule 'br'") != std::string::npos);

  auto t = rule("tickets", {leaf("subject", "contains", "x")});
  t.actions[0].type = "create_or_update_ticket";
  t.actions[0].ticket_regex = "TT[0-9";
  e = err({t});
  CHECK(e.find("rule 'tickets': actions[0]") != std::string::npos);
  CHECK(e.find("ticket_regex") != std::string::npos);

  // An inactive rule is not compiled, so its errors do not block the config.
  auto off = rule("off", {leaf("subject", "regex", "(")});
  off.active = false;
  CHECK(core::compile_rules({off}));
}

TEST_CASE("hostile input stays linear: 1 MB of 'a' against (a+)+$", "[unit]") {
  auto m = sample();
  m.subject = std::string(1 << 20, 'a') + "!";
  m.body_text = m.subject;
  auto rs = compile({rule("evil", {leaf("subject", "regex", "(a+)+$")}),
                     rule("evil body", {leaf("body", "regex", "^(a|aa)+$")}),
                     rule("ok", {leaf("subject", "regex", "(a+)+!$")})});
  auto hits = core::evaluate(rs, m, "alice", "INBOX");  // a backtracking engine never returns
  REQUIRE(hits.size() == 1);
  CHECK(hits[0].name == "ok");
}

TEST_CASE("thousands of rules: only matching ones fire, in order", "[unit]") {
  std::vector<rule_config> rules;
  for (int i = 0; i < 2000; ++i) {
    auto k = std::to_string(i);
    switch (i % 4) {
      case 0: rules.push_back(rule("s" + k, {leaf("subject", "contains", "project-" + k + " ")})); break;
      case 1: rules.push_back(rule("f" + k, {leaf("from", "ends_with", "@customer" + k + ".example")})); break;
      case 2:
        rules.push_back(rule("r" + k, {leaf("subject", "regex", "\\bCASE-" + k + "\\b"),
                                       leaf("to", "contains", "support")}));
        break;
      default:
        rules.push_back(rule("n" + k, {leaf("body", "contains", "order " + k),
                                       leaf("subject", "not_contains", "newsletter")}));
    }
  }
  auto rs = compile(rules);
  CHECK(rs.stats().rules == 2000);
  CHECK(rs.stats().unguarded_rules == 0);
  auto m = sample();
  m.subject = "about project-8 and CASE-2 and CASE-1998";
  m.from = {addr("", "x@customer5.example")};
  m.body_text = "your order 7 and order 11 shipped";
  std::vector<std::string> names;
  for (auto& h : core::evaluate(rs, m, "u", "INBOX"))
    names.emplace_back(h.name);
  CHECK(names == std::vector<std::string>{"r2", "f5", "n7", "s8", "n11", "r1998"});
  m.subject = "newsletter: project-8 now";
  names.clear();
  for (auto& h : core::evaluate(rs, m, "u", "INBOX"))
    names.emplace_back(h.name);
  CHECK(names == std::vector<std::string>{"f5", "s8"});
}

TEST_CASE("a parsed message goes through the rules", "[unit]") {
  std::string raw =
      "From: =?UTF-8?Q?J=C3=B6rg?= <joerg@acme.example>\r\n"
      "To: support@corp.example\r\n"
      "Subject: =?UTF-8?Q?Dringend:_Anfrage?=\r\n"
      "Date: Tue, 24 Nov 2026 08:00:00 +0100\r\n"
      "\r\n"
      "Bitte anrufen.\r\n";
  auto m = mime::parse_message(raw);
  auto rs = compile({rule("de", {leaf("from", "equals", "jörg <JOERG@acme.example>"),
                                 leaf("subject", "starts_with", "dringend"),
                                 leaf("date", "starts_with", "2026-11-24T07:00"),
                                 leaf("body", "contains", "anrufen")})});
  CHECK(core::evaluate(rs, m, "support", "INBOX").size() == 1);
}

TEST_CASE("a tiny regex memory budget never changes the result", "[unit]") {
  // With little memory RE2's DFA keeps resetting its cache (and, were it to give up, evaluate()
  // tests each pattern alone instead of missing matches). Every budget that compiles must
  // agree with the default.
  std::vector<rule_config> rules;
  for (int i = 0; i < 300; ++i) {
    auto k = std::to_string(i);
    rules.push_back(rule("r" + k, {leaf("body", "regex", "w" + k + "[a-z]{0,3}\\d{2}x")}));
    // "a" then 12 letters: a DFA needs up to 2^12 states for it over random letters.
    if (i < 20)
      rules.push_back(rule("x" + k, {leaf("body", "regex", std::string(1, char('a' + i)) + "[a-z]{12}" + k + "!")}));
    rules.push_back(rule("c" + k, {leaf("body", "contains", "token" + k + "end")}));
  }
  auto m = sample();
  std::string body;
  for (int i = 0; i < 20000; ++i)
    body += "w" + std::to_string(i % 400) + std::string(static_cast<std::size_t>(i % 4), 'q') +
            std::to_string(10 + i % 90) + (i % 3 ? "x " : "y ") + "token" + std::to_string(i % 997) +
            (i % 5 ? "end " : "nd ");
  std::uint32_t seed = 12345;
  for (int i = 0; i < 60000; ++i) {
    seed = seed * 1103515245u + 12345u;
    body += static_cast<char>('a' + (seed >> 16) % 26);
    if (i % 5000 == 0)
      body += std::to_string(i % 20) + "! ";
  }
  m.body_text = body;
  auto names = [&](const core::compiled_rules& rs) {
    std::vector<std::string> out;
    for (auto& h : core::evaluate(rs, m, "u", "INBOX"))
      out.emplace_back(h.name);
    return out;
  };
  auto expected_names = names(compile(rules));
  CHECK(expected_names.size() > 300);
  int compiled_budgets = 0;
  // 300 KiB compiles but leaves the DFA so little cache that it resets all the time; 256 KiB
  // does not compile (an error naming the budget, never a half-working set).
  for (std::int64_t budget : {std::int64_t{1} << 30, std::int64_t{4} << 20, std::int64_t{300} << 10,
                              std::int64_t{256} << 10}) {
    core::compile_options o;
    o.max_mem_per_field = budget;
    auto rs = core::compile_rules(rules, o);
    if (!rs) {
      CHECK(rs.error().message.find("memory budget") != std::string::npos);
      continue;
    }
    ++compiled_budgets;
    CHECK(names(*rs) == expected_names);
  }
  CHECK(compiled_budgets >= 2);
}

TEST_CASE("explain excerpts come from the text the rule saw", "[unit]") {
  auto m = sample();
  m.body_text = "\r\n\r\nHello team,\r\nplease call me.";
  auto rs = compile({rule("greeting", {leaf("body", "starts_with", "hello"), leaf("body", "regex", "call\\s+me")})});
  auto hits = core::evaluate(rs, m, "u", "INBOX");
  REQUIRE(hits.size() == 1);
  REQUIRE(hits[0].because.size() == 2);
  CHECK(hits[0].because[0].matched.rfind("Hello team,", 0) == 0);  // newlines shown as spaces
  CHECK(hits[0].because[1].matched.find("call me") != std::string::npos);
  CHECK(hits[0].because[0].field == "body");
  CHECK(hits[0].because[0].op == "starts_with");
  CHECK(hits[0].because[0].value == "hello");
}

TEST_CASE("compiled rules are shared by copies and outlive the config they came from", "[unit]") {
  core::compiled_rules copy;
  {
    std::vector<rule_config> rules{rule("temp", {leaf("subject", "contains", "printer")})};
    auto rs = compile(rules);
    copy = rs;
  }
  auto hits = core::evaluate(copy, sample(), "u", "INBOX");
  REQUIRE(hits.size() == 1);
  CHECK(hits[0].name == "temp");
  CHECK(hits[0].because[0].value == "printer");
  CHECK(core::evaluate(core::compiled_rules{}, sample(), "u", "INBOX").empty());
}

TEST_CASE("evaluate is safe from several threads on one compiled rule set", "[unit]") {
  std::vector<rule_config> rules;
  for (int i = 0; i < 200; ++i)
    rules.push_back(rule("r" + std::to_string(i), {leaf("subject", "regex", "(?i)printer|fire" + std::to_string(i))}));
  auto rs = compile(rules);
  auto m = sample();
  std::vector<std::size_t> counts(4, 0);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < counts.size(); ++t)
    threads.emplace_back([&, t] {
      for (int k = 0; k < 200; ++k)
        counts[t] += core::evaluate(rs, m, "u", "INBOX").size();
    });
  for (auto& th : threads)
    th.join();
  for (auto c : counts)
    CHECK(c == 200u * 200u);
}

TEST_CASE("unknown groups are errors and invalid UTF-8 in mail is just bytes", "[unit]") {
  auto r = rule("g", {leaf("subject", "contains", "x")});
  r.root.group = "some";
  auto c = core::compile_rules({r});
  REQUIRE_FALSE(c);
  CHECK(c.error().message.find("rule 'g': conditions: unknown group 'some'") != std::string::npos);

  auto m = sample();
  m.subject = std::string("\xff\xfe broken \xc3 bytes URGENT \xe2\x82");
  CHECK(fires(leaf("subject", "contains", "urgent"), m));
  CHECK(fires(leaf("subject", "regex", "broken \\C bytes"), m));
  // RE2 runs in UTF-8 mode: '.' does not match an invalid byte. parse_message never hands
  // out invalid UTF-8 (it substitutes U+FFFD), so this only matters for hand-built messages.
  CHECK_FALSE(fires(leaf("subject", "regex", "broken .* bytes"), m));
  CHECK_FALSE(fires(leaf("subject", "starts_with", "broken"), m));
}

TEST_CASE("rules from the operator's TOML compile and fire (INTERFACE.md example)", "[unit]") {
  auto cfg = core::parse_config(R"(
[[rule]]
name = "Support desk"
users = ["support"]
folders = ["INBOX"]
match = "all"
conditions = [
  { field = "to", op = "contains", value = "support@corp.example" },
  { any = [ { field = "subject", op = "regex", value = "(?i)urgent" },
            { field = "from", op = "ends_with", value = "@acme.example" } ] },
]
actions = [
  { type = "create_contact" },
  { type = "create_or_update_ticket", status = "Open", assignee = "alice", ticket_regex = "TT\\d+" },
  { type = "move", folder = "Processed" },
]

[[rule]]
name = "Bad regex"
active = true
conditions = [ { field = "body", op = "regex", value = "a{2,1}" } ]
)",
                                "/etc/mailscan/rules.toml"  /* names the source only; nothing is read */);
  INFO((cfg ? std::string() : cfg.error().message));
  REQUIRE(cfg);
  REQUIRE(cfg->rules.size() == 2);
  auto bad = core::compile_rules(cfg->rules);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("rule 'Bad regex': conditions[0] (body regex 'a{2,1}')") != std::string::npos);

  cfg->rules.pop_back();
  auto rs = compile(cfg->rules);
  auto m = sample();
  m.subject = "Re: [TT17] printer";
  auto hits = core::evaluate(rs, m, "support", "INBOX");
  REQUIRE(hits.size() == 1);
  CHECK(hits[0].because.size() == 2);
  CHECK(hits[0].because[1].path == "conditions[1].any[1]");
  REQUIRE(hits[0].actions.size() == 3);
  CHECK(hits[0].tickets[1].find(m.subject) == std::optional<std::string>("TT17"));
  CHECK(core::evaluate(rs, m, "alice", "INBOX").empty());
}

TEST_CASE("rules: which configs need message text (header path otherwise)", "[unit]") {
  core::engine_config e;
  std::vector<rule_config> rules;
  CHECK_FALSE(core::text_needed_by(e, rules, "a@corp.example"));
  // Header fields, has_attachment and server actions: the header path suffices.
  rules.push_back(rule("headers", {leaf("subject", "contains", "urgent"), leaf("has_attachment", "equals", "true"),
                                   group("any", {leaf("from", "ends_with", "@acme.example")})}));
  CHECK_FALSE(core::text_needed_by(e, rules, "a@corp.example"));
  // A body condition deep in a group, for one user only.
  auto body = rule("body", {group("any", {leaf("folder", "equals", "INBOX"), leaf("body", "contains", "fire")})});
  body.users = {"b@corp.example"};
  rules.push_back(body);
  CHECK_FALSE(core::text_needed_by(e, rules, "a@corp.example"));
  auto why = core::text_needed_by(e, rules, "b@corp.example");
  REQUIRE(why);
  CHECK(why->find("rule 'body'") != std::string::npos);
  // Inactive: not needed.
  rules.back().active = false;
  CHECK_FALSE(core::text_needed_by(e, rules, "b@corp.example"));
  // A ticket action needs the reply text for its comment.
  auto ticket = rule("tickets", {leaf("subject", "contains", "help")});
  ticket.actions = {core::action_config{}};
  ticket.actions[0].type = "create_or_update_ticket";
  rules.push_back(ticket);
  REQUIRE(core::text_needed_by(e, rules, "a@corp.example"));
  CHECK(core::text_needed_by(e, rules, "a@corp.example")->find("tickets") != std::string::npos);
  rules.pop_back();
  // The operator's override.
  e.fetch_text = core::fetch_text_mode::always;
  CHECK(core::text_needed_by(e, rules, "a@corp.example"));
}
