// Header-level behaviour: folding, duplicates, raw 8-bit, encoded words, addresses, dates,
// subjects, charsets.
#include "protocols/mime/detail.hpp"
#include "protocols/mime/message.hpp"

#include <catch2/catch.hpp>

using namespace mscan::mime;

namespace {
std::vector<std::string> emails(const std::vector<address>& v) {
  std::vector<std::string> out;
  for (const auto& a : v) out.push_back(a.email);
  return out;
}
} // namespace

TEST_CASE("header fields: folding, duplicates, obsolete WSP before colon", "[unit]") {
  auto m = parse_message(
      "From: a@x.example\r\n"
      "To: b@x.example,\r\n"
      "\tc@x.example\r\n"
      "To: d@x.example\r\n"
      "Subject  : folded\r\n"
      "  subject line\r\n"
      "Subject: second subject ignored\r\n"
      "\r\n"
      "body\r\n");
  CHECK(emails(m.to) == std::vector<std::string>{"b@x.example", "c@x.example", "d@x.example"});
  CHECK(m.subject == "folded  subject line");
  CHECK(m.normalized_subject == "folded subject line");
  CHECK(m.body_text == "body\n");
}

TEST_CASE("header block: LF only, missing separator, leading space, mbox From line", "[unit]") {
  auto lf = parse_message("Subject: x\nFrom: a@b.c\n\nhello\n");
  CHECK(lf.subject == "x");
  CHECK(lf.body_text == "hello\n");
  auto nosep = parse_message("Subject: y\nthis is body\n");
  CHECK(nosep.subject == "y");
  CHECK(nosep.body_text == "this is body\n");
  CHECK_FALSE(nosep.warnings.empty());
  auto space_sep = parse_message("Subject: z\r\n \r\nbody text\r\n");
  CHECK(space_sep.subject == "z");
  CHECK(space_sep.body_text == "body text\n");
  auto lead = parse_message(" From: Lead <lead@x.example>\nSubject: s\n\nb");
  REQUIRE(lead.from.size() == 1);
  CHECK(lead.from[0].email == "lead@x.example");
  auto mbox = parse_message("From someone@x Mon Jan 1 00:00:00 2024\nSubject: mbox\n\nb");
  CHECK(mbox.subject == "mbox");
}

TEST_CASE("raw 8-bit headers: UTF-8 kept, legacy bytes via body charset", "[unit]") {
  auto utf = parse_message("Subject: S\xC3\xA4ying\r\nFrom: J\xC3\xB6hn <j@x.example>\r\n\r\n");
  CHECK(utf.subject == "S\xC3\xA4ying");
  CHECK(utf.from.at(0).display_name == "J\xC3\xB6hn");
  auto koi = parse_message(
      "Subject: \xF0\xD2\xC9\xD7\xC5\xD4\r\nContent-Type: text/plain; charset=koi8-r\r\n\r\n");
  CHECK(koi.subject == "Привет");
  auto latin = parse_message("Subject: caf\xE9\r\n\r\n");
  CHECK(latin.subject == "café");
}

TEST_CASE("RFC 2047 encoded words", "[unit]") {
  CHECK(decode_encoded_words("=?utf-8?q?caf=C3=A9_au_lait?=") == "café au lait");
  CHECK(decode_encoded_words("=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?= "
                             "=?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=") ==
        "If you can read this you understand the example.");
  // whitespace between adjacent encoded words disappears, not between word and text
  CHECK(decode_encoded_words("=?utf-8?q?a?= =?utf-8?q?b?=") == "ab");
  CHECK(decode_encoded_words("=?utf-8?q?a?= b") == "a b");
  CHECK(decode_encoded_words("x =?utf-8?q?a?=\r\n =?utf-8?q?b?= y") == "x ab y");
  // a multi-byte character split across two words (bytes are joined before conversion)
  CHECK(decode_encoded_words("=?utf-8?B?w6k=?= =?utf-8?B?4oKs?=") == "é€");
  CHECK(decode_encoded_words("=?utf-8?q?=E2=82?= =?utf-8?q?=AC?=") == "€");
  // ISO-2022-JP with escape sequences, RFC 2231 language suffix, lower-case encoding letter
  CHECK(decode_encoded_words("=?ISO-2022-JP?B?GyRCJEQkRCQqGyhC?=") == "つつお");
  CHECK(decode_encoded_words("=?iso-8859-2*sl?q?Doma=E8e?=") == "Domače");
  // bad padding, unknown charset, unterminated, empty
  CHECK(decode_encoded_words("=?utf-8?b?w6k?=") == "é");
  CHECK(decode_encoded_words("=?NONE?B?VEVTVA=?=") == "TEST");
  CHECK(decode_encoded_words("=?utf-8?q?unterminated") == "=?utf-8?q?unterminated");
  CHECK(decode_encoded_words("=?utf-8?x?bad-encoding?=") == "=?utf-8?x?bad-encoding?=");
  CHECK(decode_encoded_words("") == "");
  CHECK(decode_encoded_words("=?") == "=?");
}

