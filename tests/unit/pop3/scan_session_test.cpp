// POP3 scan session against scripted servers; the server side of each conversation is also
// fed split at every byte and must give the same conversation.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "protocols/imap/command_writer.hpp"
#include "protocols/pop3/scan_session.hpp"

using namespace mscan;
using namespace mscan::pop3;

namespace {

// The conversation as text: "C: ..." for client lines, "E: ..." for events, "U: ..." for the
// checkpoint changes taken at each batch_complete / folder_complete.
std::vector<std::string> converse(const session_options& o, std::string_view server,
                                  const std::vector<std::size_t>& splits = {},
                                  const std::vector<std::uint32_t>& dele = {}) {
  scan_session s(o);
  std::vector<std::string> out;
  auto drain = [&] {
    for (;;) {
      while (auto ev = s.poll()) {
        std::visit(
          [&](auto& e) {
            using T = std::decay_t<decltype(e)>;
            if constexpr (std::is_same_v<T, imap::write_bytes>) {
              std::string_view d = e.data;
              while (!d.empty()) {
                auto nl = d.find("\r\n");
                out.push_back("C: " + std::string(d.substr(0, nl)));
                d.remove_prefix(nl == std::string_view::npos ? d.size() : nl + 2);
              }
            } else if constexpr (std::is_same_v<T, imap::start_tls>) {
              out.push_back("E: start_tls");
              s.on_tls_established();
            } else if constexpr (std::is_same_v<T, imap::folder_opened>) {
              out.push_back("E: opened " + e.folder + " exists=" + std::to_string(e.exists) +
                            " uidnext=" + std::to_string(e.uidnext));
            } else if constexpr (std::is_same_v<T, imap::message_fetched>) {
              out.push_back("E: message uid=" + std::to_string(e.uid) + " size=" + std::to_string(e.size) +
                            (e.truncated ? " truncated" : "") + " raw=" + excerpt(e.raw, 200));
            } else if constexpr (std::is_same_v<T, imap::batch_complete> || std::is_same_v<T, imap::folder_complete>) {
              std::string u;
              for (auto& c : s.take_uidl_changes())
                u += (c.removed ? " -" : " +") + c.uidl + "=" + std::to_string(c.uid);
              out.push_back(std::string("E: ") +
                            (std::is_same_v<T, imap::batch_complete> ? "batch" : "folder_complete") +
                            " highest=" + std::to_string(e.highest_uid) + u);
            } else if constexpr (std::is_same_v<T, imap::scan_complete>) {
              out.push_back("E: complete");
            } else if constexpr (std::is_same_v<T, imap::scan_failed>) {
              out.push_back("E: failed " + std::string(imap::to_string(e.err.kind)) + ": " + e.err.detail);
            } else if constexpr (std::is_same_v<T, imap::session_warning>) {
              out.push_back("E: warning " + e.detail);
            }
          },
          *ev);
      }
      if (!s.awaiting_resume())
        return;
      // Every batch is acknowledged at once: a resume() for the next batch, and at the end
      // the deletions and all_acked().
      s.resume();
      s.dele(dele);
      s.all_acked();
    }
  };
  std::size_t pos = 0;
  for (auto sp : splits) {
    s.on_bytes(server.substr(pos, sp - pos));
    pos = sp;
    drain();
  }
  s.on_bytes(server.substr(pos));
  drain();
  s.on_eof();
  drain();
  CHECK(s.finished());
  return out;
}

void grind(const session_options& o, std::string_view server) {
  auto whole = converse(o, server);
  for (std::size_t i = 1; i < server.size(); ++i) {
    INFO("split at " << i);
    REQUIRE(converse(o, server, {i}) == whole);
  }
  std::vector<std::size_t> every;
  for (std::size_t i = 1; i < server.size(); ++i)
    every.push_back(i);
  REQUIRE(converse(o, server, every) == whole);
}

session_options alice() {
  session_options o;
  o.username = "alice";
  o.secret = "Secret-Pass-1";
  return o;
}

const std::string caps_all = "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nUSER\r\nPIPELINING\r\nSASL PLAIN\r\n.\r\n";

} // namespace

