// scan_session extensions on scripted transcripts in the styles of Dovecot, Exchange/Office 365
// and Gmail: ID, the STATUS / LIST-STATUS shortcut for unchanged folders, MESSAGELIMIT, IDLE.
// Every server chunk is fed whole, one byte at a time (every split point) and in odd chunks.
#include <catch2/catch.hpp>

#include <sstream>

#include "protocols/imap/deflate_stream.hpp"
#include "protocols/imap/scan_session.hpp"

using namespace mscan::imap;

namespace {

// One line per output: "C: <bytes written>" or "E: <event>".
struct transcript {
  explicit transcript(session_options o, std::size_t chunk) : s(std::move(o)), chunk(chunk) {}
  scan_session s;
  std::size_t chunk;
  std::vector<std::string> log;

  void drain() {
    while (auto o = s.poll()) log.push_back(line(*o));
  }
  static std::string line(const session_output& o) {
    std::ostringstream t;
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, write_bytes>) t << "C: " << v.data;
          else if constexpr (std::is_same_v<T, folder_opened>) t << "E: opened " << v.folder << " e=" << v.exists;
          else if constexpr (std::is_same_v<T, folder_unchanged>)
            t << "E: unchanged " << v.folder << " v=" << v.uidvalidity << " n=" << v.uidnext << " m=" << v.messages;
          else if constexpr (std::is_same_v<T, folder_complete>)
            t << "E: folder " << v.folder << " high=" << v.highest_uid << " modseq=" << v.highest_modseq;
          else if constexpr (std::is_same_v<T, server_identified>) {
            t << "E: id";
            for (const auto& [k, val] : v.fields) t << ' ' << k << '=' << val;
          } else if constexpr (std::is_same_v<T, message_fetched>) t << "E: msg " << v.uid;
          else if constexpr (std::is_same_v<T, batch_complete>) t << "E: batch high=" << v.highest_uid;
          else if constexpr (std::is_same_v<T, idle_started>) t << "E: idle " << v.folder;
          else if constexpr (std::is_same_v<T, idle_activity>)
            t << "E: activity " << static_cast<int>(v.what) << ' ' << v.folder << ' ' << v.number;
          else if constexpr (std::is_same_v<T, scan_complete>) t << "E: complete";
          else if constexpr (std::is_same_v<T, session_parked>) t << "E: parked";
          else if constexpr (std::is_same_v<T, start_compress>) t << "E: compress";
          else if constexpr (std::is_same_v<T, scan_failed>) t << "E: failed " << to_string(v.err.kind) << ": " << v.err.detail;
          else if constexpr (std::is_same_v<T, session_warning>) t << "E: warning " << v.detail;
          else t << "E: other";
        },
        o);
    return t.str();
  }
  // Server bytes in, the log lines they caused out.
  std::vector<std::string> server(std::string_view bytes) {
    const std::size_t step = chunk == 0 ? bytes.size() : chunk;
    for (std::size_t i = 0; i < bytes.size(); i += step) {
      s.on_bytes(bytes.substr(i, step));
      drain();
    }
    return take();
  }
  std::vector<std::string> take() {
    drain();
    return std::exchange(log, {});
  }
};

using lines = std::vector<std::string>;

session_options options() {
  session_options o;
  o.username = "alice";
  o.secret = "s3cret-pw";
  o.client_version = "2.1";
  o.fetch = fetch_strategy::whole_message;
  o.max_message_bytes = 0;
  return o;
}

const char* dovecot_greeting =
    "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN] Dovecot ready.\r\n";
const char* dovecot_caps =
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
    "MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 "
    "CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE "
    "SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE";

} // namespace

TEST_CASE("scan session ext: Dovecot — ID pipelined before LOGIN, unchanged INBOX costs STATUS + LOGOUT",
          "[unit]") {
  const std::size_t chunk = GENERATE(0u, 1u, 5u);
  INFO("chunk " << chunk);
  auto o = options();
  o.folders = {"INBOX"};
  o.checkpoints["INBOX"] = {1700000000, 42, 9001};
  transcript t(o, chunk);
  CHECK(t.server(dovecot_greeting) ==
        lines{"C: a1 ID (\"name\" \"mailscan\" \"version\" \"2.1\")\r\n", "C: a2 LOGIN alice s3cret-pw\r\n"});
  CHECK(t.server("* ID (\"name\" \"Dovecot\" \"vendor\" NIL)\r\na1 OK ID completed (0.001 + 0.000 secs).\r\n") ==
        lines{"E: id name=Dovecot vendor="});
  CHECK(t.server(std::string("a2 OK [CAPABILITY ") + dovecot_caps + "] Logged in\r\n") ==
        lines{"C: a3 STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)\r\n"});
  CHECK(t.server("* STATUS INBOX (MESSAGES 40 UIDNEXT 43 UIDVALIDITY 1700000000 HIGHESTMODSEQ 9001)\r\n"
                 "a3 OK Status completed (0.001 + 0.000 secs).\r\n") ==
        lines{"E: unchanged INBOX v=1700000000 n=43 m=40", "C: a4 LOGOUT\r\n", "E: complete"});
}

