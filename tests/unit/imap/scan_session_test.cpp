// scan_session driven by scripted server transcripts: no sockets, no threads, no sleeps.
#include <catch2/catch.hpp>

#include <sstream>

#include "protocols/imap/scan_session.hpp"

using namespace mscan::imap;

namespace {

std::string describe(const session_output& o) {
  std::ostringstream s;
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, write_bytes>) s << "write " << v.data;
        else if constexpr (std::is_same_v<T, start_tls>) s << "start_tls";
        else if constexpr (std::is_same_v<T, folder_opened>)
          s << "opened " << v.folder << " v=" << v.uidvalidity << " n=" << v.uidnext
            << " e=" << v.exists << " changed=" << v.uidvalidity_changed;
        else if constexpr (std::is_same_v<T, message_fetched>) {
          s << "msg " << v.folder << " v=" << v.uidvalidity << " uid=" << v.uid << " size=" << v.size
            << " date=" << v.internaldate << " flags=";
          for (const auto& f : v.flags) s << f << ";";
          s << " trunc=" << v.truncated << " raw=" << v.raw;
        } else if constexpr (std::is_same_v<T, batch_complete>)
          s << "batch " << v.folder << " v=" << v.uidvalidity << " high=" << v.highest_uid;
        else if constexpr (std::is_same_v<T, folder_complete>)
          s << "folder " << v.folder << " v=" << v.uidvalidity << " high=" << v.highest_uid
            << " modseq=" << v.highest_modseq;
        else if constexpr (std::is_same_v<T, scan_complete>) s << "complete";
        else if constexpr (std::is_same_v<T, scan_failed>)
          s << "failed " << to_string(v.err.kind) << " retry=" << v.err.retry_after_s << ": "
            << v.err.detail;
      },
      o);
  return s.str();
}

// Drives a session like the mailbox actor would: server bytes in (in chunks of `chunk`
// bytes), outputs drained after every chunk. Writes are collected separately so a test can
// check exactly what the client sent.
struct driver {
  explicit driver(session_options o, std::size_t chunk = 0) : s(std::move(o)), chunk(chunk) {}
  scan_session s;
  std::size_t chunk;
  bool auto_resume = false;          // resume() as soon as a batch completes
  std::string written;               // client bytes not yet checked
  std::vector<std::string> events;   // every non-write output, in order

  void drain() {
    while (auto o = s.poll()) {
      if (auto* w = std::get_if<write_bytes>(&*o)) written += w->data;
      else events.push_back(describe(*o));
    }
  }
  void server(std::string_view bytes) {
    if (chunk == 0) {
      s.on_bytes(bytes);
      drain();
      return;
    }
    for (std::size_t i = 0; i < bytes.size(); i += chunk) {
      s.on_bytes(bytes.substr(i, chunk));
      drain();
      if (auto_resume && s.awaiting_resume()) {
        s.resume();
        drain();
      }
    }
  }
  std::string client() {
    drain();
    return std::exchange(written, {});
  }
  std::vector<std::string> take_events() {
    drain();
    return std::exchange(events, {});
  }
};

session_options basic_options() {
  session_options o;
  o.username = "alice";
  o.secret = "s3cret-pw";
  // These transcripts pin the whole-message strategy; structure_fetch_test.cpp covers the
  // default (BODYSTRUCTURE + text parts).
  o.fetch = fetch_strategy::whole_message;
  return o;
}

const std::string hello = "hello";

} // namespace

