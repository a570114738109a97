// body_structure: parsing BODYSTRUCTURE trees, the fetch plan, the synthetic message.
#include <catch2/catch.hpp>

#include "protocols/imap/body_structure.hpp"
#include "protocols/imap/response_parser.hpp"
#include "protocols/mime/message.hpp"

using namespace mscan::imap;

namespace {

sexp structure_of(std::string bs) {
  response_parser p;
  const std::string line = "* 1 FETCH (BODYSTRUCTURE " + bs + ")\r\n";
  const auto r = p.feed(line);
  REQUIRE(r.status == feed_status::ready);
  auto resp = p.take();
  auto* f = std::get_if<fetch_data>(&resp);
  REQUIRE(f);
  REQUIRE(f->bodystructure);
  return *f->bodystructure;
}

} // namespace

TEST_CASE("body structure: nested message/rfc822, section numbers, plan", "[unit]") {
  // mixed( alternative(plain, html), rfc822( mixed(plain, image) ), pdf )
  const auto root = parse_body_structure(structure_of(
      "(((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 20 1 NIL NIL NIL NIL)"
      "(\"TEXT\" \"HTML\" (\"CHARSET\" \"utf-8\") NIL NIL \"QUOTED-PRINTABLE\" 40 1 NIL NIL NIL NIL)"
      " \"ALTERNATIVE\" (\"BOUNDARY\" \"b2\") NIL NIL NIL)"
      "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 900 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
      " ((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 30 2 NIL NIL NIL NIL)"
      "(\"IMAGE\" \"PNG\" (\"NAME\" \"x.png\") \"<id1>\" NIL \"BASE64\" 780 NIL (\"INLINE\" NIL) NIL NIL)"
      " \"MIXED\" (\"BOUNDARY\" \"b3\") NIL NIL NIL) 20 NIL (\"ATTACHMENT\" (\"FILENAME\" \"fwd.eml\")) NIL NIL)"
      "(\"APPLICATION\" \"PDF\" (\"NAME\" \"a.pdf\") NIL NIL \"BASE64\" 7800 NIL"
      " (\"ATTACHMENT\" (\"FILENAME\" \"a.pdf\")) NIL NIL)"
      " \"MIXED\" (\"BOUNDARY\" \"b1\") NIL NIL NIL)"));
  REQUIRE(root);
  REQUIRE(root->multipart());
  REQUIRE(root->children.size() == 3);
  CHECK(root->children[0].children[1].section == "1.2");
  CHECK(root->children[1].message());
  CHECK(root->children[1].section == "2");
  CHECK(root->children[1].children[0].children[1].section == "2.2");
  CHECK(root->children[2].file_name() == "a.pdf");
  const auto plan = plan_fetch(*root, "Content-Type: multipart/mixed; boundary=b1\r\n\r\n");
  // The plain text of the message; the attached message's header (its text is only a
  // fallback); no html (the plain part is there), no image, no PDF.
  CHECK(plan.items(100) == "BODY.PEEK[1.1.MIME] BODY.PEEK[1.1]<0.100> BODY.PEEK[2.HEADER]");
  REQUIRE(plan.attachments.size() == 3);
  CHECK(plan.attachments[0].name == "fwd.eml");
  CHECK(plan.attachments[1].name == "x.png");
  CHECK(plan.attachments[1].content_id == "<id1>");
  CHECK(plan.attachments[1].disposition == "inline");
  CHECK(plan.attachments[2].section == "3");
  CHECK(plan.attachments[2].size == 7800);
  CHECK(plan.attachments[2].decoded_size == 5700);
  bool truncated = true;
  const std::string raw = assemble_message(
      *root, "Subject: x\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n",
      {{"1.1.MIME", "Content-Type: text/plain; charset=utf-8\r\n\r\n"},
       {"1.1", "hello world"},
       {"2.HEADER", "Subject: inner\r\nContent-Type: multipart/mixed; boundary=b3\r\n\r\n"}},
      100, truncated);
  CHECK_FALSE(truncated);
  const auto m = mscan::mime::parse_message(raw);
  CHECK(m.subject == "x");
  CHECK(m.body_text == "hello world");
  REQUIRE(m.attachments.size() == 3);
  CHECK(m.attachments[0].type == "message/rfc822");
  CHECK(m.attachments[1].name == "x.png");
  CHECK(m.attachments[2].name == "a.pdf");
}