TEST_CASE("scan session ext: flags changed only -> no SELECT and no checkpoint write, new mail -> SELECT",
          "[unit]") {
  const std::size_t chunk = GENERATE(0u, 1u);
  auto o = options();
  o.folders = {"INBOX", "Sent"};
  o.checkpoints["INBOX"] = {7, 42, 9001};
  o.checkpoints["Sent"] = {8, 10, 50};
  o.send_id = false;
  transcript u(o, chunk);
  // One round trip for every folder: the STATUS commands are pipelined.
  CHECK(u.server("* PREAUTH [CAPABILITY IMAP4rev1 CONDSTORE] hi\r\n") ==
        lines{"C: a1 STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)\r\n"
              "a2 STATUS Sent (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)\r\n"});
  CHECK(u.server("* STATUS inbox (MESSAGES 40 UIDNEXT 43 UIDVALIDITY 7 HIGHESTMODSEQ 9005)\r\na1 OK\r\n").empty());
  // Sent: one new message (UIDNEXT 12 > 10 + 1) -> opened and searched from the checkpoint.
  CHECK(u.server("* STATUS Sent (MESSAGES 3 UIDNEXT 12 UIDVALIDITY 8 HIGHESTMODSEQ 60)\r\na2 OK\r\n") ==
        lines{"E: unchanged INBOX v=7 n=43 m=40", "C: a3 EXAMINE Sent\r\n",
              "C: a4 UID SEARCH UID 11:*\r\n"});  // the search goes out behind the EXAMINE
  CHECK(u.server("* 3 EXISTS\r\n* OK [UIDVALIDITY 8] x\r\n* OK [UIDNEXT 12] x\r\n"
                 "* OK [HIGHESTMODSEQ 60] x\r\na3 OK\r\n") ==
        lines{"E: opened Sent e=3"});
}

TEST_CASE("scan session ext: STATUS refused or UIDVALIDITY changed -> the folder is opened as before", "[unit]") {
  auto o = options();
  o.folders = {"INBOX"};
  o.checkpoints["INBOX"] = {7, 42, 0};
  transcript t(o, 1);
  CHECK(t.server("* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n") ==
        lines{"C: a1 STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY)\r\n"});
  CHECK(t.server("a1 NO [NONEXISTENT] Unknown Mailbox\r\n") ==
        lines{"C: a2 EXAMINE INBOX\r\n", "C: a3 UID SEARCH UID 43:*\r\n"});
  CHECK(t.server("a2 NO [NONEXISTENT] Unknown Mailbox\r\n").at(0).rfind("E: failed folder_not_found", 0) == 0);

  transcript u(o, 0);
  u.server("* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n");
  CHECK(u.server("* STATUS INBOX (UIDNEXT 43 UIDVALIDITY 8)\r\na1 OK\r\n") ==
        lines{"C: a2 EXAMINE INBOX\r\n", "C: a3 UID SEARCH UID 43:*\r\n"});
  // A throttled STATUS is a throttled pass.
  transcript w(o, 0);
  w.server("* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n");
  CHECK(w.server("a1 NO [LIMIT] Too many commands, retry after 30 seconds\r\n").at(0).rfind("E: failed throttled", 0) == 0);
}

TEST_CASE("scan session ext: Dovecot '*' folders with LIST-STATUS — the whole unchanged poll is LIST + LOGOUT",
          "[unit]") {
  const std::size_t chunk = GENERATE(0u, 1u, 7u);
  auto o = options();
  o.checkpoints["INBOX"] = {5, 10, 100};
  o.checkpoints["Archiv.\xc3\xa4"] = {6, 3, 0};
  o.checkpoints["Trash"] = {9, 2, 20};
  transcript u(o, chunk);  // PREAUTH: no login, so no ID either
  CHECK(u.server(std::string("* PREAUTH [CAPABILITY ") + dovecot_caps + "] Logged in as alice\r\n") ==
        lines{"C: a1 LIST \"\" \"*\" RETURN (STATUS (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ))\r\n"});
  CHECK(u.server("* LIST (\\HasNoChildren) \".\" INBOX\r\n"
                 "* STATUS INBOX (MESSAGES 10 UIDNEXT 11 UIDVALIDITY 5 HIGHESTMODSEQ 100)\r\n"
                 "* LIST (\\HasNoChildren) \".\" \"Archiv.&AOQ-\"\r\n"
                 "* STATUS \"Archiv.&AOQ-\" (MESSAGES 3 UIDNEXT 4 UIDVALIDITY 6)\r\n"
                 "* LIST (\\Noselect \\HasChildren) \".\" Public\r\n"
                 "* LIST (\\HasNoChildren \\Trash) \".\" Trash\r\n"
                 "* STATUS Trash (MESSAGES 2 UIDNEXT 3 UIDVALIDITY 9 HIGHESTMODSEQ 20)\r\n"
                 "a1 OK List completed (0.001 + 0.000 secs).\r\n") ==
        lines{"E: unchanged INBOX v=5 n=11 m=10", "E: unchanged Archiv.\xc3\xa4 v=6 n=4 m=3",
              "E: unchanged Trash v=9 n=3 m=2", "C: a2 LOGOUT\r\n", "E: complete"});

  // A folder without checkpoint (new) and one with new mail are opened; the rest skipped.
  auto o2 = o;
  o2.checkpoints.erase("Trash");
  transcript v(o2, chunk);
  v.server(std::string("* PREAUTH [CAPABILITY ") + dovecot_caps + "] hi\r\n");
  CHECK(v.server("* LIST () \".\" INBOX\r\n* STATUS INBOX (MESSAGES 11 UIDNEXT 12 UIDVALIDITY 5 HIGHESTMODSEQ 101)\r\n"
                 "* LIST () \".\" \"Archiv.&AOQ-\"\r\n* STATUS \"Archiv.&AOQ-\" (MESSAGES 3 UIDNEXT 4 UIDVALIDITY 6)\r\n"
                 "* LIST () \".\" Trash\r\n* STATUS Trash (MESSAGES 2 UIDNEXT 3 UIDVALIDITY 9 HIGHESTMODSEQ 20)\r\n"
                 "a1 OK done\r\n") == lines{"C: a2 EXAMINE INBOX\r\n", "C: a3 UID SEARCH RETURN (ALL) UID 11:*\r\n"});
  CHECK(v.server("* 11 EXISTS\r\n* OK [UIDVALIDITY 5] x\r\n* OK [UIDNEXT 12] x\r\na2 OK\r\n") ==
        lines{"E: opened INBOX e=11"});
  CHECK(v.server("* ESEARCH (TAG \"a3\") UID\r\na3 OK\r\n") ==
        lines{"E: folder INBOX high=11 modseq=0", "E: unchanged Archiv.\xc3\xa4 v=6 n=4 m=3",
              "C: a4 EXAMINE Trash\r\n", "C: a5 UID SEARCH RETURN (ALL) ALL\r\n"});
}

