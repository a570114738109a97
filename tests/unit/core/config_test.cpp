#include "core/config.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>

using namespace mscan::core;

namespace {
auto parse(std::string_view text) { return parse_config(text, "/etc/mailscan/test.toml"); }

std::string error_of(std::string_view text) {
  auto r = parse(text);
  REQUIRE_FALSE(r.has_value());
  return r.error().message;
}
} // namespace

TEST_CASE("the INTERFACE.md example config loads", "[unit][config]") {
  ::setenv("MSCAN_TEST_ALICE_PW", "s3cret", 1);
  auto r = parse(R"(
[engine]
data_dir = "data"
log_dir = "logs"
poll_interval_s = 60
max_connections = 64
max_connections_per_host = 16
days_back = 14

[[mailbox]]
user = "alice"
address = "alice@corp.example"
host = "127.0.0.1"
port = 993
security = "tls"
ca_file = "certs/ca.pem"
username = "alice"
password_env = "MSCAN_TEST_ALICE_PW"
folders = "INBOX; Sent; Another Folder"
scan = "all"

[[account]]
name = "Acme Ltd"
domains = ["acme.example", "ACME-mail.example"]

[[contact]]
email = "bob@acme.example"
name = "Bob Smith"
account = "Acme Ltd"

[[item]]
kind = "opportunity"
reference = "OPP-1042"

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
)");
  REQUIRE(r.has_value());
  auto& c = r.value();
  CHECK(c.engine.data_dir == "/etc/mailscan/data");
  REQUIRE(c.mailboxes.size() == 1);
  auto& m = c.mailboxes[0];
  CHECK(m.secret == "s3cret");
  CHECK(m.is_set());
  CHECK(m.ca_file == "/etc/mailscan/certs/ca.pem");
  CHECK(m.folders == std::vector<std::string>{"INBOX", "Sent", "Another Folder"});
  CHECK(c.accounts[0].domains[1] == "acme-mail.example");
  REQUIRE(c.rules.size() == 1);
  CHECK(c.rules[0].root.children.size() == 2);
  CHECK(c.rules[0].root.children[1].group == "any");
  CHECK(c.rules[0].actions.size() == 3);
  CHECK(c.rules[0].actions[1].ticket_prefix == "TT");  // the default
}

TEST_CASE("a ticket action's prefix is letters, digits, '-' or '_'", "[unit][config]") {
  auto rule = [](const std::string& prefix) {
    return "[[rule]]\nname = \"r\"\nactions = [ { type = \"create_or_update_ticket\", ticket_prefix = \"" + prefix +
           "\" } ]\n";
  };
  auto ok = parse(rule("INC-"));
  REQUIRE(ok.has_value());
  CHECK(ok.value().rules[0].actions[0].ticket_prefix == "INC-");
  CHECK(error_of(rule("")).find("key 'ticket_prefix'") != std::string::npos);
  CHECK(error_of(rule("T/T")).find("key 'ticket_prefix'") != std::string::npos);
  CHECK(error_of(rule("ABCDEFGHIJKLMNOPQ")).find("key 'ticket_prefix'") != std::string::npos);
}

TEST_CASE("config errors name the file, line and key", "[unit][config]") {
  CHECK(error_of("[engine]\npoll_interval_s = \"often\"\n") ==
        "/etc/mailscan/test.toml:2: [engine]: key 'poll_interval_s': expected an integer");
  CHECK(error_of("[engine]\nmax_conections = 3\n").find(":2: [engine]: unknown key 'max_conections'") !=
        std::string::npos);
  CHECK(error_of("[[mailbox]]\nhost = \"x\"\n").find("key 'user': missing") != std::string::npos);
  CHECK(error_of("[[mailbox]]\nuser = \"a\"\nsecurity = \"ssl\"\n").find("key 'security': expected one of tls | starttls | none") !=
        std::string::npos);
  CHECK(error_of("[[mailbox]]\nuser = \"a\"\n[[mailbox]]\nuser = \"a\"\n").find("appears twice") != std::string::npos);
  CHECK(error_of("[[mailbox]]\nuser = \"a\"\nport = 70000\n").find("out of range") != std::string::npos);
  CHECK(error_of("[engine]\nio_threads = 0\n").find(":2: [engine]: key 'io_threads'") != std::string::npos);
  CHECK(parse("[engine]\nio_threads = 4\n").value().engine.io_threads == 4);
  CHECK(parse("").value().engine.io_threads == 1);
  CHECK(error_of("[engine\n").find("/etc/mailscan/test.toml:1:") == 0);
  CHECK(error_of("[[rule]]\nname = \"r\"\nconditions = [ { field = \"size\", op = \"equals\", value = \"1\" } ]\n")
          .find("unknown field 'size'") != std::string::npos);
  CHECK(error_of("[[contact]]\nemail = \"bob@x.example\"\naccount = \"Nope\"\n").find("unknown account") !=
        std::string::npos);
}

TEST_CASE("a missing secret is Not Set, never a load error, and never printed", "[unit][config]") {
  ::unsetenv("MSCAN_TEST_NOPE");
  auto r = parse("[[mailbox]]\nuser = \"a\"\nhost = \"h\"\npassword_env = \"MSCAN_TEST_NOPE\"\n");
  REQUIRE(r.has_value());
  CHECK_FALSE(r->mailboxes[0].is_set());
  CHECK(r->mailboxes[0].secret_problem == "environment variable MSCAN_TEST_NOPE is not set");
  auto e = error_of("[[mailbox]]\nuser = \"a\"\npassword = \"hunter2\"\nport = \"x\"\n");
  CHECK(e.find("hunter2") == std::string::npos);
}

TEST_CASE("[engine] fetch_text is auto (the rules decide) or always", "[unit][config]") {
  auto def = parse("[engine]\n");
  REQUIRE(def.has_value());
  CHECK(def.value().engine.fetch_text == fetch_text_mode::automatic);
  auto always = parse("[engine]\nfetch_text = \"always\"\n");
  REQUIRE(always.has_value());
  CHECK(always.value().engine.fetch_text == fetch_text_mode::always);
  CHECK(parse("[engine]\nfetch_text = \"auto\"\n").value().engine.fetch_text == fetch_text_mode::automatic);
  CHECK(error_of("[engine]\nfetch_text = \"never\"\n").find("key 'fetch_text': expected \"auto\" or \"always\"") !=
        std::string::npos);
}
