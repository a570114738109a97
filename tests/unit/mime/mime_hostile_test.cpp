// Hostile input: every case must finish quickly with bounded output and warnings, never throw.
#include "protocols/mime/message.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace mscan::mime;

namespace {
double seconds_to_parse(const std::string& raw, message& out) {
  auto t0 = std::chrono::steady_clock::now();
  out = parse_message(raw);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
} // namespace

TEST_CASE("100k header fields are capped at max_headers", "[unit]") {
  std::string raw;
  for (int i = 0; i < 100000; ++i) raw += "X-Spam-" + std::to_string(i) + ": v\r\n";
  raw += "Subject: late\r\n\r\nbody\r\n";
  message m;
  double s = seconds_to_parse(raw, m);
  CHECK(m.body_text == "body\n");
  CHECK(m.subject.empty()); // past the limit: not read
  REQUIRE_FALSE(m.warnings.empty());
  CHECK(m.warnings.size() <= 64);
  CHECK(s < 5.0);
  // one header folded over 100k lines, and 100k To addresses
  std::string folded = "Subject: a\r\n";
  for (int i = 0; i < 100000; ++i) folded += " x\r\n";
  folded += "\r\n";
  CHECK(parse_message(folded).subject.size() == 1 + 100000 * 2);
  std::string many = "To: ";
  for (int i = 0; i < 100000; ++i) many += "u" + std::to_string(i) + "@x.example, ";
  many += "\r\n\r\n";
  CHECK(parse_message(many).to.size() == 10000);
}

TEST_CASE("10k nested multiparts stop at max_depth", "[unit]") {
  std::string raw = "Content-Type: multipart/mixed; boundary=b0\r\n\r\n";
  for (int i = 0; i < 10000; ++i)
    raw += "--b" + std::to_string(i) + "\r\nContent-Type: multipart/mixed; boundary=b" +
           std::to_string(i + 1) + "\r\n\r\n";
  raw += "deep text\r\n";
  message m;
  double s = seconds_to_parse(raw, m);
  REQUIRE_FALSE(m.warnings.empty());
  CHECK(s < 5.0);
  // same boundary at every level and 10k message/rfc822 wrappers
  std::string rfc;
  for (int i = 0; i < 10000; ++i) rfc += "Content-Type: message/rfc822\r\n\r\n";
  rfc += "inner";
  message r;
  CHECK(seconds_to_parse(rfc, r) < 5.0);
  CHECK_FALSE(r.warnings.empty());
  // many sibling parts: capped at max_parts
  std::string wide = "Content-Type: multipart/mixed; boundary=w\r\n\r\n";
  for (int i = 0; i < 20000; ++i) wide += "--w\r\nContent-Type: image/gif\r\n\r\nx\r\n";
  message w;
  CHECK(seconds_to_parse(wide, w) < 5.0);
  CHECK(w.attachments.size() < 1000);
}

TEST_CASE("giant base64 line and giant lines", "[unit]") {
  std::string raw = "Content-Type: multipart/mixed; boundary=g\r\n\r\n--g\r\n\r\nhi\r\n--g\r\n"
                    "Content-Type: application/octet-stream; name=big.bin\r\n"
                    "Content-Transfer-Encoding: base64\r\n\r\n";
  raw += std::string(16 * 1024 * 1024, 'A');
  raw += "==\r\n--g--\r\n";
  message m;
  double s = seconds_to_parse(raw, m);
  REQUIRE(m.attachments.size() == 1);
  CHECK(m.attachments[0].size == 12u * 1024 * 1024);
  CHECK(m.body_text == "hi");
  CHECK(s < 5.0);
  std::string text = "Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
                     std::string(4 * 1024 * 1024, '/');
  message t;
  CHECK(seconds_to_parse(text, t) < 5.0);
}

TEST_CASE("unterminated everything", "[unit]") {
  const char* cases[] = {
      "From: \"unterminated quote <a@b>\r\n\r\n",
      "From: (unterminated comment a@b\r\n\r\n",
      "From: <unterminated@angle\r\n\r\n",
      "Subject: =?utf-8?q?unterminated encoded word\r\n\r\n",
      "Subject: =?utf-8?B?\r\n\r\n",
      "Content-Type: multipart/mixed; boundary=\"unterminated\r\n\r\n--unterminated\r\n",
      "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: message/rfc822\r\n\r\nSubject: ",
      "Content-Type: text/plain; name*0*=utf-8''%E2%8",
      "Content-Type: text/html\r\n\r\n<html><!-- never closed",
      "Content-Type: text/html\r\n\r\n&#xFFFFFFFFFFFF; &#99999999999;",
      "Content-Transfer-Encoding: quoted-printable\r\n\r\n=",
      "Content-Type: text/calendar\r\n\r\nBEGIN:VEVENT\r\nSUMMARY:x\\",
      "Content-Type: message/delivery-status\r\n\r\nFinal-Recipient: rfc822;",
      "Date: (((((\r\n\r\n",
      "Subject",
      "",
      "\r\n",
      ":",
      "From:",
  };
  for (const char* c : cases) {
    INFO(c);
    CHECK_NOTHROW(parse_message(c));
  }
}

TEST_CASE("every prefix of real messages parses (grind)", "[unit]") {
  for (const char* f : {"/003-rfc5322-comments-everywhere.eml", "/140-gmail-calendar-invite.eml",
                        "/037-dsn-multiple-status.eml"}) {
    std::ifstream in(std::string(MAILSCAN_CORPUS_DIR) + f, std::ios::binary);
    REQUIRE(in);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string raw = ss.str();
    std::size_t step = raw.size() > 4000 ? raw.size() / 4000 : 1;
    for (std::size_t n = 0; n <= raw.size(); n += step) {
      std::string prefix = raw.substr(0, n); // own allocation: ASan sees reads past the end
      message m = parse_message(prefix);
      CHECK(m.warnings.size() <= 64);
    }
  }
}

TEST_CASE("inputs built to make a naive parser quadratic stay fast", "[unit]") {
  const std::size_t n = 2 * 1024 * 1024;
  auto timed = [](const std::string& raw) {
    message m;
    return seconds_to_parse(raw, m);
  };
  std::string amp = "Content-Type: text/html\r\n\r\n";
  for (std::size_t i = 0; i < n / 2; ++i) amp += "&x";
  CHECK(timed(amp) < 5.0);
  std::string head = "Content-Type: text/html\r\n\r\n";
  while (head.size() < n) head += "<head><title>";
  CHECK(timed(head) < 5.0);
  std::string param = "Content-Type: text/plain; name=a" + std::string(n, ' ') + "b\r\n\r\nx";
  CHECK(timed(param) < 5.0);
  std::string ew = "Subject: ";
  while (ew.size() < n) ew += "=?a?q?";
  ew += "?=\r\n\r\n";
  CHECK(timed(ew) < 5.0);
  std::string dashes = "\r\n" + std::string(n, '-') + "\r\n";
  CHECK(timed(dashes) < 5.0);
  std::string closes = "Content-Type: multipart/mixed; boundary=b\r\n\r\n";
  while (closes.size() < n) closes += "--b--\r\n--b\r\n";
  CHECK(timed(closes) < 5.0);
  std::string wrote = "\r\n";
  while (wrote.size() < n) wrote += "From: x\r\nFrom: y wrote:\r\n";
  CHECK(timed(wrote) < 5.0);
}

TEST_CASE("megabytes of invalid bytes in every charset path stay linear", "[unit]") {
  const std::string junk(2 * 1024 * 1024, '\xFF');
  for (const char* cs : {"shift_jis", "iso-2022-jp", "utf-8", "big5", "x-unknown", "euc-kr"}) {
    INFO(cs);
    auto t0 = std::chrono::steady_clock::now();
    bool lossy = false;
    std::string out = to_utf8(junk, cs, &lossy);
    CHECK(lossy);
    CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 5.0);
    CHECK(out.size() <= junk.size() * 3);
  }
  message m;
  CHECK(seconds_to_parse("Content-Type: text/plain; charset=shift_jis\r\n\r\n" + junk, m) < 5.0);
}

TEST_CASE("prefixes of every corpus message parse", "[unit]") {
  std::size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(MAILSCAN_CORPUS_DIR)) {
    if (e.path().extension() != ".eml") continue;
    ++files;
    std::ifstream in(e.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string raw = ss.str();
    for (std::size_t k = 0; k <= 64; ++k) {
      std::string prefix = raw.substr(0, raw.size() * k / 64);
      CHECK(parse_message(prefix).warnings.size() <= 64);
    }
  }
  CHECK(files > 0);
}