TEST_CASE("scan session ext: Exchange / Office 365 — ID, no CONDSTORE: STATUS without HIGHESTMODSEQ", "[unit]") {
  const std::size_t chunk = GENERATE(0u, 1u);
  auto o = options();
  o.folders = {"INBOX"};
  o.checkpoints["INBOX"] = {14, 2000, 0};
  transcript t(o, chunk);
  CHECK(t.server("* OK The Microsoft Exchange IMAP4 service is ready. [UABSADMAUAAxADgAMQBDAEEAMAAwADIANwAuAG4AYQBtAHAAcgBkADEAOAAxAC4AcAByAG8AZAAuAG8AdQB0AGwAbwBvAGsALgBjAG8AbQA=]\r\n") ==
        lines{"C: a1 CAPABILITY\r\n"});
  CHECK(t.server("* CAPABILITY IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+\r\n"
                 "a1 OK CAPABILITY completed.\r\n") ==
        lines{"C: a2 ID (\"name\" \"mailscan\" \"version\" \"2.1\")\r\n", "C: a3 LOGIN alice s3cret-pw\r\n"});
  CHECK(t.server("* ID (\"name\" \"Microsoft.Exchange.Imap4.Imap4Server\" \"version\" \"15.20\")\r\n"
                 "a2 OK ID completed.\r\na3 OK LOGIN completed.\r\n") ==
        lines{"E: id name=Microsoft.Exchange.Imap4.Imap4Server version=15.20",
              "C: a4 STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY)\r\n"});
  CHECK(t.server("* STATUS INBOX (MESSAGES 1500 UIDNEXT 2001 UIDVALIDITY 14)\r\na4 OK STATUS completed.\r\n") ==
        lines{"E: unchanged INBOX v=14 n=2001 m=1500", "C: a5 LOGOUT\r\n", "E: complete"});
}

TEST_CASE("scan session ext: Gmail — ID answer with NIL, XOAUTH2 after ID, hostile ID bytes sanitised", "[unit]") {
  const std::size_t chunk = GENERATE(0u, 1u);
  auto o = options();
  o.auth = auth_method::xoauth2;
  o.secret = "ya29.token";
  o.folders = {"INBOX"};
  transcript t(o, chunk);
  const auto out = t.server(
      "* OK Gimap ready for requests from 127.0.0.1 h9mb\r\n");
  CHECK(out == lines{"C: a1 CAPABILITY\r\n"});
  const auto l = t.server(
      "* CAPABILITY IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 XYZZY SASL-IR "
      "AUTH=XOAUTH2 AUTH=PLAIN AUTH=PLAIN-CLIENTTOKEN AUTH=OAUTHBEARER\r\na1 OK Thats all she wrote! h9mb\r\n");
  REQUIRE(l.size() == 2);
  CHECK(l[0] == "C: a2 ID (\"name\" \"mailscan\" \"version\" \"2.1\")\r\n");
  CHECK(l[1].rfind("C: a3 AUTHENTICATE XOAUTH2 ", 0) == 0);
  CHECK(t.server("* ID (\"name\" \"GImap\" \"vendor\" \"Google, Inc.\" \"support-url\" NIL \"x\" \"\x1b[31mred\xff\")\r\n"
                 "a2 OK Success completed (Success)\r\n") ==
        lines{"E: id name=GImap vendor=Google, Inc. support-url= x=?[31mred?"});
  CHECK(t.server("a3 OK alice@gmail.com authenticated (Success)\r\n") ==
        lines{"C: a4 EXAMINE INBOX\r\n", "C: a5 UID SEARCH ALL\r\n"});
}

