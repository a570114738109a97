#include "storage/codec.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

using namespace mscan::storage;

namespace {

message_record full_record() {
  message_record m;
  m.key = "<a@b.example>";
  m.message_id = "<a@b.example>";
  m.subject = std::string("Grüße \0 binary", 15);
  m.from = "bob@acme.example";
  m.to = {"alice@corp.example", ""};
  m.cc = {"carol@corp.example"};
  m.date = std::numeric_limits<std::int64_t>::min();
  m.size = std::numeric_limits<std::uint64_t>::max();
  m.sightings = {{"alice", "INBOX", 0xffffffffu, 0xffffffffu}, {"bob", "Sent/2026", 0, 0}};
  m.users = {"alice", "bob"};
  m.contacts = {"bob@acme.example"};
  m.accounts = {"Acme Ltd"};
  m.items = {"OPP-1042"};
  m.tickets = {"TT1"};
  m.attachments = {{"quote.pdf", "application/pdf", 48213}, {"", "", 0}};
  m.reasons = {{"contact", "bob@acme.example", "From: bob@acme.example"}};
  m.warnings = {"charset fallback"};
  return m;
}

}  // namespace

TEST_CASE("varint and zigzag round trip at the edges", "[unit][storage][codec]") {
  const std::vector<std::uint64_t> unsigned_values = {
      0, 1, 127, 128, 255, 16383, 16384, 0xffffffffu, 0x100000000ull,
      (std::uint64_t{1} << 63) - 1, std::uint64_t{1} << 63, std::numeric_limits<std::uint64_t>::max()};
  for (auto v : unsigned_values) {
    std::string s;
    codec::put_varint(s, v);
    codec::reader r(s);
    CHECK(r.varint() == v);
    CHECK(r.ok());
    CHECK(r.at_end());
  }
  const std::vector<std::int64_t> signed_values = {
      0, 1, -1, 63, -64, 64, -65, std::numeric_limits<std::int64_t>::max(),
      std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::min() + 1};
  for (auto v : signed_values) {
    std::string s;
    codec::put_zigzag(s, v);
    codec::reader r(s);
    CHECK(r.zigzag() == v);
    CHECK(r.ok());
    CHECK(r.at_end());
  }
  // Small magnitudes stay small: that is the point of zigzag.
  std::string s;
  codec::put_zigzag(s, -1);
  CHECK(s.size() == 1);
}

TEST_CASE("malformed varints are refused", "[unit][storage][codec]") {
  SECTION("eleven bytes") {
    std::string s(10, '\x80');
    s.push_back('\x01');
    codec::reader r(s);
    r.varint();
    CHECK_FALSE(r.ok());
  }
  SECTION("tenth byte overflows 64 bits") {
    std::string s(9, '\xff');
    s.push_back('\x02');
    codec::reader r(s);
    r.varint();
    CHECK_FALSE(r.ok());
  }
  SECTION("truncated") {
    codec::reader r(std::string_view("\x80\x80", 2));
    r.varint();
    CHECK_FALSE(r.ok());
  }
  SECTION("varint32 refuses 2^32") {
    std::string s;
    codec::put_varint(s, 0x100000000ull);
    codec::reader r(s);
    r.varint32();
    CHECK_FALSE(r.ok());
  }
  SECTION("a count larger than the remaining bytes") {
    std::string s;
    codec::put_varint(s, 1000);
    s.append(10, 'x');
    codec::reader r(s);
    r.count(1);
    CHECK_FALSE(r.ok());
  }
}

TEST_CASE("big-endian integers sort like numbers", "[unit][storage][codec]") {
  const std::vector<std::int64_t> values = {std::numeric_limits<std::int64_t>::min(), -86400, -1, 0,
                                            1, 255, 256, 1700000000,
                                            std::numeric_limits<std::int64_t>::max()};
  std::vector<std::string> encoded;
  for (auto v : values) {
    std::string s;
    codec::put_be64(s, codec::order_preserving(v));
    encoded.push_back(s);
    codec::reader r(s);
    CHECK(codec::from_order_preserving(r.be64()) == v);
  }
  CHECK(std::is_sorted(encoded.begin(), encoded.end()));

  std::vector<std::string> u32;
  for (std::uint32_t v : {0u, 1u, 255u, 256u, 65535u, 65536u, 0xffffffffu}) {
    std::string s;
    codec::put_be32(s, v);
    u32.push_back(s);
    codec::reader r(s);
    CHECK(r.be32() == v);
  }
  CHECK(std::is_sorted(u32.begin(), u32.end()));
}

