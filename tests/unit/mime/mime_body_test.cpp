// MIME tree, transfer encodings, body text, reply-above, attachments, calendar, bounces.
#include "protocols/mime/message.hpp"

#include <catch2/catch.hpp>

using namespace mscan::mime;

namespace {
std::vector<std::string> names(const message& m) {
  std::vector<std::string> out;
  for (const auto& a : m.attachments) out.push_back(a.name);
  return out;
}
} // namespace

TEST_CASE("multipart/alternative prefers text/plain, HTML only as fallback", "[unit]") {
  auto m = parse_message(
      "Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n"
      "preamble\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>html</p>\r\n"
      "--b1\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
      "Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9 =\r\nau lait\r\n--b1--\r\nepilogue");
  CHECK(m.body_text == "café au lait");
  CHECK(m.attachments.empty());
  CHECK(m.warnings.empty());

  auto h = parse_message(
      "Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n"
      "PGh0bWw+PGhlYWQ+PHRpdGxlPlQ8L3RpdGxlPjxzdHlsZT5we2NvbG9yOnJlZH08L3N0eWxlPjwvaGVhZD48\r\n"
      "Ym9keT48cD5IZWxsbyZuYnNwOyZhbXA7IHdlbGNvbWU8L3A+PHA+TGluZSYjMzM7PGJyPm5leHQ8L3A+PHNj\r\n"
      "cmlwdD5hbGVydCgxKTwvc2NyaXB0PjwvYm9keT48L2h0bWw+\r\n");
  CHECK(h.body_text == "Hello & welcome\n\nLine!\nnext");
}

TEST_CASE("html_to_text", "[unit]") {
  CHECK(html_to_text("<div>a</div><div>b &lt;c&gt; &#x20AC;&euro;</div>") == "a\nb <c> €€");
  CHECK(html_to_text("<table><tr><td>x</td><td>y</td></tr></table>") == "x y");
  CHECK(html_to_text("a<!-- hidden -->b<br/>c") == "ab\nc");
  CHECK(html_to_text("unterminated <b") == "unterminated");
  CHECK(html_to_text("<script>never closed") == "");
  CHECK(html_to_text("R&D &unknown; &#0;") == "R&D &unknown; \xEF\xBF\xBD");
}

TEST_CASE("transfer encodings tolerate bad input", "[unit]") {
  auto b64 = parse_message("Content-Transfer-Encoding: base64\r\n\r\naGVs\r\nbG8g!!d29y\r\nbGQ");
  CHECK(b64.body_text == "hello world");
  auto qp = parse_message("Content-Transfer-Encoding: Quoted-Printable\r\n\r\n=41=4a=zz soft=\nline =");
  CHECK(qp.body_text == "AJ=zz softline ");
  auto typo = parse_message("Content-Transfer-Encoding: quoted printable;\r\n\r\na=3Db");
  CHECK(typo.body_text == "a=b");
  auto unknown = parse_message("Content-Transfer-Encoding: x-gzip64\r\n\r\nraw");
  CHECK(unknown.body_text == "raw");
  CHECK_FALSE(unknown.warnings.empty());
}

TEST_CASE("format=flowed joins soft breaks and removes stuffing", "[unit]") {
  auto m = parse_message(
      "Content-Type: text/plain; charset=utf-8; format=flowed\r\n\r\n"
      "This is a \r\nflowed paragraph.\r\n From stuffed\r\n> quoted \r\n> continues\r\n-- \r\nsig\r\n");
  CHECK(m.body_text == "This is a flowed paragraph.\nFrom stuffed\n> quoted continues\n-- \nsig\n");
  auto d = parse_message("Content-Type: text/plain; format=flowed; delsp=yes\r\n\r\nabc \r\ndef\r\n");
  CHECK(d.body_text == "abcdef\n");
}