TEST_CASE("scan session ext: ID before a LOGIN with a synchronising literal keeps the literal queued", "[unit]") {
  auto o = options();
  o.secret = "p\xc3\xa4ss";
  o.folders = {"INBOX"};
  transcript t(o, 1);
  CHECK(t.server("* OK [CAPABILITY IMAP4rev1 ID] ready\r\n") ==
        lines{"C: a1 ID (\"name\" \"mailscan\" \"version\" \"2.1\")\r\n", "C: a2 LOGIN alice {5}\r\n"});
  CHECK(t.server("* ID NIL\r\na1 OK\r\n") == lines{"E: id"});
  CHECK(t.server("+ go\r\n") == lines{"C: p\xc3\xa4ss\r\n"});
  CHECK(t.server("a2 OK done\r\n") == lines{"C: a3 EXAMINE INBOX\r\n", "C: a4 UID SEARCH ALL\r\n"});
  // ID refused or not offered: nothing changes.
  transcript u(o, 0);
  u.s.on_bytes("* OK [CAPABILITY IMAP4rev1 LITERAL+] ready\r\n");
  CHECK(u.take() == lines{"C: a1 LOGIN alice {5+}\r\np\xc3\xa4ss\r\n"});
  transcript w(o, 0);
  w.server("* OK [CAPABILITY IMAP4rev1 ID LITERAL+] ready\r\n");
  CHECK(w.server("a1 BAD unknown command\r\na2 OK in\r\n") ==
        lines{"C: a3 EXAMINE INBOX\r\n", "C: a4 UID SEARCH ALL\r\n"});
  // A malformed ID answer is a protocol error like any other.
  transcript x(o, 0);
  x.server("* OK [CAPABILITY IMAP4rev1 ID LITERAL+] ready\r\n");
  CHECK(x.server("* ID (\"name\")\r\n").at(0).rfind("E: failed protocol_error", 0) == 0);
}

TEST_CASE("scan session ext: MESSAGELIMIT caps UID FETCH batches, OK [LIMIT] re-queues the unanswered rest",
          "[unit]") {
  const std::size_t chunk = GENERATE(0u, 1u);
  auto o = options();
  o.folders = {"INBOX"};
  o.batch_size = 5;
  transcript t(o, chunk);
  t.server("* PREAUTH [CAPABILITY IMAP4rev1 MESSAGELIMIT=3] hi\r\n");
  t.server("* 5 EXISTS\r\n* OK [UIDVALIDITY 1] x\r\n* OK [UIDNEXT 6] x\r\na1 OK\r\n");
  CHECK(t.server("* SEARCH 1 2 3 4 5\r\na2 OK\r\n") ==
        lines{"C: a3 UID FETCH 1:3 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])\r\n"});
  // The server still holds back: only two answered.
  CHECK(t.server("* 1 FETCH (UID 1 BODY[] {1}\r\nx)\r\n* 2 FETCH (UID 2 BODY[] {1}\r\ny)\r\n"
                 "a3 OK [LIMIT] Fetch limited\r\n") ==
        lines{"E: msg 1", "E: msg 2", "E: batch high=2"});
  t.s.resume();
  CHECK(t.take() == lines{"C: a4 UID FETCH 3:4 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])\r\n"});
  CHECK(t.server("a4 OK [LIMIT] nothing at all\r\n").at(0).rfind("E: failed throttled", 0) == 0);
}