TEST_CASE("pop3 session: incremental scan by UIDL, vanished UIDLs leave the checkpoint", "[unit][pop3]") {
  auto o = alice();
  o.known = {{"B", 5}, {"Z", 7}};
  o.last_uid = 10;
  o.batch_size = 1;
  const std::string server = "+OK ready\r\n" + caps_all +
                             "+OK logged in\r\n"
                             "+OK\r\n1 A\r\n2 B\r\n3 C\r\n.\r\n"
                             "+OK\r\n1 20\r\n2 30\r\n3 40\r\n.\r\n"
                             "+OK\r\nSubject: a\r\n\r\n..hi\r\n.\r\n"
                             "+OK\r\nSubject: c\r\n\r\nbye\r\n.\r\n"
                             "+OK bye\r\n";
  auto c = converse(o, server);
  std::vector<std::string> expected{
    "C: CAPA",
    "C: AUTH PLAIN " + imap::sasl_plain("alice", "Secret-Pass-1"),
    "C: UIDL",
    "E: opened INBOX exists=3 uidnext=13",
    "C: LIST",
    "C: RETR 1",
    "E: message uid=11 size=20 raw=Subject: a\\x0d\\x0a\\x0d\\x0a.hi\\x0d\\x0a",
    "E: batch highest=11 -Z=7 +A=11",
    "C: RETR 3",
    "E: message uid=12 size=40 raw=Subject: c\\x0d\\x0a\\x0d\\x0abye\\x0d\\x0a",
    "E: folder_complete highest=12 +C=12",
    "C: QUIT",
    "E: complete",
  };
  CHECK(c == expected);
  grind(o, server);
}

TEST_CASE("pop3 session: nothing new = UIDL only, no LIST, no RETR", "[unit][pop3]") {
  auto o = alice();
  o.known = {{"A", 1}};
  o.last_uid = 1;
  const std::string server = "+OK ready\r\n" + caps_all + "+OK\r\n+OK\r\n1 A\r\n.\r\n+OK\r\n";
  auto c = converse(o, server);
  REQUIRE(c.size() == 7);
  CHECK(c[2] == "C: UIDL");
  CHECK(c[3] == "E: opened INBOX exists=1 uidnext=2");
  CHECK(c[4] == "E: folder_complete highest=1");
  CHECK(c[5] == "C: QUIT");
  grind(o, server);
}

TEST_CASE("pop3 session: pipelined batch, TOP for large messages and headers_only", "[unit][pop3]") {
  auto o = alice();
  o.max_message_bytes = 1000;
  const std::string server = "+OK ready\r\n" + caps_all +
                             "+OK\r\n+OK\r\n1 A\r\n2 B\r\n.\r\n+OK\r\n1 20\r\n2 5000\r\n.\r\n"
                             "+OK\r\nS: a\r\n\r\nx\r\n.\r\n+OK\r\nS: b\r\n\r\ny\r\n.\r\n+OK\r\n";
  auto c = converse(o, server);
  REQUIRE(c.size() >= 8);
  CHECK(c[5] == "C: RETR 1");
  CHECK(c[6] == "C: TOP 2 10");  // pipelined: sent before the first answer
  CHECK(c[8] == "E: message uid=2 size=5000 truncated raw=S: b\\x0d\\x0a\\x0d\\x0ay\\x0d\\x0a");
  grind(o, server);
  o.headers_only = true;
  auto h = converse(o, server);
  CHECK(h[5] == "C: TOP 1 0");
  CHECK(h[6] == "C: TOP 2 0");
  CHECK(h[8].find("truncated") == std::string::npos);
}

TEST_CASE("pop3 session: without PIPELINING one command at a time", "[unit][pop3]") {
  auto o = alice();
  const std::string server = "+OK ready\r\n+OK\r\nUIDL\r\nUSER\r\n.\r\n+OK\r\n+OK\r\n"
                             "+OK\r\n1 A\r\n2 B\r\n.\r\n+OK\r\n1 3\r\n2 3\r\n.\r\n"
                             "+OK\r\nS: a\r\n.\r\n+OK\r\nS: b\r\n.\r\n+OK\r\n";
  auto c = converse(o, server);
  std::vector<std::string> want{"C: CAPA", "C: USER alice", "C: PASS Secret-Pass-1", "C: UIDL",
                                "E: opened INBOX exists=2 uidnext=3", "C: LIST", "C: RETR 1",
                                "E: message uid=1 size=3 raw=S: a\\x0d\\x0a", "C: RETR 2"};
  REQUIRE(c.size() > want.size());
  CHECK(std::vector<std::string>(c.begin(), c.begin() + static_cast<long>(want.size())) == want);
  grind(o, server);
}