TEST_CASE("broken multiparts", "[unit]") {
  // missing close delimiter
  auto open = parse_message("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\nfirst\r\n--x\r\n"
                            "Content-Type: application/pdf; name=a.pdf\r\n\r\n%PDF");
  CHECK(open.body_text == "first");
  CHECK(names(open) == std::vector<std::string>{"a.pdf"});
  CHECK_FALSE(open.warnings.empty());
  // boundary never appears: the body is text
  auto none = parse_message("Content-Type: multipart/mixed; boundary=x\r\n\r\njust text\r\n");
  CHECK(none.body_text == "just text\n");
  // no boundary parameter
  auto nob = parse_message("Content-Type: multipart/mixed\r\n\r\ntext\r\n");
  CHECK(nob.body_text == "text\n");
  // a longer boundary that starts with ours is not ours
  auto prefix = parse_message("Content-Type: multipart/mixed; boundary=ab\r\n\r\n--ab\r\n\r\none\r\n"
                              "--abc\r\nstill one\r\n--ab--\r\n");
  CHECK(prefix.body_text == "one\n--abc\nstill one");
  // nested multipart reusing the parent's boundary
  auto same = parse_message(
      "Content-Type: multipart/mixed; boundary=S\r\n\r\n--S\r\n"
      "Content-Type: multipart/alternative; boundary=S\r\n\r\n--S\r\nContent-Type: text/plain\r\n\r\ntext\r\n"
      "--S--\r\n\r\n--S\r\nContent-Type: image/gif; name=x.gif\r\nContent-Disposition: attachment\r\n\r\nR0lG\r\n--S--\r\n");
  CHECK(same.body_text == "text");
  CHECK(names(same) == std::vector<std::string>{"x.gif"});
  // missing Content-Type in a part = text/plain; missing subtype "text"
  auto noct = parse_message("Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n\r\nplain\r\n--q--");
  CHECK(noct.body_text == "plain");
  CHECK(parse_message("Content-Type: text\r\n\r\nt").body_text == "t");
}

TEST_CASE("message/rfc822 nesting and digests", "[unit]") {
  auto m = parse_message(
      "Subject: outer\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n\r\nouter body\r\n"
      "--o\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=fwd.eml\r\n\r\n"
      "Subject: inner\r\nContent-Type: multipart/mixed; boundary=i\r\n\r\n--i\r\n\r\ninner body\r\n"
      "--i\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"in.pdf\"\r\n\r\nJVBE\r\n"
      "--i--\r\n--o--\r\n");
  CHECK(m.subject == "outer");
  CHECK(m.body_text == "outer body");
  CHECK(names(m) == std::vector<std::string>{"fwd.eml", "in.pdf"});
  CHECK(m.attachments[0].type == "message/rfc822");
  // a forward with no text of its own falls back to the attached message's text
  auto fwd = parse_message(
      "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
      "U3ViamVjdDogaW5uZXIKCmlubmVyIHRleHQK\r\n");
  CHECK(fwd.body_text == "inner text\n");
  auto digest = parse_message(
      "Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: m1\r\n\r\nm1 body\r\n--d--\r\n");
  CHECK(digest.body_text == "m1 body");
}