TEST_CASE("scan session ext: IDLE — start, activity, re-IDLE, rescan from the session's own checkpoint, LOGOUT",
          "[unit]") {
  const std::size_t chunk = GENERATE(0u, 1u, 4u);
  INFO("chunk " << chunk);
  auto o = options();
  o.folders = {"INBOX"};
  o.idle = true;
  transcript t(o, chunk);
  t.server("* PREAUTH [CAPABILITY IMAP4rev1 IDLE CONDSTORE] hi\r\n");
  t.server("* 1 EXISTS\r\n* OK [UIDVALIDITY 3] x\r\n* OK [UIDNEXT 2] x\r\n* OK [HIGHESTMODSEQ 9] x\r\na1 OK\r\n");
  t.server("* SEARCH 1\r\na2 OK\r\n");
  CHECK(t.server("* 1 FETCH (UID 1 MODSEQ (9) BODY[] {1}\r\nx)\r\na3 OK\r\n") == lines{"E: msg 1", "E: batch high=1"});
  t.s.resume();
  CHECK(t.take() == lines{"E: folder INBOX high=1 modseq=9", "C: a4 EXAMINE INBOX\r\n"});
  CHECK(t.server("* 1 EXISTS\r\n* OK [UIDVALIDITY 3] x\r\n* OK [UIDNEXT 2] x\r\na4 OK\r\n") == lines{"C: a5 IDLE\r\n"});
  CHECK_FALSE(t.s.idling());
  CHECK(t.server("+ idling\r\n") == lines{"E: idle INBOX"});
  CHECK(t.s.idling());
  CHECK(t.server("* OK Still here\r\n* 1 FETCH (FLAGS (\\Seen))\r\n* 2 EXISTS\r\n* 1 EXPUNGE\r\n* VANISHED 7\r\n") ==
        lines{"E: activity 3 INBOX 1", "E: activity 0 INBOX 2", "E: activity 1 INBOX 1", "E: activity 2 INBOX 0"});
  // The 29-minute rule: DONE, IDLE again.
  t.s.stop_idle(idle_stop::refresh);
  CHECK(t.take() == lines{"C: DONE\r\n"});
  t.s.stop_idle(idle_stop::refresh);  // not idling any more: ignored
  CHECK(t.take().empty());
  CHECK(t.server("a5 OK Idle completed\r\n") == lines{"C: a6 IDLE\r\n"});
  CHECK(t.server("+ idling\r\n* 3 EXISTS\r\n") == lines{"E: idle INBOX", "E: activity 0 INBOX 3"});
  // New mail: rescan. The folder is opened directly (no STATUS on the selected folder) and
  // searched from what this session reached, not from the pass's first checkpoint.
  t.s.stop_idle(idle_stop::rescan);
  CHECK(t.server("a6 OK Idle completed\r\n") ==
        lines{"C: DONE\r\n", "C: a7 EXAMINE INBOX\r\n", "C: a8 UID SEARCH UID 2:*\r\n"});
  t.server("* 3 EXISTS\r\n* OK [UIDVALIDITY 3] x\r\n* OK [UIDNEXT 4] x\r\na7 OK\r\n");
  CHECK(t.server("* SEARCH 2 3\r\na8 OK\r\n").back() == "C: a9 UID FETCH 2:3 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])\r\n");
  t.server("* 2 FETCH (UID 2 BODY[] {1}\r\ny)\r\n* 3 FETCH (UID 3 BODY[] {1}\r\nz)\r\na9 OK\r\n");
  t.s.resume();
  CHECK(t.take() == lines{"E: folder INBOX high=3 modseq=0", "C: a10 EXAMINE INBOX\r\n"});
  // Mail that arrived between the scan and IDLE is reported as soon as IDLE starts.
  t.server("* 4 EXISTS\r\n* OK [UIDVALIDITY 3] x\r\n* OK [UIDNEXT 5] x\r\na10 OK\r\n");
  CHECK(t.server("+ idling\r\n") == lines{"E: idle INBOX", "E: activity 0 INBOX 4"});
  t.s.stop_idle(idle_stop::logout);
  CHECK(t.server("a11 OK Idle completed\r\n") == lines{"C: DONE\r\n", "C: a12 LOGOUT\r\n", "E: complete"});
  CHECK(t.s.finished());
}

TEST_CASE("scan session ext: IDLE refused, not offered, or ended with BYE", "[unit]") {
  auto o = options();
  o.folders = {"INBOX"};
  o.idle = true;
  const char* open = "* 0 EXISTS\r\n* OK [UIDVALIDITY 3] x\r\n* OK [UIDNEXT 1] x\r\na1 OK\r\n";
  transcript none(o, 0);
  none.server("* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n");
  // (a2: the search behind the EXAMINE, not needed for an empty folder)
  CHECK(none.server(open) == lines{"E: opened INBOX e=0", "E: folder INBOX high=0 modseq=0", "C: a3 LOGOUT\r\n", "E: complete"});

  transcript refused(o, 0);
  refused.server("* PREAUTH [CAPABILITY IMAP4rev1 IDLE] hi\r\n");
  refused.server(open);
  refused.server("a2 OK\r\na3 OK\r\n");
  CHECK(refused.server("a4 BAD IDLE not now\r\n") == lines{"E: warning IDLE refused: IDLE not now", "C: a5 LOGOUT\r\n", "E: complete"});

  transcript bye(o, 0);
  bye.server("* PREAUTH [CAPABILITY IMAP4rev1 IDLE] hi\r\n");
  bye.server(open);
  bye.server("a2 OK\r\na3 OK\r\n+ idling\r\n");
  CHECK(bye.server("* BYE Autologout; idle for too long\r\n").at(0).rfind("E: failed server_bye", 0) == 0);
}

TEST_CASE("deflate_stream: raw deflate both ways, any chunking, corrupt input refused", "[unit]") {
  deflate_stream client, server_side;
  std::string big;
  for (int i = 0; i < 2000; ++i) big += "* " + std::to_string(i) + " FETCH (UID " + std::to_string(i) + ")\r\n";
  const std::string wire = client.deflate("a1 LOGIN alice pw\r\n") + client.deflate(big);
  const std::size_t step = GENERATE(1u, 3u, 1000u, 1000000u);
  std::string got;
  for (std::size_t i = 0; i < wire.size(); i += step)
    REQUIRE(server_side.inflate(std::string_view(wire).substr(i, step),
                                [&](std::string_view p) { got += p; }, 4096));
  CHECK(got == "a1 LOGIN alice pw\r\n" + big);
  CHECK(wire.size() * 3 < got.size());
  // Each deflate() is flushed: the peer can inflate a command without waiting for more.
  deflate_stream a, b;
  std::string one;
  REQUIRE(b.inflate(a.deflate("a2 NOOP\r\n"), [&](std::string_view p) { one += p; }));
  CHECK(one == "a2 NOOP\r\n");
  deflate_stream bad;
  CHECK_FALSE(bad.inflate("\xff\xff\xff\xff garbage", [](std::string_view) {}));
  CHECK_FALSE(bad.error().empty());
  CHECK_FALSE(bad.inflate("more", [](std::string_view) {}));
}