TEST_CASE("scan session: happy path through LIST, batches, truncation, LOGOUT", "[unit]") {
  const std::size_t chunk = GENERATE(0u, 1u, 7u);
  INFO("chunk " << chunk);
  auto o = basic_options();
  o.batch_size = 2;
  o.max_message_bytes = 100;
  driver d(o, chunk);
  CHECK(d.client().empty());
  d.server("* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR AUTH=PLAIN] Dovecot ready.\r\n");
  CHECK(d.client() == "a1 LOGIN alice s3cret-pw\r\n");
  d.server("a1 OK [CAPABILITY IMAP4rev1 LITERAL+ SPECIAL-USE] Logged in\r\n");
  CHECK(d.client() == "a2 LIST \"\" \"*\"\r\n");
  d.server("* LIST (\\HasNoChildren) \".\" INBOX\r\n"
           "* LIST (\\Noselect \\HasChildren) \".\" Archive\r\n"
           "* LIST (\\NonExistent) \".\" Gone\r\n"
           "* LIST (\\HasNoChildren) \".\" \"Archive.&AMk-t&AOk-\"\r\n"
           "a2 OK List completed.\r\n");
  // The search goes out behind the EXAMINE (one round trip per folder fewer).
  CHECK(d.client() == "a3 EXAMINE INBOX\r\na4 UID SEARCH ALL\r\na5 UID SEARCH ALL LARGER 100\r\n");
  d.server("* FLAGS (\\Answered \\Seen)\r\n* 3 EXISTS\r\n* 0 RECENT\r\n"
           "* OK [UIDVALIDITY 5] UIDs valid\r\n* OK [UIDNEXT 11] Predicted next UID\r\n"
           "* OK [HIGHESTMODSEQ 77] Highest\r\na3 OK [READ-ONLY] Examine completed.\r\n");
  CHECK(d.take_events() == std::vector<std::string>{"opened INBOX v=5 n=11 e=3 changed=0"});
  CHECK(d.client().empty());
  d.server("* SEARCH 3 7 10\r\na4 OK Search completed.\r\n* SEARCH 10\r\na5 OK Search completed.\r\n");
  CHECK(d.client() == "a6 UID FETCH 3,7 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])\r\n");
  d.server("* 1 FETCH (UID 3 FLAGS (\\Seen) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" "
           "RFC822.SIZE 5 BODY[] {5}\r\nhello)\r\n"
           "* 1 FETCH (FLAGS (\\Seen \\Flagged))\r\n"   // unsolicited: ignored
           "* 4 EXISTS\r\n"
           "* 2 FETCH (UID 7 FLAGS () INTERNALDATE \"01-Jan-1970 00:00:10 +0000\" "
           "RFC822.SIZE 3 BODY[] \"a\\\"b\")\r\n"
           "a6 OK Fetch completed.\r\n");
  CHECK(d.take_events() ==
        std::vector<std::string>{
            "msg INBOX v=5 uid=3 size=5 date=837596665 flags=\\Seen; trunc=0 raw=hello",
            "msg INBOX v=5 uid=7 size=3 date=10 flags= trunc=0 raw=a\"b", "batch INBOX v=5 high=7"});
  // Gated: nothing more happens until the owner has capacity.
  CHECK(d.s.awaiting_resume());
  d.server("* 5 EXISTS\r\n");
  CHECK(d.client().empty());
  CHECK(d.take_events().empty());
  d.s.resume();
  CHECK_FALSE(d.s.awaiting_resume());
  CHECK(d.client() == "a7 UID FETCH 10 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER] "
                      "BODY.PEEK[TEXT]<0.100>)\r\n");
  d.server("* 3 FETCH (UID 10 FLAGS (\\Recent) INTERNALDATE \"01-Jan-1970 00:01:00 +0000\" "
           "RFC822.SIZE 5000 BODY[HEADER] {11}\r\nSubject: x\n BODY[TEXT]<0> {4}\r\nbody)\r\n"
           "a7 OK Fetch completed.\r\n");
  CHECK(d.take_events() ==
        std::vector<std::string>{
            "msg INBOX v=5 uid=10 size=5000 date=60 flags=\\Recent; trunc=1 raw=Subject: x\nbody",
            "batch INBOX v=5 high=10"});
  d.s.resume();
  CHECK(d.take_events() == std::vector<std::string>{"folder INBOX v=5 high=10 modseq=77"});
  CHECK(d.client() == "a8 EXAMINE Archive.&AMk-t&AOk-\r\na9 UID SEARCH ALL\r\na10 UID SEARCH ALL LARGER 100\r\n");
  d.server("* 0 EXISTS\r\n* OK [UIDVALIDITY 9] x\r\n* OK [UIDNEXT 1] x\r\na8 OK done\r\n");
  CHECK(d.take_events() == std::vector<std::string>{
                               "opened Archive.\xc3\x89t\xc3\xa9 v=9 n=1 e=0 changed=0",
                               "folder Archive.\xc3\x89t\xc3\xa9 v=9 high=0 modseq=0", "complete"});
  CHECK(d.client() == "a11 LOGOUT\r\n");
  CHECK(d.s.finished());
  // The empty folder's searches were not needed: their answers are ignored.
  d.server("* SEARCH\r\na9 OK Search completed.\r\n* SEARCH 4\r\na10 OK Search completed.\r\n"
           "* BYE Logging out\r\na11 OK Logout completed.\r\n");
  d.s.on_eof();
  CHECK(d.take_events().empty());
}

TEST_CASE("scan session: CAPABILITY when the greeting has none, PREAUTH skips login", "[unit]") {
  auto o = basic_options();
  o.folders = {"INBOX"};
  driver d(o);
  d.server("* OK Gimap ready\r\n");
  CHECK(d.client() == "a1 CAPABILITY\r\n");
  d.server("* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\na1 OK Thats all she wrote!\r\n");
  CHECK(d.client() == "a2 LOGIN alice s3cret-pw\r\n");
  CHECK(d.s.capabilities() == std::vector<std::string>{"IMAP4REV1", "AUTH=PLAIN"});

  driver p(o);
  p.server("* PREAUTH [CAPABILITY IMAP4rev1] logged in as alice\r\n");
  CHECK(p.client() == "a1 EXAMINE INBOX\r\na2 UID SEARCH ALL\r\na3 UID SEARCH ALL LARGER 2097152\r\n");
}

