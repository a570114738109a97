#include <catch2/catch.hpp>

#include "tests/unit/imap/parser_support.hpp"

using namespace mscan::imap;
using namespace mscan::imap::test;

TEST_CASE("dovecot transcript parses into typed responses", "[unit]") {
  const auto bytes = read_fixture("dovecot_session.txt");
  REQUIRE(!bytes.empty());
  const auto r = parse_whole(bytes);
  INFO(r.error);
  REQUIRE_FALSE(r.failed);
  REQUIRE(r.responses.size() == 30);
  CHECK(r.responses[0].rfind("status tag= OK code=3:CAPABILITY:IMAP4rev1 SASL-IR ", 0) == 0);
  CHECK(r.responses[2] == "list \\HasNoChildren delim=. name=INBOX");
  CHECK(r.responses[3] == "list \\HasNoChildren,\\Sent delim=. name=Sent");
  CHECK(r.responses[4] == "list \\Noselect,\\HasChildren delim=. name=Archive");
  CHECK(r.responses[5] == "list \\HasNoChildren delim=. name=Archive.&AMk-t&AOk-");
  CHECK(r.responses[6] == "list \\HasNoChildren delim=. name=Quote\"Me\\Up");
  CHECK(r.responses[8] == "flags \\Answered,\\Flagged,\\Deleted,\\Seen,\\Draft,$Forwarded");
  CHECK(r.responses[9] == "status tag= OK code=5:PERMANENTFLAGS:():0: text=Read-only mailbox.");
  CHECK(r.responses[10] == "exists 3");
  CHECK(r.responses[11] == "recent 0");
  CHECK(r.responses[13] == "status tag= OK code=10:UIDVALIDITY:1700000000:1700000000: text=UIDs valid");
  CHECK(r.responses[14] == "status tag= OK code=9:UIDNEXT:4:4: text=Predicted next UID");
  CHECK(r.responses[15] == "status tag= OK code=12:HIGHESTMODSEQ:7:7: text=Highest");
  CHECK(r.responses[16] == "status tag=a3 OK code=6:READ-ONLY::0: text=Examine completed (0.001 + 0.000 secs).");
  CHECK(r.responses[17] == "search 1 2 3");
  CHECK(r.responses[19] ==
        "fetch 1 uid=1 flags=\\Seen date=17-Jul-1996 02:44:25 -0700 size=77 "
        "BODY[]={From: alice@example.org\r\nTo: bob@example.com\r\nSubject: hi\r\n\r\nHello \xc3\xa9 there\r\n}");
  CHECK(r.responses[20] == "fetch 2 uid=2 flags= date= 7-Feb-2024 10:00:00 +0000 size=5 BODY[]={a\"b\\}");
  CHECK(r.responses[21] ==
        "fetch 3 uid=3 flags=\\Seen,$Label1 modseq=12 BODY[HEADER.FIELDS (FROM TO)]={ab\r\n} BODY[TEXT]<0>=NIL");
  CHECK(r.responses[22] == "expunge 2");
  CHECK(r.responses[23] == "vanished 1 41,43:116,118");
  CHECK(r.responses[24] == "statusdata Sent m=231 n=44292 v=1 u=0 h=90");
  CHECK(r.responses[25] == "esearch tag=a5 uid=1 min=2 max=30 count=4 all=2,10:11,30");
  CHECK(r.responses[26] == "search 5 9 modseq=917162500");
  CHECK(r.responses[27] == "enabled CONDSTORE,QRESYNC");
  CHECK(r.responses[28] == "status tag= BYE code=0:::0: text=Logging out");
}