TEST_CASE("scan session ext: COMPRESS DEFLATE after login when asked for, compressed bytes in the OK's chunk",
          "[unit]") {
  const std::size_t chunk = GENERATE(0u, 1u);
  auto o = options();
  o.folders = {"INBOX"};
  o.compress = true;
  o.send_id = false;
  transcript t(o, chunk);
  t.server("* OK [CAPABILITY IMAP4rev1 LITERAL+] ready\r\n");
  CHECK(t.server("a1 OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] in\r\n") == lines{"C: a2 COMPRESS DEFLATE\r\n"});
  deflate_stream server_z, client_z;
  const std::string compressed = server_z.deflate("* 0 EXISTS\r\n* OK [UIDVALIDITY 4] x\r\n");
  // The OK and the first compressed bytes in one read (chunk 0), or the OK byte by byte (an
  // owner switches to inflating right after start_compress, so the rest comes inflated).
  std::vector<std::string> log =
      t.server(chunk == 0 ? "a2 OK DEFLATE active\r\n" + compressed : std::string("a2 OK DEFLATE active\r\n"));
  REQUIRE(log.size() >= 2);
  CHECK(log[0] == "E: compress");
  CHECK(log[1] == "C: a3 EXAMINE INBOX\r\n");
  // Whatever followed the OK is handed back, not parsed as plain text.
  std::string rest = t.s.take_compressed_rest();
  if (chunk == 1) {
    CHECK(rest.empty());
    rest = compressed;
  } else {
    CHECK(rest == compressed);
  }
  REQUIRE(client_z.inflate(rest, [&](std::string_view p) { t.s.on_bytes(p); }));
  REQUIRE(client_z.inflate(server_z.deflate("* OK [UIDNEXT 1] x\r\na3 OK\r\n"), [&](std::string_view p) { t.s.on_bytes(p); }));
  CHECK(t.take() == lines{"E: opened INBOX e=0", "E: folder INBOX high=0 modseq=0", "C: a5 LOGOUT\r\n", "E: complete"});

  // Refused, not offered, or not asked for: plain text goes on.
  transcript r(o, chunk);
  r.server("* PREAUTH [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] hi\r\n");
  CHECK(r.server("a1 NO [COMPRESSIONACTIVE] already\r\n") ==
        lines{"E: warning COMPRESS refused: already", "C: a2 EXAMINE INBOX\r\n", "C: a3 UID SEARCH ALL\r\n"});
  auto off = o;
  off.compress = false;
  transcript n(off, chunk);
  CHECK(n.server("* PREAUTH [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] hi\r\n") ==
        lines{"C: a1 EXAMINE INBOX\r\n", "C: a2 UID SEARCH ALL\r\n"});
}

TEST_CASE("scan session ext: IDLE rescan asks STATUS again instead of trusting the first LIST-STATUS", "[unit]") {
  auto o = options();
  o.idle = true;
  o.checkpoints["INBOX"] = {5, 10, 0};
  transcript t(o, 0);
  t.server("* PREAUTH [CAPABILITY IMAP4rev1 IDLE LIST-STATUS] hi\r\n");
  CHECK(t.server("* LIST () \"/\" INBOX\r\n* STATUS INBOX (MESSAGES 10 UIDNEXT 11 UIDVALIDITY 5)\r\n"
                 "* LIST () \"/\" Sent\r\n* STATUS Sent (MESSAGES 0 UIDNEXT 1 UIDVALIDITY 8)\r\na1 OK\r\n") ==
        lines{"E: unchanged INBOX v=5 n=11 m=10", "C: a2 EXAMINE Sent\r\n", "C: a3 UID SEARCH ALL\r\n"});
  CHECK(t.server("* 0 EXISTS\r\n* OK [UIDVALIDITY 8] x\r\n* OK [UIDNEXT 1] x\r\na2 OK\r\n") ==
        lines{"E: opened Sent e=0", "E: folder Sent high=0 modseq=0", "C: a4 EXAMINE INBOX\r\n"});
  CHECK(t.server("* SEARCH\r\na3 OK\r\n* 10 EXISTS\r\n* OK [UIDVALIDITY 5] x\r\n* OK [UIDNEXT 11] x\r\na4 OK\r\n") ==
        lines{"C: a5 IDLE\r\n"});
  CHECK(t.server("+ idling\r\n* 11 EXISTS\r\n") == lines{"E: idle INBOX", "E: activity 0 INBOX 11"});
  t.s.stop_idle(idle_stop::rescan);
  CHECK(t.server("a5 OK\r\n") == lines{"C: DONE\r\n", "C: a6 EXAMINE INBOX\r\n", "C: a7 UID SEARCH UID 11:*\r\n"});
  t.server("* 11 EXISTS\r\n* OK [UIDVALIDITY 5] x\r\n* OK [UIDNEXT 12] x\r\na6 OK\r\n");
  // (The new message was expunged meanwhile.) Sent now has a checkpoint: asked about
  // afresh, not skipped on the stale LIST answer.
  CHECK(t.server("* SEARCH\r\na7 OK\r\n") ==
        lines{"E: folder INBOX high=11 modseq=0", "C: a8 STATUS Sent (MESSAGES UIDNEXT UIDVALIDITY)\r\n"});
}