TEST_CASE("attachments: RFC 2231 names, encoded names, TNEF, inline images", "[unit]") {
  auto m = parse_message(
      "Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n\r\ntext\r\n"
      "--z\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment;\r\n"
      " filename*0*=utf-8''%E2%82%AC%20rep;\r\n filename*1=\"ort.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
      "AAECAwQFBgcICQ==\r\n"
      "--z\r\nContent-Type: application/msword; name=\"=?koi8-r?B?89DJ08/LLmRvYw==?=\"\r\n\r\nx\r\n"
      "--z\r\nContent-Type: application/ms-tnef; name=winmail.dat\r\n\r\nx\r\n"
      "--z\r\nContent-Type: image/png\r\nContent-ID: <img1@x>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw==\r\n"
      "--z\r\nContent-Type: text/plain; name=notes.txt\r\nContent-Disposition: attachment\r\n\r\nnotes\r\n"
      "--z--\r\n");
  CHECK(m.body_text == "text");
  REQUIRE(names(m) == std::vector<std::string>{"€ report.pdf", "Список.doc", "winmail.dat", "", "notes.txt"});
  CHECK(m.attachments[0].size == 10);
  CHECK(m.attachments[0].type == "application/pdf");
  CHECK_FALSE(m.attachments[0].is_inline);
  CHECK(m.attachments[2].is_tnef);
  CHECK(m.attachments[3].is_inline);
  CHECK(m.attachments[3].content_id == "<img1@x>");
  CHECK(m.attachments[3].size == 4);
  // parameters: missing ';', doubled ';;', duplicates (first wins), unquoted tspecials
  auto p = parse_message(
      "Content-Type: multipart/mixed\r\n boundary=\"k\";; charset=utf-8\r\n\r\n--k\r\n"
      "Content-Type: application/pdf; name=Invoice_(3).pdf; name=\"other.pdf\"\r\n\r\nx\r\n--k--");
  CHECK(names(p) == std::vector<std::string>{"Invoice_(3).pdf"});
  // RFC 2231 section numbers that are not numbers (found by fuzzing: integer overflow)
  auto q = parse_message("Content-Type: application/pdf; name*838183818838183818=x; name*99999=y; name*1x=z\r\n\r\nx");
  REQUIRE(q.attachments.size() == 1);
}

TEST_CASE("text/calendar invitation", "[unit]") {
  auto m = parse_message(
      "Content-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n\r\nInvitation\r\n"
      "--c\r\nContent-Type: text/calendar; charset=UTF-8; method=REQUEST\r\n"
      "Content-Transfer-Encoding: 7bit\r\n\r\n"
      "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VTIMEZONE\r\nDTSTART:19700101T000000\r\nEND:VTIMEZONE\r\n"
      "BEGIN:VEVENT\r\nDTSTART;TZID=Europe/Tallinn:20240411T110000\r\nUID:abc-123@\r\n google.com\r\n"
      "SUMMARY:Quarterly review\\, Q2\\nAgenda\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n--c--\r\n");
  REQUIRE(m.calendar);
  CHECK(m.calendar->method == "REQUEST");
  CHECK(m.calendar->uid == "abc-123@google.com");
  CHECK(m.calendar->dtstart == "20240411T110000");
  CHECK(m.calendar->summary == "Quarterly review, Q2\nAgenda");
  CHECK(m.body_text == "Invitation");
}

TEST_CASE("delivery-status bounces", "[unit]") {
  auto m = parse_message(
      "From: MAILER-DAEMON@x.example\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n"
      "--r\r\n\r\nYour message could not be delivered.\r\n"
      "--r\r\nContent-Type: message/delivery-status\r\n\r\n"
      "Reporting-MTA: dns; x.example\r\n\r\n"
      "Final-Recipient: rfc822; delayed@y.example\r\nAction: delayed\r\nStatus: 4.4.1\r\n\r\n"
      "Original-Recipient: rfc822;Gone@Y.example\r\nFinal-Recipient: rfc822; <gone@y.example>\r\nAction: failed\r\n"
      "Status: 5.1.1 (user unknown)\r\n"
      "Final-Recipient: rfc822; also@y.example\r\nAction: failed\r\nStatus: 5.2.2\r\n"
      "--r\r\nContent-Type: message/rfc822\r\n\r\nSubject: original\r\n\r\nhi\r\n--r--\r\n");
  REQUIRE(m.bounce);
  CHECK(m.bounce->failed_recipients == std::vector<std::string>{"gone@y.example", "also@y.example"});
  CHECK(m.bounce->status == "5.1.1");
  CHECK(m.body_text == "Your message could not be delivered.");
  auto delay_only = parse_message(
      "Content-Type: message/delivery-status\r\n\r\nFinal-Recipient: rfc822; a@b\r\nAction: delayed\r\n");
  CHECK_FALSE(delay_only.bounce);
  auto exim = parse_message("X-Failed-Recipients: lost@z.example\r\n\r\nbody");
  REQUIRE(exim.bounce);
  CHECK(exim.bounce->failed_recipients == std::vector<std::string>{"lost@z.example"});
}