TEST_CASE("body structure: html only when the plain parts are (nearly) empty", "[unit]") {
  const auto root = parse_body_structure(structure_of(
      "((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)"
      "(\"TEXT\" \"HTML\" NIL NIL NIL \"7BIT\" 40 1 NIL NIL NIL NIL) \"ALTERNATIVE\" (\"BOUNDARY\" \"b\") NIL NIL NIL)"));
  REQUIRE(root);
  const auto plan = plan_fetch(*root, "Content-Type: multipart/alternative; boundary=b\r\n\r\n");
  CHECK(plan.items(9) == "BODY.PEEK[1.MIME] BODY.PEEK[1]<0.9> BODY.PEEK[2.MIME] BODY.PEEK[2]<0.9>");
  CHECK(plan.attachments.empty());
}

TEST_CASE("body structure: hostile parameters cannot add header lines to the stubs", "[unit]") {
  const auto root = parse_body_structure(structure_of(
      "((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 4 1 NIL NIL NIL NIL)"
      "(\"APPLICATION\" \"OCTET-STREAM\" (\"NAME\" {30}\r\nx\"\r\nSubject: evil\r\n\r\n--b\\y.bin) NIL NIL"
      " \"BASE64\" 100 NIL NIL NIL NIL) \"MIXED\" (\"BOUNDARY\" \"b\") NIL NIL NIL)"));
  REQUIRE(root);
  const auto plan = plan_fetch(*root, "Subject: good\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n");
  bool truncated = false;
  const std::string raw = assemble_message(
      *root, "Subject: good\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n",
      {{"1.MIME", "\r\n"}, {"1", "text"}}, 100, truncated);
  const auto m = mscan::mime::parse_message(raw);
  CHECK(m.subject == "good");
  CHECK(m.body_text == "text");
  REQUIRE(m.attachments.size() == 1);
  CHECK(m.attachments[0].name.find("Subject") != std::string::npos);  // one name, not a header
  CHECK(raw.find("\r\nSubject: evil") == std::string::npos);
}

TEST_CASE("body structure: malformed trees are refused, limits hold", "[unit]") {
  CHECK_FALSE(parse_body_structure(structure_of("(\"TEXT\")")));
  CHECK_FALSE(parse_body_structure(structure_of("((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 1 1))")));  // no subtype
  CHECK_FALSE(parse_body_structure(structure_of("(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 12x 1)")));
  std::string deep = "(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 1 1)";
  for (int i = 0; i < 20; ++i) deep = "(" + deep + " \"MIXED\")";
  body_structure_limits lim;
  lim.max_depth = 8;
  CHECK_FALSE(parse_body_structure(structure_of(deep), lim));
  CHECK(parse_body_structure(structure_of(deep)));
  // The header says multipart, the server does not: the whole message, capped.
  const auto leaf = parse_body_structure(structure_of("(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 1 1)"));
  REQUIRE(leaf);
  CHECK(plan_fetch(*leaf, "Content-Type: multipart/mixed\r\n boundary=\"q\"\r\n\r\n").items(5) == "BODY.PEEK[]<0.5>");
  CHECK(plan_fetch(*leaf, "Content-Type: text/plain\r\n\r\n").items(5) == "BODY.PEEK[TEXT]<0.5>");
  CHECK(plan_fetch(*leaf, "Content-Type: text/plain\r\n\r\n").items(0) == "BODY.PEEK[TEXT]");
}

TEST_CASE("body structure: a server that leaves out what the plan asked for cannot crash the assembly", "[unit]") {
  // Found by imap_session_fuzz: no boundary anywhere, so the plan is BODY.PEEK[]; the server
  // then sends no BODY[] at all.
  const auto root = parse_body_structure(structure_of(
      "((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 4 1)(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 9"
      " (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) ((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 1 1) \"MIXED\") 1) \"MIXED\")"));
  REQUIRE(root);
  CHECK(plan_fetch(*root, "A: b\r\n\r\n").items(5) == "BODY.PEEK[]<0.5>");
  bool truncated = false;
  const std::string raw = assemble_message(*root, "A: b\r\n\r\n", {}, 5, truncated);
  CHECK(raw.find("=_mscan_") != std::string::npos);
}
