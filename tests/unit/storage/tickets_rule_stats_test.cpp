// store::write() allocates sequential ticket numbers and counts rule hits in the same batch.
#include "storage/store.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <ctime>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "storage/codec.hpp"
#include "temp_dir.hpp"

using namespace mscan::storage;
using mscan::storage::test::temp_dir;

namespace {

std::unique_ptr<store> open_ok(const std::filesystem::path& dir) {
  auto s = store::open(dir);
  if (!s) FAIL("open failed: " << s.error().message);
  return std::move(*s);
}

// A message a rule fired on and that creates a ticket (as core::link_message writes it).
message_record ticket_msg(const std::string& id, const std::string& rule = "Support",
                          const std::string& prefix = "TT") {
  message_record m;
  m.message_id = "<" + id + ">";
  m.key = "<" + id + ">";
  m.subject = "s " + id;
  m.date = 1700000000;
  m.sightings = {{"support", "INBOX", 1, 1}};
  m.users = {"support"};
  const auto marker = std::string(new_ticket_marker) + prefix;
  m.tickets = {marker};
  m.reasons = {{"rule", rule, "conditions[0] to contains 'support'"},
               {"ticket", marker, "rule '" + rule + "': created"},
               {"ticket_status", marker, "Open"}};
  return m;
}

} // namespace

TEST_CASE("tickets are numbered TT1, TT2, ... and a replay keeps its number", "[unit][storage][tickets]") {
  temp_dir dir;
  auto db = open_ok(dir.path());
  std::vector<message_record> batch{ticket_msg("a@x"), ticket_msg("b@x")};
  REQUIRE(db->write(batch, {}));
  REQUIRE(db->write(std::vector{ticket_msg("c@x")}, {}));
  CHECK(db->find_by_key("<a@x>")->tickets == std::vector<std::string>{"TT1"});
  CHECK(db->find_by_key("<b@x>")->tickets == std::vector<std::string>{"TT2"});
  auto c = db->find_by_key("<c@x>");
  CHECK(c->tickets == std::vector<std::string>{"TT3"});
  // Every reason naming the ticket names the number, not the marker.
  for (auto& r : c->reasons)
    CHECK(r.target.find('@') == std::string::npos);
  // Replays (same message again, also in the same batch twice) allocate nothing.
  std::vector<message_record> again{ticket_msg("a@x"), ticket_msg("c@x"), ticket_msg("c@x")};
  REQUIRE(db->write(again, {}));
  CHECK(db->find_by_key("<a@x>")->tickets == std::vector<std::string>{"TT1"});
  CHECK(db->find_by_key("<c@x>")->tickets == std::vector<std::string>{"TT3"});
  REQUIRE(db->write(std::vector{ticket_msg("d@x"), ticket_msg("e@x", "Other", "INC")}, {}));
  CHECK(db->find_by_key("<d@x>")->tickets == std::vector<std::string>{"TT4"});
  CHECK(db->find_by_key("<e@x>")->tickets == std::vector<std::string>{"INC1"});
}

TEST_CASE("the counter survives a reopen and concurrent writers never share a number", "[unit][storage][tickets]") {
  temp_dir dir;
  {
    auto db = open_ok(dir.path());
    REQUIRE(db->write(std::vector{ticket_msg("a@x")}, {}));
  }
  auto db = open_ok(dir.path());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i)
        (void)db->write(std::vector{ticket_msg(std::to_string(t) + "-" + std::to_string(i) + "@x")}, {});
    });
  for (auto& t : threads) t.join();
  std::set<std::string> numbers;
  for (auto& m : db->query_messages({}))
    for (auto& n : m.tickets) CHECK(numbers.insert(n).second);
  CHECK(numbers.size() == 101);
  CHECK(numbers.count("TT1"));
  CHECK(numbers.count("TT101"));
}

TEST_CASE("a reply without a number gets its thread root's ticket", "[unit][storage][tickets]") {
  temp_dir dir;
  auto db = open_ok(dir.path());
  REQUIRE(db->write(std::vector{ticket_msg("root@x")}, {}));
  auto reply = [](const std::string& id, const std::string& root) {
    message_record m;
    m.message_id = m.key = "<" + id + ">";
    m.sightings = {{"support", "INBOX", 1, 2}};
    const auto marker = std::string(root_ticket_marker) + "TT/" + root;
    m.tickets = {marker};
    m.reasons = {{"ticket", marker, "rule 'Support': reply in the thread of " + root},
                 {"comment", marker, "Any news?"}};
    return m;
  };
  REQUIRE(db->write(std::vector{reply("r1@x", "<root@x>")}, {}));
  auto r1 = db->find_by_key("<r1@x>");
  CHECK(r1->tickets == std::vector<std::string>{"TT1"});
  CHECK(std::count(r1->reasons.begin(), r1->reasons.end(), link_reason{"comment", "TT1", "Any news?"}) == 1);
  // A root the store does not know: a new ticket.
  REQUIRE(db->write(std::vector{reply("r2@x", "<unknown@x>")}, {}));
  CHECK(db->find_by_key("<r2@x>")->tickets == std::vector<std::string>{"TT2"});
  REQUIRE(db->write(std::vector{reply("r2@x", "<unknown@x>")}, {}));
  CHECK(db->find_by_key("<r2@x>")->tickets == std::vector<std::string>{"TT2"});
}

TEST_CASE("rule hits are counted once per message with the time of the write", "[unit][storage][rule_stats]") {
  temp_dir dir;
  auto db = open_ok(dir.path());
  CHECK(db->rule_stats().empty());
  const auto before = std::time(nullptr);
  auto a = ticket_msg("a@x");
  a.reasons.push_back({"rule", "Support", "conditions[1] subject contains 'x'"});  // two conditions
  a.reasons.push_back({"rule", "Other", "no conditions (always holds)"});
  REQUIRE(db->write(std::vector{a, ticket_msg("b@x")}, {}));
  REQUIRE(db->write(std::vector{a}, {}));                       // replay: nothing new
  auto seen_elsewhere = ticket_msg("b@x");
  seen_elsewhere.sightings = {{"ann", "INBOX", 1, 9}};
  REQUIRE(db->write(std::vector{seen_elsewhere}, {}));         // same message: not a new hit
  auto stats = db->rule_stats();
  REQUIRE(stats.size() == 2);
  CHECK(stats[0].name == "Other");
  CHECK(stats[0].hits == 1);
  CHECK(stats[1].name == "Support");
  CHECK(stats[1].hits == 2);
  CHECK(stats[1].last_hit >= before);
  CHECK(stats[1].last_hit <= std::time(nullptr));
}

TEST_CASE("rule stats values round-trip and refuse damage", "[unit][storage][rule_stats]") {
  rule_stat s{"R", 42, -5};
  auto v = codec::encode(s);
  auto back = codec::decode_rule_stat("R", v);
  REQUIRE(back);
  CHECK(*back == s);
  CHECK_FALSE(codec::decode_rule_stat("R", v.substr(0, v.size() - 1)));
  CHECK_FALSE(codec::decode_rule_stat("R", v + "x"));
  CHECK_FALSE(codec::decode_rule_stat("R", ""));
}
