// Reference tokens in subjects and ticket numbers.
#include "core/references.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace mscan;

namespace {

core::reference_matcher matcher(std::vector<core::item_config> items,
                                std::vector<core::reference_pattern> patterns) {
  auto m = core::reference_matcher::build(items, patterns);
  INFO((m ? std::string() : m.error().message));
  REQUIRE(m);
  return std::move(*m);
}

std::vector<std::string> refs(const core::reference_matcher& m, std::string_view subject) {
  std::vector<std::string> out;
  for (auto& h : m.find(subject))
    out.push_back(h.reference + (h.known ? "" : "?"));
  return out;
}

using strings = std::vector<std::string>;

} // namespace

TEST_CASE("references match whole tokens only", "[unit]") {
  auto m = matcher({{"opportunity", "OPP-1042"}, {"ticket", "TT1"}}, {});
  CHECK(refs(m, "Re: OPP-1042 quote") == strings{"OPP-1042"});
  CHECK(refs(m, "OPP-10421").empty());
  CHECK(refs(m, "XOPP-1042").empty());
  CHECK(refs(m, "OPP-1042a").empty());
  CHECK(refs(m, "OPP-1042_2").empty());
  CHECK(refs(m, "[OPP-1042]").empty() == false);
  CHECK(refs(m, "(OPP-1042), TT1.") == strings{"OPP-1042", "TT1"});
  CHECK(refs(m, "OPP-1042-") == strings{"OPP-1042"});  // trailing dash at a sentence end
  CHECK(refs(m, "TT12 TT11 ATT1").empty());
  CHECK(refs(m, "").empty());
}

TEST_CASE("references are case-insensitive, reported once, in the item's spelling", "[unit]") {
  auto m = matcher({{"opportunity", "OPP-1042"}}, {});
  auto hits = m.find("opp-1042 again: OPP-1042");
  REQUIRE(hits.size() == 1);
  CHECK(hits[0].reference == "OPP-1042");
  CHECK(hits[0].kind == "opportunity");
  CHECK(hits[0].known);
  CHECK(hits[0].offset == 0);
}

TEST_CASE("pattern matches without an item are unknown references", "[unit]") {
  auto m = matcher({{"opportunity", "OPP-1042"}, {"ticket", "TT7"}},
                   {{"opportunity", "OPP-\\d+"}, {"ticket", "TT\\d+"}, {"quote", "(?i)q-\\d{4}"}});
  auto hits = m.find("OPP-1042, OPP-99 and TT7 / TT8, q-2024 not Q-12345 nor XOPP-5");
  REQUIRE(hits.size() == 5);
  CHECK((hits[0].reference == "OPP-1042" && hits[0].known && hits[0].kind == "opportunity"));
  CHECK((hits[1].reference == "OPP-99" && !hits[1].known && hits[1].kind == "opportunity"));
  CHECK((hits[2].reference == "TT7" && hits[2].known));
  CHECK((hits[3].reference == "TT8" && !hits[3].known && hits[3].kind == "ticket"));
  CHECK((hits[4].reference == "q-2024" && !hits[4].known && hits[4].kind == "quote"));
  CHECK(hits[3].offset == std::string_view("OPP-1042, OPP-99 and TT7 / ").size());
  // A pattern must cover the whole token.
  CHECK(refs(m, "OPP-12abc TT9x").empty());
}

TEST_CASE("item references that are not one token are reported as unmatchable", "[unit]") {
  auto m = matcher({{"quote", "Q 2024/17"}, {"opportunity", "OPP-1"}, {"project", "PRJ-1-"}, {"x", ""}}, {});
  CHECK(m.unmatchable_references() == strings{"Q 2024/17", "PRJ-1-", ""});
  CHECK(refs(m, "Q 2024/17").empty());
}

TEST_CASE("an invalid reference pattern is an error naming it", "[unit]") {
  auto m = core::reference_matcher::build({}, {{"project", "PRJ-(\\d+"}});
  REQUIRE_FALSE(m);
  CHECK(m.error().message.find("PRJ-(\\d+") != std::string::npos);
  CHECK(m.error().message.find("project") != std::string::npos);
}

TEST_CASE("10,000 items and 10,000 patterns", "[unit]") {
  std::vector<core::item_config> items;
  std::vector<core::reference_pattern> patterns;
  for (int i = 0; i < 10000; ++i) {
    items.push_back({"project", "PRJ" + std::to_string(i) + "-" + std::to_string(i * 7)});
    patterns.push_back({"kind" + std::to_string(i), "K" + std::to_string(i) + "-\\d+"});
  }
  auto m = matcher(items, patterns);
  CHECK(m.item_count() == 10000);
  CHECK(m.pattern_count() == 10000);
  auto hits = m.find("Re: PRJ12-84, K9999-1 and K10000-1 and PRJ12-841 K77-x");
  REQUIRE(hits.size() == 2);
  CHECK((hits[0].reference == "PRJ12-84" && hits[0].known));
  CHECK((hits[1].reference == "K9999-1" && !hits[1].known && hits[1].kind == "kind9999"));
}

TEST_CASE("hostile subjects stay linear", "[unit]") {
  auto m = matcher({{"ticket", "TT1"}}, {{"evil", "(a+)+b"}, {"ticket", "TT\\d+"}});
  std::string subject(1 << 20, 'a');
  CHECK(m.find(subject).empty());
  subject += " TT1";
  CHECK(refs(m, subject) == strings{"TT1"});
  auto t = core::ticket_matcher::compile("(a+)+$");
  REQUIRE(t);
  CHECK(t->find(std::string(1 << 20, 'a') + "!") == std::nullopt);
}

TEST_CASE("ticket_number finds the ticket in the subject as a token", "[unit]") {
  auto tn = [](std::string_view subject, std::string_view re) {
    auto r = core::ticket_number(subject, re);
    REQUIRE(r);
    return r.value().value_or("-");
  };
  CHECK(tn("Re: [TT12] printer", "TT\\d+") == "TT12");
  CHECK(tn("Re: TT12 printer", "TT\\d") == "-");          // TT1 is not a token of TT12
  CHECK(tn("ATT1 and TT3", "TT\\d") == "TT3");            // the first match that is a token
  CHECK(tn("Ticket [#4711] again", "\\[#(\\d+)\\]") == "4711");  // group 1 when present
  CHECK(tn("no ticket here", "TT\\d+") == "-");
  CHECK(tn("", "TT\\d+") == "-");
  auto bad = core::ticket_number("TT1", "TT(");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("ticket_regex 'TT('") != std::string::npos);
}
