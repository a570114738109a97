// POP3 reply parser: every fixture is also fed split at every byte ("grind") and must give
// the same replies.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "protocols/pop3/response_parser.hpp"

using namespace mscan::pop3;

namespace {

std::string describe(const parse_result& r) {
  if (auto* e = std::get_if<parse_error>(&r))
    return "error " + e->detail;
  auto& x = std::get<reply>(r);
  std::string out = x.kind == reply_kind::ok ? "ok" : x.kind == reply_kind::err ? "err" : "cont";
  out += " [" + x.code + "]";
  if (!x.text.empty())
    out += " " + x.text;
  for (auto& l : x.lines)
    out += " |" + l;
  if (!x.message.empty() || x.truncated)
    out += " msg=" + excerpt(x.message, 1000) + (x.truncated ? " truncated" : "");
  return out;
}

// Feeds `input` in pieces (split points), expecting `kinds` after the greeting.
std::vector<std::string> run(std::string_view input, const std::vector<body_kind>& kinds,
                             const std::vector<std::size_t>& splits = {}, parser_limits limits = {}) {
  response_parser p(limits);
  for (auto k : kinds)
    p.expect(k);
  std::vector<std::string> out;
  std::size_t pos = 0;
  auto drain = [&] {
    while (auto r = p.next()) {
      out.push_back(describe(*r));
      if (std::holds_alternative<parse_error>(*r))
        return false;
    }
    return true;
  };
  for (auto s : splits) {
    p.feed(input.substr(pos, s - pos));
    pos = s;
    if (!drain())
      return out;
  }
  p.feed(input.substr(pos));
  drain();
  return out;
}

// Every split into two and into single bytes gives what the whole input gives.
void grind(std::string_view input, const std::vector<body_kind>& kinds, parser_limits limits = {}) {
  auto whole = run(input, kinds, {}, limits);
  for (std::size_t i = 1; i < input.size(); ++i) {
    INFO("split at " << i);
    REQUIRE(run(input, kinds, {i}, limits) == whole);
  }
  std::vector<std::size_t> every;
  for (std::size_t i = 1; i < input.size(); ++i)
    every.push_back(i);
  REQUIRE(run(input, kinds, every, limits) == whole);
}

} // namespace

TEST_CASE("pop3 parser: greeting, codes, listings, message with dot-stuffing", "[unit][pop3]") {
  const std::string in =
    "+OK Dovecot ready. <1896.697170952@dbc.mtview.ca.us>\r\n"
    "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nSASL PLAIN LOGIN\r\n..dotted\r\n.\r\n"
    "-ERR [AUTH] Authentication failed.\r\n"
    "-ERR [sys/temp] try later\r\n"
    "+ \r\n"
    "+OK 2 messages\r\n1 000001\r\n2 000002\r\n.\r\n"
    "+OK 120 octets\r\nSubject: x\r\n\r\n..leading dot\r\n..\r\nend\n.\r\n";
  // The "+ " challenge answers without using up an expectation.
  std::vector<body_kind> kinds{body_kind::listing, body_kind::none, body_kind::none, body_kind::listing,
                               body_kind::message};
  auto r = run(in, kinds);
  REQUIRE(r.size() == 7);
  CHECK(r[0] == "ok [] Dovecot ready. <1896.697170952@dbc.mtview.ca.us>");
  CHECK(r[1] == "ok [] |CAPA |TOP |UIDL |SASL PLAIN LOGIN |.dotted");
  CHECK(r[2] == "err [AUTH] Authentication failed.");
  CHECK(r[3] == "err [SYS/TEMP] try later");
  CHECK(r[4] == "cont []");
  CHECK(r[5] == "ok [] 2 messages |1 000001 |2 000002");
  CHECK(r[6] == "ok [] 120 octets msg=Subject: x\\x0d\\x0a\\x0d\\x0a.leading dot\\x0d\\x0a.\\x0d\\x0aend\\x0d\\x0a");
  grind(in, kinds);
}