TEST_CASE("scan session: STARTTLS upgrade, missing STARTTLS, injection after OK", "[unit]") {
  auto o = basic_options();
  o.starttls = true;
  o.folders = {"INBOX"};
  {
    driver d(o);
    d.server("* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n");
    CHECK(d.client() == "a1 STARTTLS\r\n");
    d.server("a1 OK Begin TLS negotiation now.\r\n");
    CHECK(d.take_events() == std::vector<std::string>{"start_tls"});
    d.s.on_tls_established();
    CHECK(d.client() == "a2 CAPABILITY\r\n");
    CHECK(d.s.capabilities().empty());
    d.server("* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\na2 OK done\r\n");
    CHECK(d.client() == "a3 LOGIN alice s3cret-pw\r\n");
  }
  {
    driver d(o);
    d.server("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n");
    CHECK(d.client().empty());  // no downgrade: the password is never sent in clear
    const auto ev = d.take_events();
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].rfind("failed starttls_unavailable", 0) == 0);
    CHECK(d.s.finished());
  }
  {
    driver d(o);
    d.server("* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n");
    CHECK(d.client() == "a1 STARTTLS\r\n");
    d.server("a1 OK Begin TLS\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n");
    const auto ev = d.take_events();
    REQUIRE(ev.size() == 2);
    CHECK(ev[0] == "start_tls");
    CHECK(ev[1].rfind("failed protocol_error", 0) == 0);
    CHECK(ev[1].find("data after STARTTLS") != std::string::npos);
  }
  {
    driver d(o);
    d.server("* PREAUTH ready\r\n");
    const auto ev = d.take_events();
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].rfind("failed starttls_unavailable", 0) == 0);
  }
}

TEST_CASE("scan session: login failures are classified, secrets never in details", "[unit]") {
  struct row { std::string reply; std::string prefix; std::uint32_t retry; };
  const row rows[] = {
      {"a1 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n", "failed login_failed", 0},
      {"a1 NO LOGIN failed.\r\n", "failed login_failed", 0},
      {"a1 NO [UNAVAILABLE] Temporary authentication failure\r\n", "failed account_unavailable", 0},
      {"a1 NO [EXPIRED] Password expired\r\n", "failed account_unavailable", 0},
      {"a1 NO Account is disabled\r\n", "failed account_unavailable", 0},
      {"a1 NO Server Unavailable. 15\r\n", "failed throttled", 60},
      {"a1 NO [LIMIT] Too many connections, retry after 30 seconds\r\n", "failed throttled", 30},
      {"* BYE Server Unavailable. 15\r\n", "failed throttled", 60},
      {"a1 NO [AUTHENTICATIONFAILED] bad password s3cret-pw\r\n", "failed login_failed", 0},
      {"a1 BAD echo " + sasl_plain("alice", "s3cret-pw") + "\r\n", "failed login_failed", 0},
  };
  for (const auto& r : rows) {
    INFO(r.reply);
    driver d(basic_options());
    d.server("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n");
    CHECK(d.client() == "a1 LOGIN alice s3cret-pw\r\n");
    d.server(r.reply);
    const auto ev = d.take_events();
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].rfind(r.prefix, 0) == 0);
    CHECK(ev[0].find("retry=" + std::to_string(r.retry) + ":") != std::string::npos);
    CHECK(ev[0].find("s3cret-pw") == std::string::npos);
    CHECK(ev[0].find(sasl_plain("alice", "s3cret-pw")) == std::string::npos);
    CHECK(d.s.finished());
  }
}

TEST_CASE("scan session: AUTHENTICATE PLAIN / XOAUTH2 and unsupported mechanisms", "[unit]") {
  {
    driver d(basic_options());
    d.server("* OK [CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=PLAIN] ready\r\n");
    CHECK(d.client() == "a1 AUTHENTICATE PLAIN\r\n");  // no SASL-IR: wait for '+'
    d.server("+ \r\n");
    CHECK(d.client() == sasl_plain("alice", "s3cret-pw") + "\r\n");
    d.server("a1 OK done\r\n");
    CHECK(d.client() == "a2 LIST \"\" \"*\"\r\n");
  }
  {
    driver d(basic_options());
    d.server("* OK [CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=GSSAPI] ready\r\n");
    const auto ev = d.take_events();
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].rfind("failed auth_method_unsupported", 0) == 0);
  }
  auto o = basic_options();
  o.auth = auth_method::xoauth2;
  o.secret = "ya29.token-value";
  {
    driver d(o);
    d.server("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] ready\r\n");
    CHECK(d.client() == "a1 AUTHENTICATE XOAUTH2 " + sasl_xoauth2("alice", "ya29.token-value") + "\r\n");
    d.server("+ eyJzdGF0dXMiOiI0MDAifQ==\r\n");
    CHECK(d.client() == "\r\n");  // acknowledge the error challenge
    d.server("a1 NO [AUTHENTICATIONFAILED] Invalid credentials\r\n");
    const auto ev = d.take_events();
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].rfind("failed login_failed", 0) == 0);
  }
  {
    driver d(o);
    d.server("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n");
    const auto ev = d.take_events();
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].rfind("failed auth_method_unsupported", 0) == 0);
    CHECK(d.client().empty());
  }
}

