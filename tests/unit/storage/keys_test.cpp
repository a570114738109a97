#include "storage/keys.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <limits>
#include <vector>

#include "storage/column_families.hpp"
#include "storage/types.hpp"

using namespace mscan::storage;

TEST_CASE("column family order is the compatibility contract", "[unit][storage][keys]") {
  // Appending is fine; reordering or renaming breaks every existing database.
  const std::vector<std::string_view> expected = {
      "default",       "meta",          "messages",      "message_ids", "checkpoints",
      "index_user",    "index_contact", "index_account", "index_item",  "mailbox_state",
      "directory",     "tickets",       "comments",      "rule_stats"};
  REQUIRE(column_family_names.size() >= expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) CHECK(column_family_names[i] == expected[i]);
  CHECK(name_of(column_family::messages) == "messages");
}

TEST_CASE("key layouts round trip", "[unit][storage][keys]") {
  const std::string odd_user("a\0l:i/ce", 8);
  SECTION("message") {
    for (std::string k : {std::string(), std::string("<a@b>"), odd_user}) {
      auto back = keys::decode_message(keys::message(k));
      REQUIRE(back);
      CHECK(*back == k);
    }
    CHECK(keys::message("x")[0] == static_cast<char>(keys::key_format));
  }
  SECTION("checkpoint") {
    auto back = keys::decode_checkpoint(keys::checkpoint(odd_user, "INBOX/Sub folder"));
    REQUIRE(back);
    CHECK(back->user == odd_user);
    CHECK(back->folder == "INBOX/Sub folder");
    auto k = keys::checkpoint("alice", "INBOX");
    CHECK(k.rfind(keys::checkpoint_prefix("alice"), 0) == 0);
    // Length prefixes keep "al" from being a prefix of "alice".
    CHECK(k.rfind(keys::checkpoint_prefix("al"), 0) != 0);
  }
  SECTION("index") {
    for (std::int64_t date : {std::numeric_limits<std::int64_t>::min(), std::int64_t{-1},
                              std::int64_t{0}, std::int64_t{1700000000},
                              std::numeric_limits<std::int64_t>::max()}) {
      auto back = keys::decode_index(keys::index("bob@acme.example", date, "<k@x>"));
      REQUIRE(back);
      CHECK(back->target == "bob@acme.example");
      CHECK(back->date == date);
      CHECK(back->key == "<k@x>");
    }
  }
  SECTION("mailbox state") {
    auto back = keys::decode_mailbox_state(keys::mailbox_state(odd_user));
    REQUIRE(back);
    CHECK(*back == odd_user);
  }
  SECTION("foreign format and garbage are refused") {
    auto k = keys::message("x");
    k[0] = static_cast<char>(keys::key_format + 1);
    CHECK_FALSE(keys::decode_message(k));
    CHECK_FALSE(keys::decode_message(keys::message("x") + "y"));
    CHECK_FALSE(keys::decode_index(keys::index_prefix("t")));
    CHECK_FALSE(keys::decode_checkpoint(""));
  }
}

TEST_CASE("index keys iterate newest first", "[unit][storage][keys]") {
  const std::vector<std::int64_t> dates = {std::numeric_limits<std::int64_t>::max(), 1700000001,
                                           1700000000, 1, 0, -1,
                                           std::numeric_limits<std::int64_t>::min()};
  std::vector<std::string> ks;
  for (auto d : dates) ks.push_back(keys::index("alice", d, "k"));
  CHECK(std::is_sorted(ks.begin(), ks.end()));
  for (const auto& k : ks) CHECK(k.rfind(keys::index_prefix("alice"), 0) == 0);
}

TEST_CASE("message keys are stable", "[unit][storage][keys]") {
  SECTION("Message-ID spellings normalise to one key") {
    auto k = message_key("<abc.123@Mail.ACME.example>", 1, 2, "x", "y");
    CHECK(k == "<abc.123@mail.acme.example>");
    CHECK(message_key("  abc.123@mail.acme.example\r\n", 9, 9, "", "") == k);
    CHECK(message_key("<abc.123@\r\n mail.acme.example>", 0, 0, "", "") == k);
    // The local part is case-sensitive (RFC 5322).
    CHECK(message_key("<ABC.123@mail.acme.example>", 1, 2, "x", "y") != k);
    CHECK(normalise_message_id("<>").empty());
    CHECK(normalise_message_id(" \r\n").empty());
  }
  SECTION("fingerprint without Message-ID") {
    auto k = message_key("", 1700000000, 4096, "Bob@Acme.example", "Quote");
    CHECK(k.size() == 3 + 32);
    CHECK(k.rfind("fp:", 0) == 0);
    // Golden value (cross-checked with an independent Python FNV-1a): changing the
    // fingerprint would split every stored message in two.
    CHECK(k == "fp:2ab580ca99107494f4083957c750542f");
    CHECK(message_key("  ", 1700000000, 4096, " bob@acme.example ", "Quote ") == k);
    CHECK(message_key("<>", 1700000000, 4096, "bob@acme.example", "Quote") == k);
    CHECK(message_key("", 1700000001, 4096, "bob@acme.example", "Quote") != k);
    CHECK(message_key("", 1700000000, 4097, "bob@acme.example", "Quote") != k);
    CHECK(message_key("", 1700000000, 4096, "bob@acme.example", "quote") != k);
    // Field boundaries are length-prefixed: moving bytes between fields changes the key.
    CHECK(message_key("", 0, 0, "ab", "c") != message_key("", 0, 0, "a", "bc"));
  }
}