TEST_CASE("pop3 parser: -ERR to a multi-line command has no body", "[unit][pop3]") {
  const std::string in = "+OK hi\r\n-ERR no such message\r\n+OK\r\n.\r\n";
  auto r = run(in, {body_kind::message, body_kind::message});
  REQUIRE(r.size() == 3);
  CHECK(r[1] == "err [] no such message");
  CHECK(r[2] == "ok []");
  grind(in, {body_kind::message, body_kind::message});
}

TEST_CASE("pop3 parser: limits", "[unit][pop3]") {
  parser_limits l;
  l.max_line = 32;
  l.max_lines = 2;
  l.max_message_bytes = 10;
  SECTION("status line too long") {
    auto r = run("+OK " + std::string(100, 'x') + "\r\n", {}, {}, l);
    REQUIRE(r.size() == 1);
    CHECK(r[0].starts_with("error a status line is longer"));
  }
  SECTION("status line without end, too long") {
    auto r = run("+OK " + std::string(100, 'x'), {}, {}, l);
    REQUIRE(r.size() == 1);
    CHECK(r[0].starts_with("error a status line is longer"));
  }
  SECTION("listing line too long, too many lines") {
    CHECK(run("+OK\r\n+OK\r\n" + std::string(40, 'y') + "\r\n.\r\n", {body_kind::listing}, {}, l).back().starts_with(
      "error a listing line is longer"));
    CHECK(run("+OK\r\n+OK\r\na\r\nb\r\nc\r\n.\r\n", {body_kind::listing}, {}, l).back().starts_with(
      "error a listing has more than 2 lines"));
  }
  SECTION("message over the cap: kept up to it, the rest dropped, the next reply still parsed") {
    const std::string in = "+OK\r\n+OK\r\n0123456789abcdef\r\n" + std::string(100, 'z') + "\r\n.\r\n+OK next\r\n";
    auto r = run(in, {body_kind::message, body_kind::none}, {}, l);
    REQUIRE(r.size() == 3);
    CHECK(r[1] == "ok [] msg=0123456789 truncated");
    CHECK(r[2] == "ok [] next");
    grind(in, {body_kind::message, body_kind::none}, l);
  }
  SECTION("a body line without end does not grow the buffer") {
    response_parser p(l);
    p.expect(body_kind::message);
    p.feed("+OK\r\n+OK\r\n");
    REQUIRE(p.next());
    for (int i = 0; i < 1000; ++i) {
      p.feed(std::string(1000, 'q'));
      CHECK_FALSE(p.next());
    }
    p.feed("\r\n.\r\n");
    auto r = p.next();
    REQUIRE(r);
    CHECK(describe(*r) == "ok [] msg=qqqqqqqqqq truncated");
  }
}

TEST_CASE("pop3 parser: garbage and unsolicited data are errors", "[unit][pop3]") {
  CHECK(run("* OK IMAP here\r\n", {}).at(0) == "error expected +OK or -ERR, got '* OK IMAP here'");
  CHECK(run("+OKAY\r\n", {}).at(0).starts_with("error expected +OK"));
  parser_limits l;
  l.max_line = 16;
  auto r = run("+OK hi\r\n" + std::string(40, 'u'), {}, {}, l);
  REQUIRE(r.size() == 2);
  CHECK(r[1].starts_with("error unexpected data from the server"));
  // Broken stays broken.
  response_parser p;
  p.feed("garbage\r\n");
  REQUIRE(p.next());
  p.feed("+OK\r\n");
  auto again = p.next();
  REQUIRE(again);
  CHECK(std::holds_alternative<parse_error>(*again));
}

TEST_CASE("pop3 parser: bare LF line ends are accepted, kept lines end in CRLF", "[unit][pop3]") {
  const std::string in = "+OK hi\n+OK\nA: b\n\nbody\n.\n";
  auto r = run(in, {body_kind::message});
  REQUIRE(r.size() == 2);
  CHECK(r[1] == "ok [] msg=A: b\\x0d\\x0a\\x0d\\x0abody\\x0d\\x0a");
  grind(in, {body_kind::message});
}