TEST_CASE("scan session: synchronising literal for an 8-bit password", "[unit]") {
  auto o = basic_options();
  o.secret = "p\xc3\xa4ssw\xc3\xb6rd";
  driver d(o);
  d.server("* OK [CAPABILITY IMAP4rev1] ready\r\n");
  CHECK(d.client() == "a1 LOGIN alice {10}\r\n");
  d.server("+ Ready for literal data\r\n");
  CHECK(d.client() == "p\xc3\xa4ssw\xc3\xb6rd\r\n");
}

TEST_CASE("scan session: configured folder missing -> folder_not_found naming it", "[unit]") {
  auto o = basic_options();
  o.folders = {"INBOX", "Projekte/\xc3\x84nderungen"};
  driver d(o);
  d.server("* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n");
  CHECK(d.client() == "a1 EXAMINE INBOX\r\na2 UID SEARCH ALL\r\na3 UID SEARCH ALL LARGER 2097152\r\n");
  d.server("* 0 EXISTS\r\n* OK [UIDVALIDITY 1] x\r\na1 OK done\r\n");
  CHECK(d.client() == "a4 EXAMINE Projekte/&AMQ-nderungen\r\na5 UID SEARCH ALL\r\n"
                      "a6 UID SEARCH ALL LARGER 2097152\r\n");
  d.server("* SEARCH\r\na2 OK\r\n* SEARCH\r\na3 OK\r\n"
           "a4 NO [NONEXISTENT] Mailbox doesn't exist: Projekte/&AMQ-nderungen\r\n");
  const auto ev = d.take_events();
  REQUIRE(ev.size() == 3);
  CHECK(ev[2].rfind("failed folder_not_found retry=0: folder \"Projekte/\xc3\x84nderungen\"", 0) == 0);
}

TEST_CASE("scan session: BYE mid-FETCH, EOF mid-literal, EOF between responses", "[unit]") {
  auto o = basic_options();
  o.folders = {"INBOX"};
  o.max_message_bytes = 0;  // no LARGER search
  auto to_fetch = [&](driver& d) {
    d.server("* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n* 2 EXISTS\r\n* OK [UIDVALIDITY 3] x\r\na1 OK\r\n");
    CHECK(d.client() == "a1 EXAMINE INBOX\r\na2 UID SEARCH ALL\r\n");
    d.server("* SEARCH 1 2\r\na2 OK\r\n");
    CHECK(d.client() == "a3 UID FETCH 1:2 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])\r\n");
  };
  {
    driver d(o);
    to_fetch(d);
    d.server("* 1 FETCH (UID 1 BODY[] {5}\r\nhello)\r\n* 1 FETCH (UID 1 BODY[] {5}\r\nhello)\r\n"
             "* BYE Server shutting down\r\n");  // the repeated answer is not emitted twice
    const auto ev = d.take_events();
    REQUIRE(ev.size() == 3);
    CHECK(ev[1].rfind("msg INBOX v=3 uid=1", 0) == 0);
    CHECK(ev[2] == "failed server_bye retry=0: server said BYE: Server shutting down");
    d.s.on_eof();
    CHECK(d.take_events().empty());  // one failure only
  }
  {
    driver d(o);
    to_fetch(d);
    d.server("* 1 FETCH (UID 1 BODY[] {500}\r\nhel");
    d.s.on_eof();
    const auto ev = d.take_events();
    REQUIRE(ev.size() == 2);
    CHECK(ev[1].rfind("failed protocol_error", 0) == 0);
  }
  {
    driver d(o);
    to_fetch(d);
    d.s.on_eof();
    const auto ev = d.take_events();
    REQUIRE(ev.size() == 2);
    CHECK(ev[1].rfind("failed server_bye", 0) == 0);
  }
}

TEST_CASE("scan session: checkpoint resumes at UID last+1:*", "[unit]") {
  auto o = basic_options();
  o.folders = {"INBOX"};
  o.max_message_bytes = 0;
  o.since_unix = 1795996800;
  o.checkpoints["INBOX"] = {5, 7, 70};
  driver d(o);
  d.server("* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n");
  // A folder with a checkpoint is asked about first (scan_session_ext_test.cpp: skipping).
  CHECK(d.client() == "a1 STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY)\r\n");
  d.server("* STATUS INBOX (MESSAGES 4 UIDNEXT 9 UIDVALIDITY 5)\r\na1 OK\r\n");
  // The search from the checkpoint goes out behind the EXAMINE.
  CHECK(d.client() == "a2 EXAMINE INBOX\r\na3 UID SEARCH UID 8:*\r\n");
  d.server("* 4 EXISTS\r\n* OK [UIDVALIDITY 5] x\r\n* OK [UIDNEXT 9] x\r\na2 OK\r\n");
  CHECK(d.take_events() == std::vector<std::string>{"opened INBOX v=5 n=9 e=4 changed=0"});
  CHECK(d.client().empty());
  d.server("* SEARCH 7\r\na3 OK\r\n");  // n:* always matches the last message: not new
  CHECK(d.take_events() ==
        std::vector<std::string>{"folder INBOX v=5 high=8 modseq=0", "complete"});
  CHECK(d.client() == "a4 LOGOUT\r\n");
}

