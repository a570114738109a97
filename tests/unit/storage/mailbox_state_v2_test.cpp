// mailbox_state value versions 2 (credential_hash, notified) and 3 (slow): round trip,
// truncation, and values written by older builds (versions 1 and 2) still read (new fields at
// their defaults).
#include "storage/codec.hpp"

#include <catch2/catch.hpp>

#include <limits>

using namespace mscan::storage;

TEST_CASE("mailbox_state round-trips credential_hash, notified and slow", "[unit][storage]") {
  mailbox_state s;
  s.user = "alice";
  s.state = "credentials_changed";
  s.last_scanned = 1'700'000'000;
  s.consecutive_failures = 3;
  s.last_error_reason = "login_failed";
  s.last_error_detail = "NO [AUTHENTICATIONFAILED]";
  s.messages_tracked = std::numeric_limits<std::uint64_t>::max();
  s.credential_hash = std::string("00ff$ab\0cd", 10);
  s.notified = true;
  s.slow = true;
  const auto v = codec::encode(s);
  REQUIRE(static_cast<std::uint8_t>(v[0]) == 3);
  auto back = codec::decode_mailbox_state("alice", v);
  REQUIRE(back);
  CHECK(*back == s);
  for (std::size_t n = 0; n < v.size(); ++n)
    CHECK_FALSE(codec::decode_mailbox_state("alice", std::string_view(v).substr(0, n)));
  CHECK_FALSE(codec::decode_mailbox_state("alice", v + "x"));
}

TEST_CASE("mailbox_state v1 values (older builds) still decode", "[unit][storage]") {
  // Hand-built v1 value: version, state, zigzag(last_scanned), failures, reason, detail, tracked.
  std::string v1;
  v1.push_back(1);
  v1.push_back(5);
  v1 += "error";
  v1.push_back(static_cast<char>(20));  // zigzag(10)
  v1.push_back(static_cast<char>(4));
  v1.push_back(7);
  v1 += "timeout";
  v1.push_back(2);
  v1 += "t1";
  v1.push_back(static_cast<char>(42));
  auto back = codec::decode_mailbox_state("bob", v1);
  REQUIRE(back);
  CHECK(back->state == "error");
  CHECK(back->last_scanned == 10);
  CHECK(back->consecutive_failures == 4);
  CHECK(back->last_error_reason == "timeout");
  CHECK(back->last_error_detail == "t1");
  CHECK(back->messages_tracked == 42);
  CHECK(back->credential_hash.empty());
  CHECK_FALSE(back->notified);
  CHECK_FALSE(back->slow);
}

TEST_CASE("mailbox_state v2 values (before the slow mark) still decode, not slow", "[unit][storage]") {
  mailbox_state s;
  s.user = "carol";
  s.state = "ok";
  s.credential_hash = "salt$hash";
  s.notified = true;
  s.slow = true;
  auto v3 = codec::encode(s);
  // A v2 value is the v3 one without its last byte (the slow mark), under version byte 2.
  auto v2 = v3.substr(0, v3.size() - 1);
  v2[0] = 2;
  auto back = codec::decode_mailbox_state("carol", v2);
  REQUIRE(back);
  CHECK(back->credential_hash == "salt$hash");
  CHECK(back->notified);
  CHECK_FALSE(back->slow);
  CHECK_FALSE(codec::decode_mailbox_state("carol", v2 + "x"));
}

#include "storage/keys.hpp"
#include "storage/store.hpp"
#include "temp_dir.hpp"

TEST_CASE("notifications: codec and key round trip and the store lists newest first", "[unit][storage]") {
  notification_record n;
  n.at = 1'700'000'123;
  n.user = std::string("al\0ice", 6);
  n.kind = "failing";
  n.reason = "timeout";
  n.detail = "no answer in 60 s";
  n.next_step = "check the host";
  n.consecutive_failures = 10;
  n.delivery = "webhook: delivered";
  auto k = keys::decode_notification(keys::notification(n.at, n.user, n.kind));
  REQUIRE(k);
  CHECK(k->at == n.at);
  CHECK(k->user == n.user);
  CHECK(k->kind == n.kind);
  const auto v = codec::encode(n);
  auto back = codec::decode_notification(n.at, n.user, n.kind, v);
  REQUIRE(back);
  CHECK(*back == n);
  for (std::size_t i = 0; i < v.size(); ++i)
    CHECK_FALSE(codec::decode_notification(0, "u", "k", std::string_view(v).substr(0, i)));
  // Negative times sort before positive ones.
  CHECK(keys::notification(-1, "a", "b") < keys::notification(1, "a", "b"));

  mscan::storage::test::temp_dir dir;
  auto db = store::open(dir.path() / "db");
  REQUIRE(db);
  for (int i = 0; i < 5; ++i) {
    auto m = n;
    m.at = 1000 + i;
    m.user = "u" + std::to_string(i);
    REQUIRE(db.value()->put_notification(m));
  }
  notification_record bad;
  CHECK_FALSE(db.value()->put_notification(bad));
  auto all = db.value()->notifications();
  REQUIRE(all.size() == 5);
  CHECK(all.front().user == "u4");
  CHECK(all.back().user == "u0");
  auto two = db.value()->notifications(2);
  REQUIRE(two.size() == 2);
  CHECK(two[1].user == "u3");
}