TEST_CASE("scan session ext: pipelined STATUS answers are matched to their folder, never to another", "[unit]") {
  auto o = options();
  o.folders = {"INBOX", "Sent", "Arch\xc3\xa4v"};
  o.checkpoints["INBOX"] = {1, 5, 0};
  o.checkpoints["Sent"] = {2, 5, 0};
  o.checkpoints["Arch\xc3\xa4v"] = {3, 5, 0};
  transcript t(o, 1);
  CHECK(t.server("* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n") ==
        lines{"C: a1 STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY)\r\na2 STATUS Sent (MESSAGES UIDNEXT UIDVALIDITY)\r\n"
              "a3 STATUS Arch&AOQ-v (MESSAGES UIDNEXT UIDVALIDITY)\r\n"});
  // INBOX answered; Sent's answer names another folder (ignored: Sent is opened); the
  // third is refused (opened too, where a missing folder is classified).
  CHECK(t.server("* STATUS INBOX (UIDNEXT 6 UIDVALIDITY 1)\r\na1 OK\r\n"
                 "* STATUS Other (UIDNEXT 6 UIDVALIDITY 2)\r\na2 OK\r\n"
                 "a3 NO [NONEXISTENT] no such folder\r\n") ==
        lines{"E: unchanged INBOX v=1 n=6 m=0", "C: a4 EXAMINE Sent\r\n", "C: a5 UID SEARCH UID 6:*\r\n"});
  CHECK(t.server("* 0 EXISTS\r\n* OK [UIDVALIDITY 2] x\r\n* OK [UIDNEXT 6] x\r\na4 OK\r\n") ==
        lines{"E: opened Sent e=0", "E: folder Sent high=5 modseq=0", "C: a6 EXAMINE Arch&AOQ-v\r\n",
              "C: a7 UID SEARCH UID 6:*\r\n"});
  CHECK(t.server("* SEARCH\r\na5 OK\r\na6 NO [NONEXISTENT] no such folder\r\n").at(0).rfind("E: failed folder_not_found", 0) == 0);
}

TEST_CASE("scan session ext: LIST-STATUS announced but its syntax rejected -> plain LIST", "[unit]") {
  auto o = options();
  o.checkpoints["INBOX"] = {5, 10, 0};
  transcript t(o, 1);
  CHECK(t.server("* PREAUTH [CAPABILITY IMAP4rev1 LIST-STATUS] hi\r\n") ==
        lines{"C: a1 LIST \"\" \"*\" RETURN (STATUS (MESSAGES UIDNEXT UIDVALIDITY))\r\n"});
  CHECK(t.server("a1 BAD Error in IMAP command LIST: Unknown return option\r\n") ==
        lines{"E: warning LIST RETURN (STATUS) rejected: Error in IMAP command LIST: Unknown return option",
              "C: a2 LIST \"\" \"*\"\r\n"});
  CHECK(t.server("* LIST () \"/\" INBOX\r\na2 OK\r\n") == lines{"C: a3 STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY)\r\n"});
  // A second BAD is a protocol error as before.
  transcript u(o, 0);
  u.server("* PREAUTH [CAPABILITY IMAP4rev1 LIST-STATUS] hi\r\n");
  u.server("a1 BAD no\r\n");
  CHECK(u.server("a2 BAD no\r\n").at(0).rfind("E: failed protocol_error", 0) == 0);
}