TEST_CASE("to_utf8 for every supported charset", "[unit]") {
  struct sample {
    std::string_view charset, bytes, utf8;
  };
  const sample samples[] = {
      {"iso-8859-2", std::string_view("\xB1\xE6\xEA\xB3\xF1\xF3\xB6\xBC\xBF"), "ąćęłńóśźż"},
      {"iso-8859-5", std::string_view("\xBF\xE0\xD8\xD2\xD5\xE2"), "Привет"},
      {"iso-8859-7", std::string_view("\xC3\xE5\xE9\xDC"), "Γειά"},
      {"iso-8859-9", std::string_view("\xFE\xF0\xDD"), "şğİ"},
      {"iso-8859-15", std::string_view("\xA4\x75\x72\x6F"), "€uro"},
      {"windows-1250", std::string_view("\x5A\x61\xBF\xF3\xB3\xE6"), "Zażółć"},
      {"windows-1251", std::string_view("\xCF\xF0\xE8\xE2\xE5\xF2"), "Привет"},
      {"windows-1252", std::string_view("\x80\x93\x71\x75\x6F\x74\x65\x64\x94"), "€“quoted”"},
      {"windows-1253", std::string_view("\xC3\xE5\xE9\xDC"), "Γειά"},
      {"windows-1254", std::string_view("\xFE\xF0\xDD"), "şğİ"},
      {"windows-1255", std::string_view("\xF9\xEC\xE5\xED"), "שלום"},
      {"windows-1256", std::string_view("\xE3\xD1\xCD\xC8\xC7"), "مرحبا"},
      {"windows-1257", std::string_view("\xE0\xE8\xE6"), "ąčę"},
      {"windows-1258", std::string_view("\xC3"), "Ă"},
      {"koi8-r", std::string_view("\xF0\xD2\xC9\xD7\xC5\xD4"), "Привет"},
      {"gb2312", std::string_view("\xC4\xE3\xBA\xC3"), "你好"},
      {"GBK", std::string_view("\xC4\xE3\xBA\xC3"), "你好"},
      {"gb18030", std::string_view("\xC4\xE3\xBA\xC3"), "你好"},
      {"big5", std::string_view("\xA4\xA4\xA4\xE5"), "中文"},
      {"Shift_JIS", std::string_view("\x82\xA0\x82\xA2\x82\xA4"), "あいう"},
      {"euc-jp", std::string_view("\xA4\xA2\xA4\xA4\xA4\xA6"), "あいう"},
      {"iso-2022-jp", std::string_view("\x1B\x24\x42\x24\x22\x24\x24\x24\x26\x1B\x28\x42"), "あいう"},
      {"euc-kr", std::string_view("\xC7\xD1\xB1\xB9\xBE\xEE"), "한국어"},
      {"ks_c_5601-1987", std::string_view("\xC7\xD1\xB1\xB9\xBE\xEE"), "한국어"},
      {"iso-8859-1", std::string_view("\x63\x61\x66\xE9"), "café"},
      {"\"us-ascii\"", std::string_view("plain"), "plain"},
      {"UTF-8", std::string_view("\xE2\x9C\x94"), "✔"},
  };
  for (const auto& s : samples) {
    INFO(s.charset);
    bool lossy = true;
    CHECK(to_utf8(s.bytes, s.charset, &lossy) == s.utf8);
    CHECK_FALSE(lossy);
  }
  // multi-byte sequences that straddle the converter's internal 4096-byte chunks
  std::string long_sjis, long_utf8;
  for (int k = 0; k < 3000; ++k) {
    long_sjis += k % 7 == 0 ? std::string("a") : std::string("\x82\xA0");
    long_utf8 += k % 7 == 0 ? "a" : "あ";
  }
  bool long_lossy = true;
  CHECK(to_utf8(long_sjis, "shift_jis", &long_lossy) == long_utf8);
  CHECK_FALSE(long_lossy);
  std::string long_jis = "\x1B\x24\x42";
  std::string long_jis_utf8;
  for (int k = 0; k < 5000; ++k) {
    long_jis += "\x24\x22";
    long_jis_utf8 += "あ";
  }
  long_jis += "\x1B\x28\x42";
  CHECK(to_utf8(long_jis, "iso-2022-jp", &long_lossy) == long_jis_utf8);
  CHECK_FALSE(long_lossy);
  for (int n = 1; n <= 15; ++n) {
    if (n == 12) continue; // ISO-8859-12 was never published
    bool lossy = true;
    std::string cs = "iso-8859-" + std::to_string(n);
    INFO(cs);
    std::string out = to_utf8("A\xE9", cs, &lossy);
    CHECK_FALSE(lossy);
    CHECK(out.size() >= 3);
  }
  bool lossy = false;
  CHECK(to_utf8("abc\xFF", "x-unknown-charset", &lossy) == "abc\xC3\xBF");
  CHECK(lossy);
  lossy = false;
  CHECK(to_utf8("ok \xC3\xA9\xC3", "utf-8", &lossy) == "ok é\xEF\xBF\xBD");
  CHECK(lossy);
  lossy = false;
  CHECK(to_utf8("caf\xE9", "utf-8", &lossy) == "café"); // mislabelled Latin-1
  CHECK(lossy);
  lossy = false;
  CHECK(to_utf8("\xA4\xA4\xA4", "big5", &lossy) == "中\xEF\xBF\xBD"); // truncated sequence
  CHECK(lossy);
}