TEST_CASE("reply-above: marker, quote headers, Outlook blocks", "[unit]") {
  const std::string marker = "## Please reply above this line ##";
  CHECK(extract_reply_above("Thanks!\n\n## Please reply above this line ##\nTicket TT1 ...", marker) == "Thanks!");
  CHECK(extract_reply_above("Sounds good.\n\nOn Mon, Jan 1, 2024 at 10:00 AM Bob <bob@x> wrote:\n> hi", marker) ==
        "Sounds good.");
  CHECK(extract_reply_above("Yes.\n\nOn Mon, Jan 1, 2024 at 10:00 AM Bob Smith\n<bob@x> wrote:\n> hi", marker) ==
        "Yes.");
  CHECK(extract_reply_above("Ja.\n\nAm 01.01.2024 um 10:00 schrieb Bob <bob@x>:\n> hi", marker) == "Ja.");
  CHECK(extract_reply_above("Fine.\n\n-----Original Message-----\nFrom: Bob\nSent: Monday\n", marker) == "Fine.");
  CHECK(extract_reply_above("Ok.\n\n________________________________\nFrom: Bob <bob@x>\nSent: Monday, January 1, 2024\n"
                            "To: Alice\nSubject: hi\n",
                            marker) == "Ok.");
  CHECK(extract_reply_above("Bob wrote:\n> quoted", marker) == "");
  CHECK(extract_reply_above("No quote at all.\nFrom: here on it is still mine\n", marker) ==
        "No quote at all.\nFrom: here on it is still mine");
  parse_options o;
  o.reply_marker = "-- reply above --";
  auto m = parse_message("Content-Type: text/plain\r\n\r\nNew text\r\n-- reply above --\r\nold\r\n", o);
  CHECK(m.reply_above == "New text");
}

TEST_CASE("inline text parts around an inline image are all body text", "[unit]") {
  auto m = parse_message(
      "Content-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\nBefore the picture.\r\n"
      "--m\r\nContent-Type: image/jpeg; name=p.jpg\r\nContent-Disposition: inline; filename=p.jpg\r\n\r\n/9j/\r\n"
      "--m\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nAfter the picture, caf\xE9.\r\n--m--\r\n");
  CHECK(m.body_text == "Before the picture.\nAfter the picture, café.");
  REQUIRE(m.attachments.size() == 1);
  CHECK(m.attachments[0].is_inline);
  // alternatives are never concatenated
  auto alt = parse_message(
      "Content-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\nContent-Type: text/plain\r\n\r\none\r\n"
      "--a\r\nContent-Type: text/plain\r\n\r\nother\r\n--a--\r\n");
  CHECK(alt.body_text == "one");
}

TEST_CASE("body text line ends: CRLF and lone CR become LF, 8-bit detection past the first word", "[unit]") {
  // Lone CRs at the start, middle and end, CRLF runs, and bytes after the last CR.
  auto m = parse_message("Content-Type: text/plain\r\n\r\n\rab\r\ncd\r\r\nef\rgh\r\n\r\n\r");
  CHECK(m.body_text == "\nab\ncd\n\nef\ngh\n\n\n");
  auto n = parse_message("Content-Type: text/plain\r\n\r\nno carriage returns at all");
  CHECK(n.body_text == "no carriage returns at all");
  // Latin-1 labelled as UTF-8, the 8-bit byte beyond the first eight bytes: still detected.
  auto l = parse_message("Content-Type: text/plain; charset=iso-8859-1\r\n\r\nabcdefghij caf\xE9");
  CHECK(l.body_text == "abcdefghij caf\xC3\xA9");
}
