// The POP3 checkpoint: UIDL keys written (and removed) in the same batch as the messages.
#include "storage/codec.hpp"
#include "storage/keys.hpp"
#include "storage/store.hpp"
#include "tests/unit/storage/temp_dir.hpp"

#include <catch2/catch.hpp>

using namespace mscan::storage;

TEST_CASE("pop3_uidls: uid codec and key round trip", "[unit][storage]") {
  auto v = codec::encode_uid(4'000'000'000u);
  auto back = codec::decode_uid(v);
  REQUIRE(back);
  CHECK(*back == 4'000'000'000u);
  for (std::size_t n = 0; n < v.size(); ++n)
    CHECK_FALSE(codec::decode_uid(std::string_view(v).substr(0, n)));
  CHECK_FALSE(codec::decode_uid(v + "x"));
  auto k = keys::pop3_uidl("al", "ice");
  CHECK(keys::decode_pop3_uidl(k, "al") == "ice");
  CHECK_FALSE(keys::decode_pop3_uidl(k, "alice"));
  CHECK(k.starts_with(keys::pop3_uidl_prefix("al")));
  CHECK_FALSE(keys::pop3_uidl("alice", "x").starts_with(keys::pop3_uidl_prefix("al")));
}

TEST_CASE("pop3_uidls: written with the messages, removed, per user, refused when empty", "[unit][storage]") {
  test::temp_dir t;
  auto db = store::open(t.db());
  REQUIRE(db);
  auto& s = *db.value();
  message_record m;
  m.key = "<a@x>";
  m.message_id = "a@x";
  m.sightings.push_back({"alice", "INBOX", 0, 11});
  checkpoint_update cp{"alice", "INBOX", {0, 11, 0}};
  std::vector<uidl_update> u{{"alice", "A", 11, false}, {"alice", "Z", 7, false}, {"bob", "A", 1, false}};
  REQUIRE(s.write({&m, 1}, {&cp, 1}, u));
  CHECK(s.pop3_uidls("alice") == std::map<std::string, std::uint32_t>{{"A", 11}, {"Z", 7}});
  CHECK(s.pop3_uidls("bob").size() == 1);
  CHECK(s.checkpoint("alice", "INBOX")->last_uid == 11);
  // The UIDL keys do not show up as folders.
  CHECK(s.checkpoints("alice").size() == 1);
  std::vector<uidl_update> gone{{"alice", "Z", 7, true}};
  REQUIRE(s.write({}, {}, gone));
  CHECK(s.pop3_uidls("alice") == std::map<std::string, std::uint32_t>{{"A", 11}});
  std::vector<uidl_update> bad{{"alice", "", 1, false}};
  CHECK_FALSE(s.write({&m, 1}, {}, bad));
  CHECK(s.message_count() == 1);
}