TEST_CASE("scan session: UIDVALIDITY change rescans the window, unread only", "[unit]") {
  auto o = basic_options();
  o.folders = {"INBOX"};
  o.since_unix = 1795996800;
  o.unread_only = true;
  o.max_message_bytes = 1000;
  o.checkpoints["INBOX"] = {4, 7, 0};
  driver d(o);
  d.server("* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n");
  CHECK(d.client() == "a1 STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY)\r\n");
  d.server("* STATUS INBOX (MESSAGES 2 UIDNEXT 3 UIDVALIDITY 5)\r\na1 OK\r\n");
  CHECK(d.client() == "a2 SELECT INBOX\r\na3 UID SEARCH UID 8:* UNSEEN\r\n"
                      "a4 UID SEARCH UID 8:* UNSEEN LARGER 1000\r\n");
  d.server("* 2 EXISTS\r\n* OK [UIDVALIDITY 5] x\r\na2 OK [READ-WRITE] done\r\n");
  CHECK(d.take_events() == std::vector<std::string>{"opened INBOX v=5 n=0 e=2 changed=1"});
  // The searches from the old checkpoint are void. The oldest message is from before the
  // window: the server searches by date.
  CHECK(d.client() == "a5 FETCH 1 (INTERNALDATE)\r\n");
  d.server("* SEARCH 9\r\na3 OK\r\n* SEARCH 9\r\na4 OK\r\n"
           "* 1 FETCH (INTERNALDATE \"29-Nov-2026 23:59:59 +0000\")\r\na5 OK\r\n");
  CHECK(d.client() == "a6 UID SEARCH SINCE 30-Nov-2026 UNSEEN\r\n"
                      "a7 UID SEARCH SINCE 30-Nov-2026 UNSEEN LARGER 1000\r\n");
  d.server("* SEARCH 2\r\na6 OK\r\n* SEARCH\r\na7 OK\r\n");
  CHECK(d.client() == "a8 UID FETCH 2 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])\r\n");
  d.server("* 1 FETCH (UID 2 BODY[] NIL)\r\n* 1 FETCH (UID 2 BODY[] {2}\r\nhi)\r\na8 OK\r\n");
  CHECK(d.take_events() ==
        std::vector<std::string>{"msg INBOX v=5 uid=2 size=2 date=0 flags= trunc=0 raw=hi",
                                 "batch INBOX v=5 high=2"});
  d.s.resume();
  CHECK(d.take_events() == std::vector<std::string>{"folder INBOX v=5 high=2 modseq=0", "complete"});
}

// The FETCH answer of a 3-message batch (UIDs 1-3) with the window applied on the client:
// the two messages kept, and the checkpoint past the one left out.
static void window_fetch_keeps(driver& d, const std::string& answer, int first_kept, int second_kept) {
  d.server(answer);
  const auto ev = d.take_events();
  REQUIRE(ev.size() == 3);
  CHECK(ev[0].find("uid=" + std::to_string(first_kept) + " ") != std::string::npos);
  CHECK(ev[1].find("uid=" + std::to_string(second_kept) + " ") != std::string::npos);
  CHECK(ev[2] == "batch INBOX v=5 high=3");
}

TEST_CASE("scan session: a folder young enough for days_back is searched ALL, older mail left out here", "[unit]") {
  auto o = basic_options();
  o.folders = {"INBOX"};
  o.since_unix = 1795996800 + 3600;  // the window starts on 30-Nov-2026
  o.max_message_bytes = 0;
  driver d(o);
  d.server("* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n");
  CHECK(d.client() == "a1 EXAMINE INBOX\r\n");
  d.server("* 3 EXISTS\r\n* OK [UIDVALIDITY 5] x\r\n* OK [UIDNEXT 4] x\r\na1 OK\r\n");
  d.take_events();
  CHECK(d.client() == "a2 FETCH 1 (INTERNALDATE)\r\n");
  d.server("* 1 FETCH (INTERNALDATE \"01-Dec-2026 10:00:00 +0100\")\r\na2 OK\r\n");
  CHECK(d.client() == "a3 UID SEARCH ALL\r\n");
  d.server("* SEARCH 1 2 3\r\na3 OK\r\n");
  CHECK(d.client() == "a4 UID FETCH 1:3 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])\r\n");
  // UID 2 was appended with an old date: SEARCH SINCE would not have matched it. UID 3 is on
  // the window's first day by its own zone (29-Nov 22:00 -1000 is 30-Nov 08:00 UTC), and
  // kept: the client errs on the side of tracking.
  window_fetch_keeps(d,
                     "* 1 FETCH (UID 1 INTERNALDATE \"01-Dec-2026 10:00:00 +0100\" BODY[] {1}\r\na)\r\n"
                     "* 2 FETCH (UID 2 INTERNALDATE \"03-Mar-2019 10:00:00 +0000\" BODY[] {1}\r\nb)\r\n"
                     "* 3 FETCH (UID 3 INTERNALDATE \"29-Nov-2026 22:00:00 -1000\" BODY[] {1}\r\nc)\r\na4 OK\r\n",
                     1, 3);
}

