#include <catch2/catch.hpp>

#include "protocols/imap/command_writer.hpp"
#include "protocols/imap/utf7.hpp"

using namespace mscan::imap;

TEST_CASE("modified UTF-7 round trips (RFC 3501 5.1.3 examples)", "[unit]") {
  const std::pair<std::string, std::string> cases[] = {
      {"INBOX", "INBOX"},
      {"~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
       "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},
      {"Archive.\xc3\x89t\xc3\xa9", "Archive.&AMk-t&AOk-"},
      {"Tom & Jerry", "Tom &- Jerry"},
      {"\xd0\x9e\xd1\x82\xd0\xbf\xd1\x80\xd0\xb0\xd0\xb2\xd0\xbb\xd0\xb5\xd0\xbd\xd0\xbd\xd1\x8b\xd0\xb5",
       "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"},
      {"emoji \xf0\x9f\x98\x80!", "emoji &2D3eAA-!"},
      {"", ""},
  };
  for (const auto& [utf8, mutf7] : cases) {
    INFO(utf8);
    auto e = utf7_encode(utf8);
    REQUIRE(e);
    CHECK(*e == mutf7);
    auto d = utf7_decode(mutf7);
    REQUIRE(d);
    CHECK(*d == utf8);
  }
}

TEST_CASE("modified UTF-7 rejects malformed input", "[unit]") {
  CHECK_FALSE(utf7_encode("bad \xff byte"));
  CHECK_FALSE(utf7_encode("\xc3"));               // truncated sequence
  CHECK_FALSE(utf7_encode("\xc0\xaf"));           // overlong
  CHECK_FALSE(utf7_decode("&AMk"));               // unterminated shift
  CHECK_FALSE(utf7_decode("&A*k-"));              // bad base64
  CHECK_FALSE(utf7_decode("&2D0-"));              // lone high surrogate
  CHECK_FALSE(utf7_decode("caf\xc3\xa9"));        // raw 8-bit
  CHECK_FALSE(utf7_decode("&-&"));
}

TEST_CASE("command writer: tags, atoms, quoting, literals", "[unit]") {
  command_writer w;
  auto c = w.begin("LOGIN").astring("alice").astring("p\"a\\ss word").finish();
  CHECK(c.tag == "a1");
  REQUIRE(c.parts.size() == 1);
  CHECK(c.parts[0] == "a1 LOGIN alice \"p\\\"a\\\\ss word\"\r\n");

  // 8-bit data without LITERAL+: a synchronising literal splits the command.
  c = w.begin("LOGIN").astring("bob").astring("p\xc3\xa4ss").finish();
  CHECK(c.tag == "a2");
  REQUIRE(c.parts.size() == 2);
  CHECK(c.parts[0] == "a2 LOGIN bob {5}\r\n");
  CHECK(c.parts[1] == "p\xc3\xa4ss\r\n");

  w.set_caps({.literal_plus = true});
  c = w.begin("LOGIN").astring("bob").astring("line\r\nbreak").finish();
  REQUIRE(c.parts.size() == 1);
  CHECK(c.parts[0] == "a3 LOGIN bob {11+}\r\nline\r\nbreak\r\n");

  w.set_caps({.literal_minus = true});
  c = w.begin("X").string(std::string(5000, '\x80')).finish();
  CHECK(c.parts.size() == 2);  // LITERAL- only covers literals up to 4096 bytes
  c = w.begin("X").string(std::string(10, '\x80')).astring("").astring("NIL").finish();
  REQUIRE(c.parts.size() == 1);
  CHECK(c.parts[0] == "a5 X {10+}\r\n" + std::string(10, '\x80') + " \"\" \"NIL\"\r\n");
}

TEST_CASE("command writer: mailbox names per UTF8=ACCEPT", "[unit]") {
  command_writer w;
  auto c = w.begin("EXAMINE").mailbox("Archive.\xc3\x89t\xc3\xa9").finish();
  CHECK(c.parts[0] == "a1 EXAMINE Archive.&AMk-t&AOk-\r\n");
  c = w.begin("SELECT").mailbox("inbox").finish();
  CHECK(c.parts[0] == "a2 SELECT INBOX\r\n");
  c = w.begin("SELECT").mailbox("Sent Items").finish();
  CHECK(c.parts[0] == "a3 SELECT \"Sent Items\"\r\n");
  w.set_caps({.utf8_accept = true});
  c = w.begin("SELECT").mailbox("\xc3\x89t\xc3\xa9 2").finish();
  CHECK(c.parts[0] == "a4 SELECT \"\xc3\x89t\xc3\xa9 2\"\r\n");
}

TEST_CASE("sequence sets and SASL encodings", "[unit]") {
  const std::uint32_t ids[] = {1, 2, 3, 5, 7, 8, 9, 4000000000u};
  CHECK(sequence_set(ids) == "1:3,5,7:9,4000000000");
  CHECK(sequence_set({}) == "");
  CHECK(base64_encode("") == "");
  CHECK(base64_encode("f") == "Zg==");
  CHECK(base64_encode("fo") == "Zm8=");
  CHECK(base64_encode("foobar") == "Zm9vYmFy");
  CHECK(sasl_plain("tim", "tanstaaftanstaaf") == "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");  // RFC 4616
  CHECK(sasl_xoauth2("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg") ==
        "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==");
}
