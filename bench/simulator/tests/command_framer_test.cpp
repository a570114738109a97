#include <catch2/catch.hpp>

#include "bench/simulator/command_framer.hpp"

using namespace mscan::sim;

namespace {
// Feeds `input` one byte at a time and collects the framed commands and continuations.
std::vector<std::string> grind(std::string_view input, int& continuations) {
  command_framer f(1000, 1000);
  std::string buf;
  std::vector<std::string> out;
  continuations = 0;
  for (char c : input) {
    buf += c;
    for (;;) {
      const auto r = f.next(buf);
      if (r.what == frame::kind::complete) {
        out.push_back(buf.substr(0, r.length));
        buf.erase(0, r.length);
        continue;
      }
      if (r.what == frame::kind::send_continuation) {
        ++continuations;
        continue;
      }
      REQUIRE(r.what == frame::kind::need_more);
      break;
    }
  }
  REQUIRE(buf.empty());
  return out;
}
}  // namespace

TEST_CASE("framer splits pipelined commands and literals at every byte", "[unit]") {
  const std::string in =
      "a1 NOOP\r\n"
      "a2 LOGIN {4}\r\nsim0 {3+}\r\nsim\r\n"
      "a3 UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (FROM TO)])\r\n";
  int cont = 0;
  const auto cmds = grind(in, cont);
  REQUIRE(cmds.size() == 3);
  REQUIRE(cmds[1] == "a2 LOGIN {4}\r\nsim0 {3+}\r\nsim\r\n");
  REQUIRE(cont == 1);  // only the synchronising literal asks for "+"

  tokenizer t(cmds[1]);
  REQUIRE(t.next().text == "a2");
  REQUIRE(t.next().text == "LOGIN");
  auto u = t.next();
  REQUIRE(u.what == token::kind::literal);
  REQUIRE(u.text == "sim0");
  auto p = t.next();
  REQUIRE(p.what == token::kind::literal);
  REQUIRE(p.text == "sim");
  REQUIRE(t.next().what == token::kind::end);

  tokenizer f(cmds[2]);
  f.next();
  f.next();
  f.next();
  REQUIRE(f.next().text == "1:*");
  auto items = f.next();
  REQUIRE(items.what == token::kind::list);
  REQUIRE(items.text == "BODY.PEEK[HEADER.FIELDS (FROM TO)]");
  tokenizer it(items.text);
  REQUIRE(it.next().text == "BODY.PEEK[HEADER.FIELDS (FROM TO)]");
}

TEST_CASE("framer rejects oversized lines and literals", "[unit]") {
  command_framer f(16, 8);
  REQUIRE(f.next(std::string(17, 'x')).what == frame::kind::too_long);
  command_framer g(16, 8);
  REQUIRE(g.next("a LOGIN {9}\r\n").what == frame::kind::too_long);
}

TEST_CASE("tokenizer handles quoted strings with escapes", "[unit]") {
  tokenizer t("a LOGIN \"si\\\"m0\" \"s\\\\m\"\r\n");
  t.next();
  t.next();
  auto a = t.next();
  REQUIRE(a.what == token::kind::quoted);
  REQUIRE(a.text == "si\"m0");
  REQUIRE(t.next().text == "s\\m");
  REQUIRE(t.at_end());
  tokenizer bad("a \"open");
  bad.next();
  REQUIRE(bad.next().what == token::kind::error);
}
