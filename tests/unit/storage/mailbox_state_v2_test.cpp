// mailbox_state value version 2 (credential_hash, notified): round trip, truncation, and a
// version-1 value written by an older build still reads (new fields at their defaults).
#include "storage/codec.hpp"

#include <catch2/catch.hpp>

#include <limits>

using namespace mscan::storage;

TEST_CASE("mailbox_state v2 round-trips credential_hash and notified", "[unit][storage]") {
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
  const auto v = codec::encode(s);
  REQUIRE(static_cast<std::uint8_t>(v[0]) == 2);
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
}