TEST_CASE("addresses: names, comments, groups, routes, IDN, sub-addresses", "[unit]") {
  auto a = parse_address_list(
      "\"Doe, John \\\"JD\\\"\" <John.Doe@EXAMPLE.com>, Pete(A nice \\) chap) "
      "<pete(his account)@silly.test(his host)>, =?utf-8?q?J=C3=B6rg?= <j@x.example>");
  REQUIRE(a.size() == 3);
  CHECK(a[0].display_name == "Doe, John \"JD\"");
  CHECK(a[0].email == "John.Doe@example.com");
  CHECK(a[0].normalized == "john.doe@example.com");
  CHECK(a[1].display_name == "Pete");
  CHECK(a[1].email == "pete@silly.test");
  CHECK(a[2].display_name == "Jörg");

  auto g = parse_address_list("A Group:Chris Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;, "
                              "undisclosed-recipients:;, Undisclosed recipients :(nobody) ;");
  CHECK(emails(g) == std::vector<std::string>{"c@a.test", "joe@where.test", "jdoe@one.test"});

  auto r = parse_address_list("Mary Smith <@machine.tld,@relay.tld:mary@example.net>, , jdoe@test   . example");
  CHECK(emails(r) == std::vector<std::string>{"mary@example.net", "jdoe@test.example"});

  auto idn = parse_address_list("Dörte <Dörte@Sörensen.EXAMPLE.com>");
  REQUIRE(idn.size() == 1);
  CHECK(idn[0].email == "Dörte@sörensen.example.com");

  parse_options strip;
  strip.strip_subaddress = true;
  auto sub = parse_address_list("Bob <Bob+Sales@Acme.example>", strip);
  REQUIRE(sub.size() == 1);
  CHECK(sub[0].email == "Bob+Sales@acme.example");
  CHECK(sub[0].normalized == "bob@acme.example");
  CHECK(parse_address_list("Bob <Bob+Sales@Acme.example>")[0].normalized == "bob+sales@acme.example");

  // broken forms seen in the wild
  CHECK(emails(parse_address_list("a@x.example b@x.example")) ==
        std::vector<std::string>{"a@x.example", "b@x.example"});
  CHECK(emails(parse_address_list("Bob <bob@x> Bobby <bobby@x>")) ==
        std::vector<std::string>{"bob@x", "bobby@x"});
  auto lookalike = parse_address_list("alice@example.com <bob@example.com>");
  REQUIRE(lookalike.size() == 1);
  CHECK(lookalike[0].email == "bob@example.com");
  CHECK(lookalike[0].display_name == "alice@example.com");
  CHECK(parse_address_list("\"KLAUS\" <>").empty());
  CHECK(emails(parse_address_list("<mailto:Bob@X.example>")) == std::vector<std::string>{"Bob@x.example"});
  CHECK(emails(parse_address_list("v6 <user@[IPv6:2001:db8::1]>")) ==
        std::vector<std::string>{"user@[ipv6:2001:db8::1]"});
  CHECK(parse_address_list("<Undisclosed-Recipient:@mailman.enron.com;>").empty());
  CHECK(parse_address_list("").empty());
  CHECK(parse_address_list("Just A Name").empty());
  CHECK(emails(parse_address_list("localuser")) == std::vector<std::string>{"localuser"});
  // unterminated everything: no crash, best effort
  CHECK(parse_address_list("\"unterminated <a@b>").size() <= 1);
  CHECK(emails(parse_address_list("Name <a@b.example")) == std::vector<std::string>{"a@b.example"});
  CHECK(emails(parse_address_list("(comment a@b.example")).empty());
}