TEST_CASE("exchange / office 365 transcript", "[unit]") {
  const auto r = parse_whole(read_fixture("exchange_session.txt"));
  INFO(r.error);
  REQUIRE_FALSE(r.failed);
  REQUIRE(r.responses.size() == 25);
  // A bracket at the end of the greeting text is text, not a response code.
  CHECK(r.responses[0].rfind("status tag= OK code=0:::0: text=The Microsoft Exchange", 0) == 0);
  CHECK(r.responses[1].find("AUTH=XOAUTH2") != std::string::npos);
  CHECK(r.responses[3].rfind("cont eyJzdGF0dXMi", 0) == 0);
  CHECK(r.responses[5] == "status tag=a3 NO code=0:::0: text=LOGIN failed.");
  CHECK(r.responses[6] == "status tag= BYE code=0:::0: text=Server Unavailable. 15");
  CHECK(r.responses[7] == "status tag=a4 NO code=34:UNAVAILABLE::0: text=Server Unavailable. 21");
  CHECK(r.responses[8] == "status tag=a5 NO code=30:LIMIT::0: text=Too many simultaneous connections");
  CHECK(r.responses[11] == "list \\HasNoChildren,\\Sent delim=/ name=Sent Items");
  CHECK(r.responses[12] == "list \\Noselect,\\NonExistent,\\HasChildren delim=/ name=[Gmail]");
  CHECK(r.responses[21] == "fetch 1 uid=1360 flags=\\Seen date=01-Nov-2026 09:15:02 +0100 size=2048");
  CHECK(r.responses[22] == "fetch 2 uid=0 flags=\\Seen");
  CHECK(r.responses[24] == "status tag=a9 BAD code=0:::0: text=Command Argument Error. 11");
}

