#include <algorithm>
#include <catch2/catch.hpp>

#include "bench/simulator/message_generator.hpp"

using namespace mscan::sim;

namespace {
message_generator make(std::size_t bytes = 4000) {
  message_generator g;
  g.seed = 7;
  g.messages = 100;
  g.message_bytes = bytes;
  g.base_time = parse_imap_date("24-Nov-2026");
  return g;
}
}  // namespace

TEST_CASE("generated messages are deterministic and well formed", "[unit]") {
  const auto g = make();
  for (std::uint32_t uid = 1; uid <= 100; ++uid) {
    const auto a = g.generate(3, uid);
    const auto b = g.generate(3, uid);
    REQUIRE(a.full() == b.full());
    REQUIRE(a.header.ends_with("\r\n\r\n"));
    // Every line ends in CRLF, no bare LF.
    const auto full = a.full();
    for (std::size_t i = 0; i < full.size(); ++i)
      if (full[i] == '\n') REQUIRE((i > 0 && full[i - 1] == '\r'));
    REQUIRE(full.find("Message-ID: <sim3." + std::to_string(uid) + ".7@sim.example>\r\n") !=
            std::string::npos);
    REQUIRE(full.find("To: sim3@tenant.example\r\n") != std::string::npos);
    REQUIRE(full.find("From: \"Person ") != std::string::npos);
    REQUIRE(a.multipart == (uid % 10 == 0));
    if (uid % 5 == 0) REQUIRE(a.header.find("OPP-1") != std::string::npos);
    if (uid % 7 == 0) REQUIRE(a.header.find("[TT") != std::string::npos);
    // Size is close to the requested size.
    REQUIRE(full.size() >= 3500);
    REQUIRE(full.size() <= 4500);
  }
  REQUIRE(g.generate(3, 1).full() != g.generate(4, 1).full());
}

TEST_CASE("multipart messages carry a PDF attachment", "[unit]") {
  const auto m = make().generate(1, 10);
  REQUIRE(m.header.find("multipart/mixed; boundary=\"=_sim_1_10_7\"") != std::string::npos);
  REQUIRE(m.body.find("Content-Type: application/pdf; name=\"quote-10.pdf\"") != std::string::npos);
  REQUIRE(m.body.ends_with("--=_sim_1_10_7--\r\n"));
  REQUIRE(m.bodystructure.find("\"MIXED\"") != std::string::npos);
  REQUIRE(m.bodystructure.find("(\"FILENAME\" \"quote-10.pdf\")") != std::string::npos);
}

TEST_CASE("dates descend from the base over ten days", "[unit]") {
  const auto g = make();
  REQUIRE(g.date_of(100) == g.base_time);
  REQUIRE(g.date_of(1) >= g.base_time - 10 * 86400);
  for (std::uint32_t u = 2; u <= 100; ++u) REQUIRE(g.date_of(u) > g.date_of(u - 1));
  REQUIRE(rfc5322_date(parse_imap_date("24-Nov-2026")) == "Tue, 24 Nov 2026 00:00:00 +0000");
  REQUIRE(internal_date(parse_imap_date("4-Jan-2027") + 3661) == "04-Jan-2027 01:01:01 +0000");
  REQUIRE(parse_imap_date("1-Jan-1970") == 0);
  REQUIRE(parse_imap_date("bogus") == -1);
  REQUIRE(parse_imap_date("01-Foo-2026") == -1);
}

TEST_CASE("BODYSTRUCTURE sizes and line counts match the content", "[unit]") {
  const auto g = make(3000);
  for (std::uint32_t uid = 1; uid <= 9; ++uid) {
    const auto m = g.generate(2, uid);
    const auto lines = static_cast<std::size_t>(std::count(m.body.begin(), m.body.end(), '\n'));
    const auto expected = "\"7BIT\" " + std::to_string(m.body.size()) + " " + std::to_string(lines);
    REQUIRE(m.body_basic.find(expected + ")") != std::string::npos);
    REQUIRE(m.bodystructure.find(expected + " NIL NIL NIL NIL)") != std::string::npos);
  }
  // The multipart's text part: its size and lines are those of the part's content.
  const auto m = g.generate(2, 20);
  const auto start = m.body.find("\r\n\r\n") + 4;
  const auto end = m.body.find("\r\n--=_sim_2_20_7", start);  // that CRLF belongs to the delimiter
  const auto text = m.body.substr(start, end - start);
  const auto lines = static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
  REQUIRE(m.bodystructure.find("\"7BIT\" " + std::to_string(text.size()) + " " + std::to_string(lines) + " ") !=
          std::string::npos);
}