TEST_CASE("scan session ext: park — UNSELECT instead of LOGOUT, repoll is one STATUS round trip, then LOGOUT",
          "[unit]") {
  const std::size_t chunk = GENERATE(0u, 1u, 3u);
  INFO("chunk " << chunk);
  auto o = options();
  o.folders = {"INBOX", "Sent"};
  o.checkpoints["INBOX"] = {7, 42, 0};
  o.checkpoints["Sent"] = {8, 10, 0};
  o.send_id = false;
  o.park = true;
  transcript t(o, chunk);
  CHECK(t.server("* PREAUTH [CAPABILITY IMAP4rev1 UNSELECT IDLE] hi\r\n") ==
        lines{"C: a1 STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY)\r\na2 STATUS Sent (MESSAGES UIDNEXT UIDVALIDITY)\r\n"});
  // Nothing new anywhere: parked at once, nothing selected, no command outstanding.
  CHECK(t.server("* STATUS INBOX (MESSAGES 40 UIDNEXT 43 UIDVALIDITY 7)\r\na1 OK\r\n"
                 "* STATUS Sent (MESSAGES 3 UIDNEXT 11 UIDVALIDITY 8)\r\na2 OK\r\n") ==
        lines{"E: unchanged INBOX v=7 n=43 m=40", "E: unchanged Sent v=8 n=11 m=3", "E: parked"});
  CHECK(t.s.parked());
  CHECK_FALSE(t.s.finished());
  // An unsolicited status line while parked changes nothing.
  CHECK(t.server("* OK still here\r\n").empty());
  t.s.repoll();
  CHECK(t.take() ==
        lines{"C: a3 STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY)\r\na4 STATUS Sent (MESSAGES UIDNEXT UIDVALIDITY)\r\n"});
  CHECK_FALSE(t.s.parked());
  // INBOX moved (a message came and went): opened, then left with UNSELECT before parking.
  CHECK(t.server("* STATUS INBOX (MESSAGES 40 UIDNEXT 44 UIDVALIDITY 7)\r\na3 OK\r\n"
                 "* STATUS Sent (MESSAGES 3 UIDNEXT 11 UIDVALIDITY 8)\r\na4 OK\r\n") ==
        lines{"C: a5 EXAMINE INBOX\r\n", "C: a6 UID SEARCH UID 43:*\r\n"});
  CHECK(t.server("* 0 EXISTS\r\n* OK [UIDVALIDITY 7] x\r\n* OK [UIDNEXT 44] x\r\na5 OK\r\n") ==
        lines{"E: opened INBOX e=0", "E: folder INBOX high=43 modseq=0", "E: unchanged Sent v=8 n=11 m=3",
              "C: a7 UNSELECT\r\n"});
  CHECK_FALSE(t.s.parked());  // not before the UNSELECT is answered
  CHECK(t.server("* SEARCH\r\na6 OK\r\n").empty());  // the empty folder's search: ignored
  CHECK_FALSE(t.s.parked());
  CHECK(t.server("* OK [CLOSED] Previous mailbox closed.\r\na7 OK Unselect completed.\r\n") == lines{"E: parked"});
  // The session's own checkpoint: INBOX is unchanged now at UIDNEXT 44.
  t.s.repoll();
  t.take();
  CHECK(t.server("* STATUS INBOX (MESSAGES 40 UIDNEXT 44 UIDVALIDITY 7)\r\na8 OK\r\n"
                 "* STATUS Sent (MESSAGES 3 UIDNEXT 11 UIDVALIDITY 8)\r\na9 OK\r\n") ==
        lines{"E: unchanged INBOX v=7 n=44 m=40", "E: unchanged Sent v=8 n=11 m=3", "E: parked"});
  // IDLE from parked; a poll ends it and checks with STATUS; then LOGOUT.
  CHECK(t.s.park_idle());
  CHECK(t.take() == lines{"C: a10 EXAMINE INBOX\r\n"});
  CHECK(t.server("* 40 EXISTS\r\n* OK [UIDVALIDITY 7] x\r\n* OK [UIDNEXT 44] x\r\na10 OK\r\n") ==
        lines{"C: a11 IDLE\r\n"});
  CHECK(t.server("+ idling\r\n") == lines{"E: idle INBOX"});
  t.s.stop_idle(idle_stop::poll);
  CHECK(t.server("a11 OK Idle completed\r\n") ==
        lines{"C: DONE\r\n",
              "C: a12 STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY)\r\na13 STATUS Sent (MESSAGES UIDNEXT UIDVALIDITY)\r\n"});
  CHECK(t.server("* STATUS INBOX (MESSAGES 40 UIDNEXT 44 UIDVALIDITY 7)\r\na12 OK\r\n"
                 "* STATUS Sent (MESSAGES 3 UIDNEXT 11 UIDVALIDITY 8)\r\na13 OK\r\n") ==
        lines{"E: unchanged INBOX v=7 n=44 m=40", "E: unchanged Sent v=8 n=11 m=3", "C: a14 UNSELECT\r\n"});
  CHECK(t.server("a14 OK\r\n") == lines{"E: parked"});
  t.s.end_parked();
  CHECK(t.take() == lines{"C: a15 LOGOUT\r\n", "E: complete"});
  CHECK(t.s.finished());
}

TEST_CASE("scan session ext: park without UNSELECT — CLOSE only for a read-only folder, else LOGOUT, and BYE while parked",
          "[unit]") {
  auto o = options();
  o.folders = {"INBOX"};
  o.park = true;
  o.send_id = false;
  const char* open = "* 0 EXISTS\r\n* OK [UIDVALIDITY 3] x\r\n* OK [UIDNEXT 1] x\r\na1 OK\r\n";
  transcript ro(o, 0);
  ro.server("* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n");
  CHECK(ro.server(open) == lines{"E: opened INBOX e=0", "E: folder INBOX high=0 modseq=0", "C: a3 CLOSE\r\n"});
  CHECK(ro.server("a2 OK\r\na3 OK\r\n") == lines{"E: parked"});
  // The server ends a parked session: a classified failure, nothing else.
  CHECK(ro.server("* BYE Autologout\r\n").at(0).rfind("E: failed server_bye", 0) == 0);

  o.read_write = true;  // SELECT: CLOSE would expunge \Deleted mail
  transcript rw(o, 0);
  rw.server("* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n");
  CHECK(rw.server(open) == lines{"E: opened INBOX e=0", "E: folder INBOX high=0 modseq=0", "C: a3 LOGOUT\r\n",
                                 "E: complete"});

  transcript refused(o, 0);
  refused.server("* PREAUTH [CAPABILITY IMAP4rev1 UNSELECT] hi\r\n");
  refused.server(open);
  CHECK(refused.server("a2 OK\r\na3 NO not now\r\n") ==
        lines{"E: warning cannot leave the folder to keep the session: not now", "C: a4 LOGOUT\r\n", "E: complete"});
  // Calls in the wrong state are ignored.
  refused.s.repoll();
  refused.s.end_parked();
  CHECK_FALSE(refused.s.park_idle());
  CHECK(refused.take().empty());
}
