#include "core/matcher.hpp"

#include <catch2/catch.hpp>

using namespace mscan;

namespace {
core::config directory_config() {
  auto r = core::parse_config(R"(
[engine]
internal_domains = ["corp.example"]
[[mailbox]]
user = "alice"
address = "alice@corp.example"
[[account]]
name = "Acme Ltd"
domains = ["acme.example"]
[[account]]
name = "Gmail Inc"
domains = ["gmail.com"]
[[contact]]
email = "Bob@Acme.example"
account = "Acme Ltd"
[[contact]]
email = "shared@acme.example"
[[contact]]
email = "SHARED@acme.example"
[[item]]
kind = "opportunity"
reference = "OPP-1042"
)",
                              "/tmp/x.toml");
  REQUIRE(r.has_value());
  return r.value();
}
} // namespace

TEST_CASE("subject tokens match references exactly", "[unit][matcher]") {
  auto t = core::subject_tokens("Re: quote OPP-1042, not OPP-10421 (TT7)-");
  CHECK(std::find(t.begin(), t.end(), "OPP-1042") != t.end());
  CHECK(std::find(t.begin(), t.end(), "OPP-10421") != t.end());
  CHECK(std::find(t.begin(), t.end(), "TT7") != t.end());
}

TEST_CASE("links contacts, accounts, items and the user, with reasons", "[unit][matcher]") {
  auto cfg = directory_config();
  core::directory dir{cfg};
  auto msg = mime::parse_message("From: Bob <bob@acme.example>\r\nTo: alice@corp.example, x@gmail.com, "
                                 "shared@acme.example\r\nSubject: Re: OPP-1042 and OPP-10421\r\n"
                                 "Message-ID: <m1@acme.example>\r\n\r\nhi\r\n");
  auto r = core::match_message(dir, msg, {"alice", "INBOX", 7, 42, 100, 0});
  CHECK(r.contacts.size() == 3);  // bob + both contacts sharing an address
  CHECK(r.accounts == std::vector<std::string>{"Acme Ltd"});  // never gmail.com by domain
  CHECK(r.items == std::vector<std::string>{"OPP-1042"});
  CHECK(r.users == std::vector<std::string>{"alice"});
  CHECK(r.sightings.size() == 1);
  CHECK(!r.key.empty());
  bool ambiguity_flagged = false;
  for (auto& w : r.warnings)
    ambiguity_flagged |= w.find("ambiguous contact") != std::string::npos;
  CHECK(ambiguity_flagged);
}