TEST_CASE("scan session: days_back with ESEARCH — the search goes out behind the EXAMINE, the date is settled after", "[unit]") {
  auto o = basic_options();
  o.folders = {"INBOX"};
  o.since_unix = 1795996800 + 3600;  // the window starts on 30-Nov-2026
  o.max_message_bytes = 0;
  o.batch_size = 3;
  const char* greeting = "* PREAUTH [CAPABILITY IMAP4rev1 ESEARCH] hi\r\n";
  {
    // No more messages than one batch: no probe, the window is applied to the fetched dates.
    driver d(o);
    d.server(greeting);
    CHECK(d.client() == "a1 EXAMINE INBOX\r\na2 UID SEARCH RETURN (ALL) ALL\r\n");
    d.server("* 3 EXISTS\r\n* OK [UIDVALIDITY 5] x\r\na1 OK\r\n* ESEARCH (TAG \"a2\") UID ALL 1:3\r\na2 OK\r\n");
    CHECK(d.client() == "a3 UID FETCH 1:3 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])\r\n");
    d.take_events();
    window_fetch_keeps(d,
                       "* 1 FETCH (UID 1 INTERNALDATE \"03-Mar-2019 10:00:00 +0000\" BODY[] {1}\r\na)\r\n"
                       "* 2 FETCH (UID 2 INTERNALDATE \"01-Dec-2026 10:00:00 +0000\" BODY[] {1}\r\nb)\r\n"
                       "* 3 FETCH (UID 3 INTERNALDATE \"02-Dec-2026 10:00:00 +0000\" BODY[] {1}\r\nc)\r\na3 OK\r\n",
                       2, 3);
  }
  for (const bool young : {true, false}) {
    // More than a batch: the date probe follows the search; an old first message makes the
    // server search by date after all (the ALL answer is dropped).
    INFO("young " << young);
    driver d(o);
    d.server(greeting);
    d.client();
    d.server("* 4 EXISTS\r\n* OK [UIDVALIDITY 5] x\r\na1 OK\r\n");
    CHECK(d.client() == "a3 FETCH 1 (INTERNALDATE)\r\n");
    d.server("* ESEARCH (TAG \"a2\") UID ALL 1:4\r\na2 OK\r\n");
    CHECK(d.client().empty());
    d.server(young ? "* 1 FETCH (INTERNALDATE \"01-Dec-2026 10:00:00 +0000\")\r\na3 OK\r\n"
                   : "* 1 FETCH (INTERNALDATE \"03-Mar-2019 10:00:00 +0000\")\r\na3 OK\r\n");
    if (young) {
      CHECK(d.client() == "a4 UID FETCH 1:3 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])\r\n");
    } else {
      CHECK(d.client() == "a4 UID SEARCH RETURN (ALL) SINCE 30-Nov-2026\r\n");
      d.server("* ESEARCH (TAG \"a4\") UID ALL 4\r\na4 OK\r\n");
      CHECK(d.client() == "a5 UID FETCH 4 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])\r\n");
    }
  }
  {
    // Empty, or gone: the search behind the EXAMINE is answered and ignored.
    driver d(o);
    d.server(greeting);
    d.client();
    d.server("* 0 EXISTS\r\n* OK [UIDVALIDITY 5] x\r\na1 OK\r\n");
    CHECK(d.client() == "a3 LOGOUT\r\n");
    d.server("* ESEARCH (TAG \"a2\") UID\r\na2 OK\r\n* BYE\r\na3 OK\r\n");
    const auto ev = d.take_events();
    REQUIRE(ev.size() == 3);
    CHECK(ev[2] == "complete");
    auto two = o;
    two.folders = {"Gone", "INBOX"};
    driver g(two);
    g.server(greeting);
    g.client();
    g.server("a1 NO [NONEXISTENT] no\r\na2 BAD No mailbox selected\r\n");
    const auto gev = g.take_events();
    REQUIRE(gev.size() == 1);
    CHECK(gev[0].rfind("failed folder_not_found", 0) == 0);
  }
  {
    // Answers out of command order (the search's before the EXAMINE's) are not followed:
    // a protocol error (the fuzzer found the state this used to reach).
    driver d(o);
    d.server(greeting);
    d.client();
    d.server("* ESEARCH (TAG \"a2\") UID ALL 1:3\r\na2 OK\r\n");
    const auto ev = d.take_events();
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].rfind("failed protocol_error", 0) == 0);
    CHECK(ev[0].find("out of order") != std::string::npos);
  }
}

TEST_CASE("scan session: days_back probe refused or without a date searches SINCE", "[unit]") {
  for (const std::string answer : {"a2 NO [SERVERBUG] no\r\n", "a2 OK\r\n",
                                   "* 1 FETCH (INTERNALDATE \"garbage\")\r\na2 OK\r\n",
                                   "* 1 FETCH (INTERNALDATE \"30-Nov-2026 01:00:00 +0000\")\r\na2 OK\r\n"}) {
    INFO(answer);
    auto o = basic_options();
    o.folders = {"INBOX"};
    o.since_unix = 1795996800;
    o.max_message_bytes = 0;
    driver d(o);
    d.server("* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n");
    CHECK(d.client() == "a1 EXAMINE INBOX\r\n");
    d.server("* 3 EXISTS\r\n* OK [UIDVALIDITY 5] x\r\na1 OK\r\n");
    CHECK(d.client() == "a2 FETCH 1 (INTERNALDATE)\r\n");
    d.server(answer);
    CHECK(d.client() == "a3 UID SEARCH SINCE 30-Nov-2026\r\n");
  }
}