TEST_CASE("gmail transcript: X-GM items, literal8, envelope, bodystructure", "[unit]") {
  const auto r = parse_whole(read_fixture("gmail_session.txt"));
  INFO(r.error);
  REQUIRE_FALSE(r.failed);
  REQUIRE(r.responses.size() == 23);
  CHECK(r.responses[3] == "status tag=a2 NO code=18:AUTHENTICATIONFAILED::0: text=Invalid credentials (Failure)");
  CHECK(r.responses[4].rfind("status tag=a3 NO code=1:ALERT::0: text=Please log in", 0) == 0);
  CHECK(r.responses[6] == "list \\HasChildren,\\Noselect delim=/ name=[Gmail]");
  CHECK(r.responses[7] == "list \\All,\\HasNoChildren delim=/ name=[Gmail]/All Mail");
  CHECK(r.responses[11] ==
        "status tag= OK code=5:PERMANENTFLAGS:(\\Answered \\Flagged \\Draft \\Deleted \\Seen "
        "$NotPhishing $Phishing \\*):0:\\Answered,\\Flagged,\\Draft,\\Deleted,\\Seen,$NotPhishing,"
        "$Phishing,\\* text=Flags permitted.");
  CHECK(r.responses[16] == "status tag= OK code=12:HIGHESTMODSEQ:1234567:1234567: text=");
  CHECK(r.responses[17] == "status tag=a4 OK code=6:READ-ONLY::0: text=[Gmail]/All Mail selected. (Success)");
  CHECK(r.responses[18] == std::string("fetch 1 uid=605 date=05-Nov-2026 18:42:11 +0000 size=9 "
                                       "modseq=1234500 msgid=1278455344230334865 "
                                       "thrid=1278455344230334865 labels=\\Inbox,\\Sent,"
                                       "Important,Muy Importante BINARY[]={bin") +
                                       std::string("\0", 1) + "ary!!}");
  CHECK(r.responses[19].find(" env=(\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" ") != std::string::npos);
  CHECK(r.responses[19].find(" bs=((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1152 23)") !=
        std::string::npos);
  CHECK(r.responses[20] == "fetch 3 uid=607 BODY[HEADER]={Subject: x\r\n} BODY[TEXT]=NIL BODY[1.2.MIME]={}");
  CHECK(r.responses[22] == "status tag= BYE code=0:::0: text=System Error");
}

TEST_CASE("every fixture gives the same responses in any chunking (grind)", "[unit]") {
  for (const char* name : {"dovecot_session.txt", "exchange_session.txt", "gmail_session.txt"}) {
    const auto bytes = read_fixture(name);
    std::string why;
    INFO(name);
    CHECK(grind(bytes, {}, &why));
    INFO(why);
  }
}

TEST_CASE("PREAUTH greeting, continuation, untagged NO/BAD", "[unit]") {
  const std::string in =
      "* PREAUTH [CAPABILITY IMAP4rev1] IMAP4rev1 server logged in as Smith\r\n"
      "+ \r\n+\r\n* NO [ALERT] disk almost full\r\n* BAD garbage seen\r\n"
      "* LSUB () \"/\" ~{4}\r\nab\xc3\xa9)\r\n"  // literal8 may hold 8-bit data; ')' closes nothing
      ;
  const auto r = parse_whole(in);
  REQUIRE(r.responses.size() >= 5);
  CHECK(r.responses[0] == "status tag= PREAUTH code=3:CAPABILITY:IMAP4rev1:0:IMAP4REV1 text=IMAP4rev1 server logged in as Smith");
  CHECK(r.responses[1] == "cont ");
  CHECK(r.responses[2] == "cont ");
  CHECK(r.responses[3] == "status tag= NO code=1:ALERT::0: text=disk almost full");
  CHECK(r.responses[4] == "status tag= BAD code=0:::0: text=garbage seen");
  // The unbalanced ')' after the literal is a protocol error.
  CHECK(r.failed);
  CHECK(grind(in));
}

TEST_CASE("LIST with NIL delimiter, quoted escapes, literal mailbox, special-use", "[unit]") {
  const std::string in =
      "* LIST (\\Noselect) NIL \"\"\r\n"
      "* LIST (\\HasNoChildren \\Drafts) \"\\\\\" \"Drafts\\\\Old \\\"x\\\"\"\r\n"
      "* LIST () \"/\" {4+}\r\nA B \r\n";
  const auto r = parse_whole(in);
  INFO(r.error);
  REQUIRE_FALSE(r.failed);
  REQUIRE(r.responses.size() == 3);
  CHECK(r.responses[0] == "list \\Noselect delim=NIL name=");
  CHECK(r.responses[1] == "list \\HasNoChildren,\\Drafts delim=\\ name=Drafts\\Old \"x\"");
  CHECK(r.responses[2] == "list  delim=/ name=A B ");
  CHECK(grind(in));
}

TEST_CASE("hostile: huge literal announcement is refused before allocating", "[unit]") {
  parser_limits l;
  l.max_literal_size = 1024;
  const auto r = parse_whole("* 1 FETCH (BODY[] {99999999999999999999999}\r\n", l);
  CHECK(r.failed);
  CHECK(r.error.find("literal larger than 1024 bytes") != std::string::npos);
  const auto r2 = parse_whole("* 1 FETCH (BODY[] {1025}\r\n", l);
  CHECK(r2.failed);
  CHECK(r2.error.find("{1025}") != std::string::npos);
  const auto r3 = parse_whole("* 1 FETCH (BODY[] {1024}\r\n", l);
  CHECK_FALSE(r3.failed);  // exactly at the limit: waits for the bytes
  CHECK(grind("* 1 FETCH (BODY[] {1025}\r\n", l));
}

TEST_CASE("hostile: deep nesting, too many items, overlong line, NUL, missing CRLF", "[unit]") {
  parser_limits l;
  l.max_depth = 8;
  l.max_items = 50;
  l.max_line_length = 200;
  std::string deep = "* 1 FETCH (BODYSTRUCTURE " + std::string(9, '(') + std::string(9, ')') + ")\r\n";
  auto r = parse_whole(deep, l);
  CHECK(r.failed);
  CHECK(r.error.find("nested deeper than 8") != std::string::npos);
  CHECK(grind(deep, l));
  std::string ok_deep = "* 1 FETCH (BODYSTRUCTURE " + std::string(7, '(') + std::string(7, ')') + ")\r\n";
  CHECK_FALSE(parse_whole(ok_deep, l).failed);

  std::string many = "* SEARCH";
  for (int i = 1; i <= 60; ++i) many += " " + std::to_string(i);
  many += "\r\n";
  r = parse_whole(many, l);
  CHECK(r.failed);
  CHECK(r.error.find("more than 50 values") != std::string::npos);

  std::string longline = "* OK " + std::string(300, 'x');  // never terminated
  r = parse_whole(longline, l);
  CHECK(r.failed);
  CHECK(r.error.find("longer than 200 bytes") != std::string::npos);
  CHECK(r.error.find("...") != std::string::npos);  // the excerpt is truncated
  CHECK(grind(longline, l));

  r = parse_whole(std::string("* OK a\0b\r\n", 10));
  CHECK(r.failed);
  CHECK(r.error.find("NUL byte") != std::string::npos);
  CHECK(r.error.find("* OK a\\x00") != std::string::npos);

  // No CRLF yet: nothing is produced, no failure, the parser waits.
  response_parser p;
  const auto fr = p.feed("* 3 EXISTS");
  CHECK(fr.status == feed_status::need_more);
  CHECK_FALSE(p.at_boundary());
  // Bare LF line endings are tolerated.
  r = parse_whole("* 3 EXISTS\n* 1 FETCH (BODY[] {2}\nab)\n");
  CHECK_FALSE(r.failed);
  CHECK(r.responses.size() == 2);
}

TEST_CASE("malformed responses are protocol errors with the offending bytes", "[unit]") {
  for (std::string in : {"a1 MAYBE later\r\n", "* 1 FETCH (UID x)\r\n", "* 1 FETCH (UID 1\r\n",
                         "* 1 FETCH (UID 1 FLAGS)\r\n", "* SEARCH 1 two\r\n", "* 1 FETCH (BODY[ \"x\")\r\n",
                         "* LIST (\\Noselect) \"ab\" INBOX\r\n", "* 1 FETCH (BODY[] \"abc)\r\n",
                         "* 1 FETCH (BODY[]<x> NIL)\r\n", "* 1 FETCH (UID 99999999999)\r\n",
                         "* 1 FETCH (UID {1}\r\n1 X {2}x)\r\n"}) {
    INFO(in);
    const auto r = parse_whole(in);
    CHECK(r.failed);
    CHECK(!r.error.empty());
    CHECK(grind(in));
  }
  // A failed parser stays failed.
  response_parser p;
  CHECK(p.feed("a1 MAYBE\r\n").status == feed_status::failed);
  CHECK(p.feed("* 1 EXISTS\r\n").status == feed_status::failed);
}

TEST_CASE("literal bodies are moved out, not copied again", "[unit]") {
  std::string body(100000, 'x');
  std::string in = "* 1 FETCH (UID 9 BODY[] {100000}\r\n" + body + ")\r\n";
  response_parser p;
  auto fr = p.feed(in);
  REQUIRE(fr.status == feed_status::ready);
  CHECK(fr.consumed == in.size());
  auto resp = p.take();
  auto& f = std::get<fetch_data>(resp);
  REQUIRE(f.find_section("") != nullptr);
  CHECK(f.find_section("")->data->size() == 100000);
  CHECK(f.uid == 9u);
}

TEST_CASE("internaldate and search date conversions", "[unit]") {
  CHECK(parse_internaldate("17-Jul-1996 02:44:25 -0700") == 837596665);
  CHECK(parse_internaldate(" 1-Jan-1970 00:00:00 +0000") == 0);
  CHECK(parse_internaldate("1-Jan-1970 01:00:00 +0100") == 0);
  CHECK_FALSE(parse_internaldate("17-Foo-1996 02:44:25 -0700"));
  CHECK_FALSE(parse_internaldate("17-Jul-1996 02:44:25"));
  CHECK(format_search_date(0) == "1-Jan-1970");
  CHECK(format_search_date(837596665) == "17-Jul-1996");
  CHECK(format_search_date(1795996800) == "30-Nov-2026");
}

TEST_CASE("an unmatched opening bracket is an ordinary atom character", "[unit]") {
  const std::string in = "* LIST () \"/\" foo[bar\r\n* LIST () \"/\" [Gmail]/Sent\r\n";
  const auto r = parse_whole(in);
  INFO(r.error);
  REQUIRE_FALSE(r.failed);
  REQUIRE(r.responses.size() == 2);
  CHECK(r.responses[0] == "list  delim=/ name=foo[bar");
  CHECK(r.responses[1] == "list  delim=/ name=[Gmail]/Sent");
  CHECK(grind(in));
}

TEST_CASE("response codes of RFC 3501/5530/4315/7162 and odd FETCH forms", "[unit]") {
  const auto bytes = read_fixture("response_codes.txt");
  const auto r = parse_whole(bytes);
  INFO(r.error);
  REQUIRE_FALSE(r.failed);
  REQUIRE(r.responses.size() == 22);
  const std::vector<std::string> expected{
      "status tag= OK code=1:ALERT::0: text=System shutdown in 10 minutes",
      "status tag=a1 NO code=8:TRYCREATE::0: text=Mailbox doesn't exist: Junk",
      "status tag=a2 NO code=33:NONEXISTENT::0: text=Unknown Mailbox: Nope (Failure)",
      "status tag=a3 NO code=24:INUSE::0: text=Mailbox in use",
      "status tag=a4 NO code=31:OVERQUOTA::0: text=Quota exceeded",
      "status tag=a5 NO code=30:LIMIT::0: text=Too many concurrent IMAP connections",
      "status tag=a6 NO code=34:UNAVAILABLE::0: text=Backend down",
      "status tag=a7 NO code=2:BADCHARSET:(UTF-8 US-ASCII):0:UTF-8,US-ASCII text=charset",
      "status tag=a8 OK code=15:COPYUID:38505 304,319:320 3956:3958:0: text=Done",
      "status tag=a9 OK code=14:APPENDUID:38505 3955:0: text=APPEND completed",
      "status tag=a10 NO code=29:CANNOT::0: text=Too long",
      "status tag=a11 BAD code=28:CLIENTBUG::0: text=Bad sequence",
      "status tag=a12 NO code=20:EXPIRED::0: text=Password expired",
      "status tag=a13 NO code=22:CONTACTADMIN::0: text=Ask your admin",
      "status tag=a14 OK code=36:X-CUSTOM-CODE:some args:0: text=fine",
      "status tag= OK code=13:NOMODSEQ::0: text=No permanent modsequences",
      "status tag= OK code=17:CLOSED::0: text=Previous mailbox closed",
      "other NAMESPACE",
      "id name=Dovecot",
      "fetch 4 uid=9 BODY[]={}",
      std::string("fetch 5 uid=10 BINARY[1]<0>={a") + std::string("\0", 1) + "b}",
      "fetch 6 uid=11 bs=((\"text\" \"plain\" NIL NIL NIL \"7bit\" 3 1) \"mixed\") BODY[]=NIL",
  };
  CHECK(r.responses == expected);
  std::string why;
  CHECK(grind(bytes, {}, &why));
  INFO(why);
}

TEST_CASE("ENVELOPE in typed form (RFC 3501 example)", "[unit]") {
  response_parser p;
  const std::string in =
      "* 12 FETCH (ENVELOPE (\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \"IMAP4rev1 WG mtg summary "
      "and minutes\" ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ((\"Terry Gray\" NIL "
      "\"gray\" \"cac.washington.edu\")) ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
      "((NIL NIL \"imap\" \"cac.washington.edu\")) ((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")"
      "(\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) NIL NIL {35}\r\n"
      "<B27397-0100000@cac.washington.edu>))\r\n";
  REQUIRE(p.feed(in).status == feed_status::ready);
  auto r = p.take();
  const auto& f = std::get<fetch_data>(r);
  REQUIRE(f.envelope);
  const auto e = to_envelope(*f.envelope);
  REQUIRE(e);
  CHECK(e->date == "Wed, 17 Jul 1996 02:23:25 -0700 (PDT)");
  CHECK(e->subject == "IMAP4rev1 WG mtg summary and minutes");
  REQUIRE(e->from.size() == 1);
  CHECK(e->from[0].name == "Terry Gray");
  CHECK_FALSE(e->from[0].adl);
  CHECK(e->from[0].mailbox == "gray");
  CHECK(e->from[0].host == "cac.washington.edu");
  REQUIRE(e->cc.size() == 2);
  CHECK(e->cc[1].name == "John Klensin");
  CHECK(e->bcc.empty());
  CHECK_FALSE(e->in_reply_to);
  CHECK(e->message_id == "<B27397-0100000@cac.washington.edu>");
  CHECK_FALSE(to_envelope(sexp{}));
}

TEST_CASE("OBJECTID: EMAILID in FETCH, MAILBOXID as a response code (RFC 8474)", "[unit]") {
  response_parser p;
  std::string_view in = "* 3 FETCH (UID 9 EMAILID (M6d99ac3275bb4e) THREADID (T64b478a75b7ea9))\r\n"
                        "* OK [MAILBOXID (F2212ea87-6097-4256-9d51-71338625)] Ok\r\n"
                        "* 4 FETCH (UID 10 EMAILID M1)\r\n";
  auto r = p.feed(in);
  REQUIRE(r.status == feed_status::ready);
  auto resp = p.take();
  auto* f = std::get_if<fetch_data>(&resp);
  REQUIRE(f);
  CHECK(f->email_id == std::optional<std::string>("M6d99ac3275bb4e"));
  in.remove_prefix(r.consumed);
  r = p.feed(in);
  REQUIRE(r.status == feed_status::ready);
  resp = p.take();
  auto* s = std::get_if<status_response>(&resp);
  REQUIRE(s);
  CHECK(s->code.name == "MAILBOXID");
  CHECK(s->code.arguments == "(F2212ea87-6097-4256-9d51-71338625)");
  in.remove_prefix(r.consumed);
  r = p.feed(in);  // EMAILID must be a parenthesised objectid
  CHECK(r.status == feed_status::failed);
}