TEST_CASE("pop3 session: APOP", "[unit][pop3]") {
  // RFC 1939's example digest.
  CHECK(apop_digest("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf") == "c4c9334bac560ecc979e58001b3e22fb");
  auto o = alice();
  o.auth = auth_method::apop;
  auto c = converse(o, "+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n-ERR\r\n-ERR [AUTH] bad\r\n");
  REQUIRE(c.size() == 3);
  CHECK(c[1] == "C: APOP alice " + apop_digest("<1896.697170952@dbc.mtview.ca.us>", "Secret-Pass-1"));
  CHECK(c[2] == "E: failed login_failed: login refused: -ERR [AUTH] bad");
  auto none = converse(o, "+OK no timestamp\r\n-ERR\r\n");
  CHECK(none.back().starts_with("E: failed auth_method_unsupported"));
}

TEST_CASE("pop3 session: STLS", "[unit][pop3]") {
  auto o = alice();
  o.starttls = true;
  SECTION("offered: CAPA again after the handshake, then login") {
    const std::string server = "+OK ready\r\n+OK\r\nSTLS\r\nUSER\r\n.\r\n+OK go\r\n+OK\r\nUSER\r\nUIDL\r\n.\r\n"
                               "+OK\r\n+OK\r\n+OK\r\n.\r\n+OK\r\n";
    auto c = converse(o, server);
    REQUIRE(c.size() >= 6);
    CHECK(c[1] == "C: STLS");
    CHECK(c[2] == "E: start_tls");
    CHECK(c[3] == "C: CAPA");
    CHECK(c[4] == "C: USER alice");
    grind(o, server);
  }
  SECTION("not offered: starttls_unavailable, nothing else sent in clear") {
    auto c = converse(o, "+OK ready\r\n+OK\r\nUSER\r\n.\r\n");
    REQUIRE(c.size() == 2);
    CHECK(c[1] == "E: failed starttls_unavailable: the server does not offer STLS (RFC 2595)");
  }
  SECTION("no CAPA, STLS refused") {
    auto c = converse(o, "+OK ready\r\n-ERR\r\n-ERR no\r\n");
    REQUIRE(c.size() == 3);
    CHECK(c[2].starts_with("E: failed starttls_unavailable"));
  }
}

TEST_CASE("pop3 session: classified errors, the secret never in a detail", "[unit][pop3]") {
  auto o = alice();
  auto fail_of = [&](const std::string& server) { return converse(o, server).back(); };
  CHECK(fail_of("+OK\r\n-ERR\r\n+OK\r\n-ERR [AUTH] Authentication failed.\r\n") ==
        "E: failed login_failed: login refused: -ERR [AUTH] Authentication failed.");
  CHECK(fail_of("+OK\r\n-ERR\r\n+OK\r\n-ERR [IN-USE] locked\r\n").starts_with("E: failed account_unavailable"));
  CHECK(fail_of("+OK\r\n-ERR\r\n+OK\r\n-ERR [SYS/TEMP] later\r\n").starts_with("E: failed account_unavailable"));
  CHECK(fail_of("+OK\r\n-ERR\r\n+OK\r\n-ERR [LOGIN-DELAY] wait\r\n").starts_with("E: failed throttled"));
  CHECK(fail_of("-ERR [SYS/PERM] go away\r\n").starts_with("E: failed account_unavailable"));
  CHECK(fail_of("* OK IMAP4rev1\r\n").starts_with("E: failed protocol_error"));
  CHECK(fail_of("+OK\r\n-ERR\r\n+OK\r\n+OK\r\n-ERR not supported\r\n").starts_with("E: failed protocol_error: UIDL refused"));
  CHECK(fail_of("+OK\r\n-ERR\r\n+OK\r\n+OK\r\n+OK\r\nbad line\r\n.\r\n").starts_with("E: failed protocol_error: UIDL: unparseable"));
  CHECK(fail_of("+OK\r\n-ERR\r\n+OK\r\n+OK\r\n+OK\r\n1 A\r\n.\r\n+OK\r\n1 10\r\n.\r\n+OK\r\nhalf") ==
        "E: failed server_bye: the server closed the connection in the middle of a message");
  CHECK(fail_of("+OK\r\n+OSecret-Pass-1\r\n") == "E: failed protocol_error: unparseable server reply: expected +OK or "
                                                   "-ERR, got '+O[redacted]'");
  o.username = "al\r\nDELE 1";
  CHECK(fail_of("+OK\r\n-ERR\r\n").starts_with("E: failed login_failed: the username or secret contains a line break"));
  for (auto& line : converse(alice(), "+OK\r\n-ERR\r\n+OK\r\n-ERR [AUTH] Secret-Pass-1\r\n"))
    if (line.starts_with("E:"))
      CHECK(line.find("PASS") == std::string::npos);
}