TEST_CASE("scan session: garbage and unknown tags are protocol errors", "[unit]") {
  {
    driver d(basic_options());
    d.server("* OK [CAPABILITY IMAP4rev1] ready\r\n");
    d.client();
    d.server("a1 MAYBE s3cret-pw\r\n");
    const auto ev = d.take_events();
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].rfind("failed protocol_error", 0) == 0);
    CHECK(ev[0].find("MAYBE") != std::string::npos);
    CHECK(ev[0].find("s3cret-pw") == std::string::npos);
  }
  {
    driver d(basic_options());
    d.server("* OK [CAPABILITY IMAP4rev1] ready\r\nzz9 OK what\r\n");
    const auto ev = d.take_events();
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].find("unknown tag") != std::string::npos);
  }
  {
    driver d(basic_options());
    d.server("HTTP/1.1 400 Bad Request\r\n");
    const auto ev = d.take_events();
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].rfind("failed protocol_error", 0) == 0);
  }
  {
    driver d(basic_options());
    d.server("* BYE Too many connections from your IP\r\n");
    const auto ev = d.take_events();
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].rfind("failed throttled", 0) == 0);
  }
  CHECK(to_string(error_kind::account_unavailable) == "account_unavailable");
  CHECK(to_string(error_kind::throttled) == "throttled");
}

TEST_CASE("scan session: ESEARCH compact answers, bounded expansion", "[unit]") {
  auto o = basic_options();
  o.folders = {"INBOX"};
  o.max_message_bytes = 1000;
  o.batch_size = 3;
  {
    driver d(o);
    d.server("* PREAUTH [CAPABILITY IMAP4rev1 ESEARCH] hi\r\n* 6 EXISTS\r\n* OK [UIDVALIDITY 2] x\r\na1 OK\r\n");
    CHECK(d.client() == "a1 EXAMINE INBOX\r\na2 UID SEARCH RETURN (ALL) ALL\r\n"
                        "a3 UID SEARCH RETURN (ALL) ALL LARGER 1000\r\n");
    d.server("* ESEARCH (TAG \"a2\") UID ALL 4:6,9,12:13\r\na2 OK\r\n"
             "* ESEARCH (TAG \"a3\") UID ALL 5,12\r\na3 OK\r\n");
    CHECK(d.client() == "a4 UID FETCH 4,6 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])\r\n"
                        "a5 UID FETCH 5 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER] "
                        "BODY.PEEK[TEXT]<0.1000>)\r\n");
    d.server("a4 OK\r\n");
    CHECK(d.take_events() == std::vector<std::string>{"opened INBOX v=2 n=0 e=6 changed=0"});
    d.server("a5 OK\r\n");
    CHECK(d.take_events() == std::vector<std::string>{"batch INBOX v=2 high=6"});
    d.s.resume();
    CHECK(d.client() == "a6 UID FETCH 9,13 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])\r\n"
                        "a7 UID FETCH 12 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER] "
                        "BODY.PEEK[TEXT]<0.1000>)\r\n");
  }
  {
    driver d(o);
    d.server("* PREAUTH [CAPABILITY IMAP4rev1 ESEARCH] hi\r\n* 6 EXISTS\r\n* OK [UIDVALIDITY 2] x\r\na1 OK\r\n");
    d.client();
    d.server("* ESEARCH (TAG \"a2\") UID ALL 1:4294967295\r\n");
    const auto ev = d.take_events();
    REQUIRE(ev.size() == 2);
    CHECK(ev[1].rfind("failed protocol_error retry=0: protocol error: bad ESEARCH result", 0) == 0);
  }
}

namespace {

// The server side of the happy path above, as one stream (valid when fed with auto_resume).
const std::string happy_server =
    "* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR AUTH=PLAIN] Dovecot ready.\r\n"
    "a1 OK [CAPABILITY IMAP4rev1 LITERAL+ SPECIAL-USE] Logged in\r\n"
    "* LIST (\\HasNoChildren) \".\" INBOX\r\n"
    "* LIST (\\HasNoChildren) \".\" Sent\r\n"
    "a2 OK List completed.\r\n"
    "* 3 EXISTS\r\n* OK [UIDVALIDITY 5] x\r\n* OK [UIDNEXT 11] x\r\na3 OK [READ-ONLY] done\r\n"
    "* SEARCH 3 7 10\r\na4 OK\r\n* SEARCH 10\r\na5 OK\r\n"
    "* 1 FETCH (UID 3 FLAGS (\\Seen) RFC822.SIZE 5 BODY[] {5}\r\nhello)\r\n"
    "* 2 FETCH (UID 7 FLAGS () RFC822.SIZE 3 BODY[] \"abc\")\r\na6 OK\r\n"
    "* 3 FETCH (UID 10 RFC822.SIZE 5000 BODY[HEADER] {3}\r\nh\r\n BODY[TEXT]<0> {2}\r\nbo)\r\n"
    "a7 OK\r\n"
    "* 0 EXISTS\r\n* OK [UIDVALIDITY 9] x\r\na8 OK\r\n";

session_options happy_options() {
  auto o = basic_options();
  o.batch_size = 2;
  o.max_message_bytes = 100;
  return o;
}

std::size_t terminal_count(const std::vector<std::string>& ev) {
  std::size_t n = 0;
  for (const auto& e : ev)
    if (e == "complete" || e.rfind("failed ", 0) == 0) ++n;
  return n;
}

} // namespace