TEST_CASE("message ids, references, thread headers", "[unit]") {
  auto m = parse_message(
      "Message-ID: <1234 @ local(blah) .machine .example>\r\n"
      "In-Reply-To: <a@b.example> (Bob's message)\r\n"
      "References: <x@y.example>\r\n <a@b.example> bare@id.example\r\n"
      "Thread-Index: AcSvhPkKlNJdj1HyS6qGTg==\r\n"
      "Thread-Topic: =?utf-8?q?Caf=C3=A9?=\r\n\r\n");
  CHECK(m.message_id == "<1234@local.machine.example>");
  CHECK(m.in_reply_to == std::vector<std::string>{"<a@b.example>"});
  CHECK(m.references == std::vector<std::string>{"<x@y.example>", "<a@b.example>", "<bare@id.example>"});
  CHECK(m.thread_index == "AcSvhPkKlNJdj1HyS6qGTg==");
  CHECK(m.thread_topic == "Café");
  CHECK(parse_message("Message-ID:\r\n\r\n").message_id.empty());
}

TEST_CASE("dates: RFC 5322, obsolete and broken forms", "[unit]") {
  CHECK(parse_date("Fri, 21 Nov 1997 09:55:06 -0600") == 880127706);
  CHECK(parse_date("21 Nov 1997 09:55:06 GMT") == 880106106);
  CHECK(parse_date("Thu,\r\n 13\r\n Feb\r\n 1969\r\n 23:32\r\n -0330 (Newfoundland Time)") == -27723480);
  CHECK(parse_date("Wed, 11 Feb 98 11:51 CST") == 887219460);  // 2-digit year, zone name
  CHECK(parse_date("Mon, 1 Jan 2024 00:00:00 +0000 (UTC)") == 1704067200);
  CHECK(parse_date("1 Jan 2024 00:00 PDT") == 1704092400);
  CHECK(parse_date("2024-04-11T08:00:00Z") == 1712822400);
  CHECK(parse_date("2024-04-11 11:00:00 +03:00") == 1712822400);
  CHECK(parse_date("Mon Jan  1 00:00:00 2024") == 1704067200);    // asctime
  CHECK(parse_date("Monday, January 1, 2024 12:00:00 AM") == 1704067200);
  CHECK(parse_date("Sat, 22 Jun 2013 18:27:80 +0000") == std::nullopt);
  CHECK(parse_date("Fri, 02 Jan 1998 27:00:00 +0000") == std::nullopt); // hour 27
  CHECK(parse_date("30 Feb 2020 00:00:00 +0000") == std::nullopt);
  CHECK(parse_date("Malformed Date.") == std::nullopt);
  CHECK(parse_date("") == std::nullopt);
  auto m = parse_message("Date: garbage\r\n\r\n");
  CHECK_FALSE(m.date);
  CHECK_FALSE(m.warnings.empty());
  auto rcvd = parse_message("Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                            "Received: from c by a; Sun, 31 Dec 2023 23:59:00 +0000\r\n\r\n");
  CHECK(rcvd.date == std::optional<std::int64_t>(1704067200));
}

TEST_CASE("dates: the canonical form's fast path answers as the general parser does", "[unit]") {
  // Generated canonical dates and near-misses (which the fast path leaves to the general one).
  const char* dows[] = {"", "Mon, ", "Sun,  ", "Mar, ", "EST, ", "Fri,"};
  const char* months[] = {"Jan", "Feb", "mar", "DEC", "Sept", "Nov"};
  const char* days[] = {"1", "01", "29", "30", "31", "0", "123"};
  const char* years[] = {"1969", "2024", "1899", "98"};
  const char* times[] = {"00:00", "9:05:07", "23:59:60", "24:00:00", "12:5:00", "08:00:00.5"};
  const char* zones[] = {"+0000", "-0330", "+1400", "GMT", "+02:00", "-0000 (UTC)", "+0100\r\n", "+01000"};
  std::size_t checked = 0, answered = 0, fast_answered = 0;
  for (auto dow : dows)
    for (auto mon : months)
      for (auto day : days)
        for (auto year : years)
          for (auto time : times)
            for (auto zone : zones) {
              const std::string v = std::string(" ") + dow + day + " " + mon + " " + year + " " + time + " " + zone;
              const auto general = mscan::mime::detail::parse_date_general(v);
              const auto fast = mscan::mime::detail::parse_canonical_date(v);
              INFO(v);
              CHECK(parse_date(v) == general);
              if (fast)
                CHECK(fast == general);
              ++checked;
              answered += general.has_value();
              fast_answered += fast.has_value();
            }
  CHECK(checked > 10000);
  CHECK(answered > 1000);
  CHECK(fast_answered > 500);  // the fast path does answer the canonical forms
  CHECK(mscan::mime::detail::parse_canonical_date("Thu, 01 Jan 2026 10:00:00 +0000") == 1767261600);
  CHECK(mscan::mime::detail::parse_canonical_date("1 Jan 2026 10:00 -0130") == 1767261600 + 5400);
  CHECK(parse_date("Fri, 21 Nov 1997 09:55:06 -0600\r\n") == 880127706);
}

TEST_CASE("subject normalisation in several languages", "[unit]") {
  CHECK(normalize_subject("Re: Fwd: AW: WG: SV: VS: R: TR: RV: Odp: Hello") == "Hello");
  CHECK(normalize_subject("RE[2]: Re(3): re^4: FW : Hello   world") == "Hello world");
  CHECK(normalize_subject("回复：转发: 答复：Hello") == "Hello");
  CHECK(normalize_subject("[Fwd: [Fwd: FW: Moment]]") == "Moment");
  CHECK(normalize_subject("Something (fwd)") == "Something");
  CHECK(normalize_subject("Research: Re-entry") == "Research: Re-entry");
  CHECK(normalize_subject("Ire: not a prefix") == "Ire: not a prefix");
  CHECK(normalize_subject("[list] Re: tagged") == "[list] Re: tagged");
  CHECK(normalize_subject("") == "");
  CHECK(normalize_subject("Re:") == "");
}

TEST_CASE("normalize_email: case, IDNA A-labels, sub-addresses", "[unit]") {
  CHECK(normalize_email("Bob@Example.COM") == "bob@example.com");
  CHECK(normalize_email("bob@xn--bcher-kva.example") == "bob@bücher.example");
  CHECK(normalize_email("bob@XN--BCHER-KVA.example") == "bob@bücher.example");
  CHECK(normalize_email("Bob@Bücher.Example") == "bob@bücher.example");
  CHECK(normalize_email("info@xn--b1agajc0ayikbb.example") == "info@университет.example");
  CHECK(normalize_email("x@xn--esempio-universit-4ob.it") == "x@esempio-università.it");
  CHECK(normalize_email("ÄRGER@Straße.example") == "ärger@straße.example");
  CHECK(normalize_email("ИВАН@ПОЧТА.рф") == "иван@почта.рф");
  CHECK(normalize_email("x@xn--99999999999.example") == "x@xn--99999999999.example"); // malformed: kept
  CHECK(normalize_email("x@xn--.example") == "x@xn--.example");
  parse_options strip;
  strip.strip_subaddress = true;
  CHECK(normalize_email("Bob+Sales@Acme.example", strip) == "bob@acme.example");
  CHECK(normalize_email("+only@acme.example", strip) == "+only@acme.example");
  auto parsed = parse_address_list("Bob <Bob@XN--BCHER-KVA.example>");
  REQUIRE(parsed.size() == 1);
  CHECK(parsed[0].email == "Bob@xn--bcher-kva.example");
  CHECK(parsed[0].normalized == normalize_email("bob@bücher.example"));
  CHECK(normalize_email("") == "");
  CHECK(normalize_email("bad\xFF@x") == "bad\xEF\xBF\xBD@x");
}

TEST_CASE("unknown charsets decode lossy with a warning, never fail", "[unit]") {
  auto m = parse_message("Subject: =?x-klingon?q?caf=E9?=\r\nContent-Type: text/plain; charset=x-klingon\r\n\r\ncaf\xE9\r\n");
  CHECK(m.subject == "café");
  CHECK(m.body_text == "café\n");
  REQUIRE(m.warnings.size() >= 2);
  bool subject_warned = false, body_warned = false;
  for (const auto& w : m.warnings) {
    subject_warned = subject_warned || w.rfind("Subject", 0) == 0;
    body_warned = body_warned || w.rfind("body text", 0) == 0;
  }
  CHECK(subject_warned);
  CHECK(body_warned);
}