TEST_CASE("pop3 session: a RETR refused is a warning, the message stays out of the checkpoint", "[unit][pop3]") {
  auto o = alice();
  const std::string server = "+OK\r\n" + caps_all + "+OK\r\n+OK\r\n1 A\r\n2 B\r\n.\r\n+OK\r\n1 3\r\n2 3\r\n.\r\n"
                             "-ERR gone\r\n+OK\r\nx\r\n.\r\n+OK\r\n";
  auto c = converse(o, server);
  CHECK(std::find(c.begin(), c.end(), "E: folder_complete highest=2 +B=2") != c.end());
  CHECK(std::count_if(c.begin(), c.end(), [](auto& l) { return l.starts_with("E: warning message 1"); }) == 1);
}

TEST_CASE("pop3 session: probe logs in, STATs and fetches nothing", "[unit][pop3]") {
  auto o = alice();
  o.probe = true;
  auto c = converse(o, "+OK\r\n" + caps_all + "+OK\r\n+OK 7 1234\r\n+OK\r\n");
  std::vector<std::string> want{"C: CAPA", "C: AUTH PLAIN " + imap::sasl_plain("alice", "Secret-Pass-1"), "C: STAT",
                                "E: opened INBOX exists=7 uidnext=0", "C: QUIT", "E: complete"};
  CHECK(c == want);
}

TEST_CASE("pop3 session: DELE only for the uids given, only after all_acked, before QUIT", "[unit][pop3]") {
  auto o = alice();
  o.known = {{"A", 1}};
  o.last_uid = 1;
  const std::string server = "+OK\r\n" + caps_all + "+OK\r\n+OK\r\n1 A\r\n2 B\r\n3 C\r\n.\r\n"
                             "+OK\r\n1 3\r\n2 3\r\n3 3\r\n.\r\n+OK\r\nb\r\n.\r\n+OK\r\nc\r\n.\r\n"
                             "+OK\r\n-ERR no\r\n+OK\r\n";
  // uid 2 = message 2 (B), uid 3 = message 3 (C); uid 1 (A, tracked earlier) and 99 are not
  // this pass's to delete.
  auto c = converse(o, server, {}, {3, 1, 99, 2});
  std::vector<std::string> tail{"E: folder_complete highest=3 +B=2 +C=3", "C: DELE 3", "C: DELE 2", "C: QUIT",
                                "E: complete", "E: warning DELE refused: -ERR no"};
  REQUIRE(c.size() > tail.size());
  CHECK(std::vector<std::string>(c.end() - static_cast<long>(tail.size()), c.end()) == tail);
  scan_session s(o);
  s.on_bytes("+OK\r\n" + caps_all + "+OK\r\n+OK\r\n1 A\r\n.\r\n");
  std::string written;
  while (auto ev = s.poll())
    if (auto* w = std::get_if<imap::write_bytes>(&*ev)) written += w->data;
  CHECK(s.awaiting_resume());  // folder_complete: nothing more until all_acked()
  CHECK(written.find("QUIT") == std::string::npos);
  s.all_acked();
  bool quit = false;
  while (auto ev = s.poll())
    if (auto* w = std::get_if<imap::write_bytes>(&*ev)) quit = quit || w->data == "QUIT\r\n";
  CHECK(quit);
}

TEST_CASE("pop3 session: without PIPELINING each DELE waits for its answer", "[unit][pop3]") {
  auto o = alice();
  const std::string server = "+OK\r\n+OK\r\nUIDL\r\nUSER\r\n.\r\n+OK\r\n+OK\r\n+OK\r\n1 A\r\n2 B\r\n.\r\n"
                             "+OK\r\n1 3\r\n2 3\r\n.\r\n+OK\r\na\r\n.\r\n+OK\r\nb\r\n.\r\n+OK\r\n+OK\r\n+OK\r\n";
  auto c = converse(o, server, {}, {1, 2});
  std::vector<std::string> tail{"C: DELE 1", "C: DELE 2", "C: QUIT", "E: complete"};
  REQUIRE(c.size() > tail.size());
  CHECK(std::vector<std::string>(c.end() - static_cast<long>(tail.size()), c.end()) == tail);
  grind(o, server);
  scan_session s(o);
  s.on_bytes(server.substr(0, server.size() - 12));  // up to the end of the last RETR
  while (s.poll()) {
  }
  s.dele({1, 2});
  s.all_acked();
  std::string written;
  while (auto ev = s.poll())
    if (auto* w = std::get_if<imap::write_bytes>(&*ev)) written += w->data;
  CHECK(written == "DELE 1\r\n");  // one at a time
}