TEST_CASE("scan session: the whole happy stream, then EOF at every byte", "[unit]") {
  {
    driver d(happy_options(), 1);
    d.auto_resume = true;
    d.server(happy_server);
    const auto ev = d.take_events();
    REQUIRE(!ev.empty());
    CHECK(ev.back() == "complete");
    CHECK(ev.size() == 10);  // 2 opened, 3 msg, 2 batch, 2 folder, complete
  }
  for (std::size_t k = 0; k < happy_server.size(); ++k) {
    driver d(happy_options(), 64);
    d.auto_resume = true;
    d.server(std::string_view(happy_server).substr(0, k));
    d.s.on_eof();
    const auto ev = d.take_events();
    INFO("EOF after " << k << " bytes");
    REQUIRE(terminal_count(ev) == 1);
    CHECK((ev.back().rfind("failed server_bye", 0) == 0 ||
           ev.back().rfind("failed protocol_error", 0) == 0));
    CHECK(d.s.finished());
  }
}

TEST_CASE("scan session: a NO or BAD for every command ends in one classified failure", "[unit]") {
  for (int tag = 1; tag <= 8; ++tag) {
    for (const char* status : {"NO", "BAD"}) {
      std::string script = happy_server;
      const std::string ok = "\na" + std::to_string(tag) + " OK";
      const auto at = script.find(ok);
      REQUIRE(at != std::string::npos);
      script.replace(at, ok.size(), "\na" + std::to_string(tag) + " " + status);
      driver d(happy_options(), 5);
      d.auto_resume = true;
      d.server(script);
      d.s.on_eof();
      const auto ev = d.take_events();
      INFO("a" << tag << " " << status);
      REQUIRE(terminal_count(ev) == 1);
      if (tag == 8 && status == std::string("NO")) {
        // a listed folder that cannot be opened is skipped, not fatal
        CHECK(ev.back() == "complete");
      } else if (tag != 3 || status != std::string("NO")) {
        CHECK(ev.back().rfind("failed ", 0) == 0);
      }
      for (const auto& e : ev) CHECK(e.find("s3cret-pw") == std::string::npos);
    }
  }
}

TEST_CASE("scan session: UTF8=ACCEPT is enabled when offered, names then travel as UTF-8", "[unit]") {
  {
    driver d(basic_options());
    d.server("* OK [CAPABILITY IMAP4rev1 ENABLE UTF8=ACCEPT AUTH=PLAIN] ready\r\n");
    CHECK(d.client() == "a1 LOGIN alice s3cret-pw\r\n");
    d.server("a1 OK logged in\r\n");
    CHECK(d.client() == "a2 ENABLE UTF8=ACCEPT\r\n");
    d.server("* ENABLED UTF8=ACCEPT\r\na2 OK enabled\r\n");
    CHECK(d.client() == "a3 LIST \"\" \"*\"\r\n");
    d.server("* LIST () \"/\" \"Entw\xc3\xbcrfe\"\r\n* LIST () \"/\" A&B\r\na3 OK\r\n");
    CHECK(d.client() == "a4 EXAMINE \"Entw\xc3\xbcrfe\"\r\na5 UID SEARCH ALL\r\na6 UID SEARCH ALL LARGER 2097152\r\n");
    d.server("* 0 EXISTS\r\n* OK [UIDVALIDITY 1] x\r\na4 OK\r\n");
    CHECK(d.client() == "a7 EXAMINE A&B\r\na8 UID SEARCH ALL\r\na9 UID SEARCH ALL LARGER 2097152\r\n");
    CHECK(d.take_events() == std::vector<std::string>{
                                 "opened Entw\xc3\xbcrfe v=1 n=0 e=0 changed=0",
                                 "folder Entw\xc3\xbcrfe v=1 high=0 modseq=0"});
  }
  {
    auto o = basic_options();
    o.folders = {"Projekte/\xc3\x84nderungen"};
    driver d(o);
    d.server("* PREAUTH [CAPABILITY IMAP4rev1 UTF8=ACCEPT] hi\r\n");
    CHECK(d.client() == "a1 ENABLE UTF8=ACCEPT\r\n");
    d.server("a1 NO not now\r\n");  // refused: modified UTF-7 as before
    CHECK(d.client() == "a2 EXAMINE Projekte/&AMQ-nderungen\r\na3 UID SEARCH ALL\r\na4 UID SEARCH ALL LARGER 2097152\r\n");
  }
}