TEST_CASE("message record round trip", "[unit][storage][codec]") {
  SECTION("every field filled, edge values") {
    auto m = full_record();
    auto back = codec::decode_message(m.key, codec::encode(m));
    REQUIRE(back);
    CHECK(*back == m);
  }
  SECTION("empty record") {
    message_record m;
    m.key = "fp:0";
    auto back = codec::decode_message(m.key, codec::encode(m));
    REQUIRE(back);
    CHECK(*back == m);
  }
}

TEST_CASE("message decoder refuses every truncation, trailing bytes and newer versions",
          "[unit][storage][codec]") {
  const auto m = full_record();
  const auto v = codec::encode(m);
  for (std::size_t n = 0; n < v.size(); ++n) {
    auto r = codec::decode_message(m.key, std::string_view(v).substr(0, n));
    INFO("prefix length " << n);
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == error::code::corruption);
  }
  CHECK_FALSE(codec::decode_message(m.key, v + "x"));
  auto newer = v;
  newer[0] = static_cast<char>(codec::message_value_version + 1);
  auto r = codec::decode_message(m.key, newer);
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("version") != std::string::npos);
}

TEST_CASE("checkpoint and mailbox state round trip", "[unit][storage][codec]") {
  for (folder_checkpoint cp : {folder_checkpoint{}, folder_checkpoint{1, 2, 3},
                               folder_checkpoint{0xffffffffu, 0xffffffffu,
                                                 std::numeric_limits<std::uint64_t>::max()}}) {
    auto back = codec::decode_checkpoint(codec::encode(cp));
    REQUIRE(back);
    CHECK(*back == cp);
  }
  mailbox_state s;
  s.user = "alice";
  s.state = "credentials_changed";
  s.last_scanned = -5;
  s.consecutive_failures = 0xffffffffu;
  s.last_error_reason = "login_failed";
  s.last_error_detail = "NO [AUTHENTICATIONFAILED]";
  s.messages_tracked = std::numeric_limits<std::uint64_t>::max();
  auto back = codec::decode_mailbox_state(s.user, codec::encode(s));
  REQUIRE(back);
  CHECK(*back == s);
  mailbox_state never;
  never.user = "bob";
  auto back2 = codec::decode_mailbox_state("bob", codec::encode(never));
  REQUIRE(back2);
  CHECK(*back2 == never);

  const auto v = codec::encode(s);
  for (std::size_t n = 0; n < v.size(); ++n)
    CHECK_FALSE(codec::decode_mailbox_state("alice", std::string_view(v).substr(0, n)));
  const auto c = codec::encode(folder_checkpoint{7, 8, 9});
  for (std::size_t n = 0; n < c.size(); ++n)
    CHECK_FALSE(codec::decode_checkpoint(std::string_view(c).substr(0, n)));
}

TEST_CASE("random records round trip and random bytes never crash the decoders",
          "[unit][storage][codec]") {
  std::uint64_t state = 0x9e3779b97f4a7c15ull;  // fixed seed: failures reproduce
  auto next = [&] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  auto str = [&] {
    std::string s(next() % 12, '\0');
    for (auto& c : s) c = static_cast<char>(next());
    return s;
  };
  auto strs = [&] {
    std::vector<std::string> v(next() % 4);
    for (auto& s : v) s = str();
    return v;
  };
  for (int i = 0; i < 2000; ++i) {
    message_record m;
    m.key = str();
    m.message_id = str();
    m.subject = str();
    m.from = str();
    m.to = strs();
    m.cc = strs();
    m.date = static_cast<std::int64_t>(next());
    m.size = next() >> (next() % 64);
    for (auto n = next() % 3; n > 0; --n)
      m.sightings.push_back({str(), str(), static_cast<std::uint32_t>(next()),
                             static_cast<std::uint32_t>(next())});
    m.users = strs();
    m.contacts = strs();
    m.accounts = strs();
    m.items = strs();
    m.tickets = strs();
    for (auto n = next() % 3; n > 0; --n) m.attachments.push_back({str(), str(), next()});
    for (auto n = next() % 3; n > 0; --n) m.reasons.push_back({str(), str(), str()});
    m.warnings = strs();
    auto back = codec::decode_message(m.key, codec::encode(m));
    REQUIRE(back);
    REQUIRE(*back == m);

    // Garbage: must be refused or decoded, never crash or allocate wildly (ASan/UBSan run).
    auto junk = str() + str() + str();
    if (!junk.empty()) junk[0] = static_cast<char>(1);  // past the version check
    (void)codec::decode_message("k", junk);
    (void)codec::decode_checkpoint(junk);
    (void)codec::decode_mailbox_state("u", junk);
    // And a valid encoding with one byte flipped.
    auto flipped = codec::encode(m);
    flipped[next() % flipped.size()] ^= static_cast<char>(1 + next() % 255);
    if (auto r = codec::decode_message(m.key, flipped)) CHECK(codec::encode(*r).size() > 0);
  }
}
