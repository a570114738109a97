// smtp_session and reply_parser driven by scripted server transcripts: no sockets, no
// threads. Every transcript is also fed split at every byte ("grind").
#include <catch2/catch.hpp>

#include <sstream>

#include "protocols/imap/command_writer.hpp"
#include "protocols/smtp/smtp_session.hpp"

using namespace mscan::smtp;

namespace {

std::string describe(const session_output& o) {
  std::ostringstream s;
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, write_bytes>) s << "write " << v.data;
        else if constexpr (std::is_same_v<T, start_tls>) s << "start_tls";
        else if constexpr (std::is_same_v<T, message_sent>) {
          s << "sent " << v.index << " " << v.reply;
          for (auto& r : v.rejected_recipients) s << " rejected=" << r;
        } else if constexpr (std::is_same_v<T, message_failed>)
          s << "msgfail " << v.index << " " << to_string(v.err.kind) << " perm=" << v.err.permanent << " code=" << v.err.code;
        else if constexpr (std::is_same_v<T, session_done>) s << "done";
        else if constexpr (std::is_same_v<T, session_failed>)
          s << "failed " << to_string(v.err.kind) << " code=" << v.err.code << ": " << v.err.detail;
      },
      o);
  return s.str();
}

struct run_result {
  std::string written;
  std::vector<std::string> events;
};

// Feeds `server` in pieces: the split points are given; "<TLS>" in the transcript marks where
// the TLS handshake happens (on_tls_established is called there, after start_tls was asked).
run_result run(session_options o, std::vector<envelope> msgs, std::string_view server,
               std::vector<std::size_t> splits = {}, bool eof = false) {
  smtp_session s(std::move(o), std::move(msgs));
  run_result r;
  auto drain = [&] {
    while (auto out = s.poll()) {
      if (auto* w = std::get_if<write_bytes>(&*out)) r.written += w->data;
      else r.events.push_back(describe(*out));
    }
  };
  auto feed = [&](std::string_view part) {
    std::size_t pos = 0;
    for (auto at : splits) {
      if (at <= pos || at >= part.size()) continue;
      s.on_bytes(part.substr(pos, at - pos));
      drain();
      pos = at;
    }
    s.on_bytes(part.substr(pos));
    drain();
  };
  const auto tls = server.find("<TLS>");
  if (tls == std::string_view::npos) {
    feed(server);
  } else {
    feed(server.substr(0, tls));
    s.on_tls_established();
    drain();
    feed(server.substr(tls + 5));
  }
  if (eof) {
    s.on_eof();
    drain();
  }
  return r;
}

// The same transcript split at every byte (two pieces) and byte by byte gives the same result.
run_result grind(const session_options& o, const std::vector<envelope>& msgs, std::string_view server,
                 bool eof = false) {
  auto whole = run(o, msgs, server, {}, eof);
  std::string_view plain = server;
  for (std::size_t i = 1; i < plain.size(); ++i) {
    auto split = run(o, msgs, server, {i}, eof);
    INFO("split at " << i);
    REQUIRE(split.written == whole.written);
    REQUIRE(split.events == whole.events);
  }
  std::vector<std::size_t> every;
  for (std::size_t i = 1; i < plain.size(); ++i) every.push_back(i);
  auto bytewise = run(o, msgs, server, every, eof);
  REQUIRE(bytewise.written == whole.written);
  REQUIRE(bytewise.events == whole.events);
  return whole;
}

envelope msg(std::string data = "Subject: hi\r\n\r\nbody\r\n") {
  return envelope{"support@corp.example", {"bob@acme.example"}, std::move(data)};
}

session_options password_auth() {
  session_options o;
  o.helo_name = "mailscan.local";
  o.auth = auth_mechanism::password;
  o.username = "support";
  o.secret = "s3cret";
  return o;
}

} // namespace

TEST_CASE("reply parser: multi-line replies, enhanced codes, limits", "[unit][smtp]") {
  reply_parser p;
  std::string in = "250-mx.example greets you\r\n250-PIPELINING\r\n250 8BITMIME\r\n";
  REQUIRE(p.feed(in) == in.size());
  REQUIRE(p.ready());
  auto r = p.take();
  CHECK(r.code == 250);
  CHECK(r.lines == std::vector<std::string>{"mx.example greets you", "PIPELINING", "8BITMIME"});
  CHECK(p.at_boundary());

  std::string two = "535 5.7.8 Authentication credentials invalid\r\n220 x\r\n";
  auto used = p.feed(two);
  REQUIRE(p.ready());
  CHECK(p.take().enhanced == "5.7.8");
  p.feed(std::string_view{two}.substr(used));
  REQUIRE(p.ready());
  CHECK(p.take().code == 220);

  SECTION("a code change inside a reply") {
    reply_parser q;
    q.feed("250-a\r\n251 b\r\n");
    CHECK(q.failed());
  }
  SECTION("not a reply") {
    reply_parser q;
    q.feed("HTTP/1.1 200 OK\r\n");
    CHECK(q.failed());
  }
  SECTION("an over-long line fails without buffering it") {
    reply_parser q(reply_limits{.max_line_length = 100, .max_lines = 4});
    q.feed("250-");
    q.feed(std::string(200, 'x'));
    CHECK(q.failed());
  }
  SECTION("too many lines") {
    reply_parser q(reply_limits{.max_line_length = 100, .max_lines = 4});
    q.feed("250-a\r\n250-a\r\n250-a\r\n250-a\r\n250-a\r\n");
    CHECK(q.failed());
  }
  SECTION("bare LF is accepted") {
    reply_parser q;
    q.feed("220 ok\n");
    REQUIRE(q.ready());
    CHECK(q.take().lines[0] == "ok");
  }
}

TEST_CASE("dot-stuffing and line ends", "[unit][smtp]") {
  CHECK(*dot_stuff("a\r\n.b\r\n..c\r\n") == "a\r\n..b\r\n...c\r\n.\r\n");
  // Bare LF and bare CR become CRLF: a "\n.\n" cannot end the data early (smuggling).
  CHECK(*dot_stuff("a\n.\nb\r.\r") == "a\r\n..\r\nb\r\n..\r\n.\r\n");
  CHECK(*dot_stuff("no final newline") == "no final newline\r\n.\r\n");
  CHECK(*dot_stuff("") == ".\r\n");
  CHECK_FALSE(dot_stuff(std::string(999, 'x')).has_value());
  CHECK(dot_stuff(std::string(998, 'x')).has_value());
}

TEST_CASE("AUTH PLAIN, pipelined envelope, dot-stuffed body, QUIT", "[unit][smtp]") {
  const std::string server =
    "220 mx.example ESMTP\r\n"
    "250-mx.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 AUTH LOGIN PLAIN\r\n"
    "235 2.7.0 Authentication successful\r\n"
    "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
    "250 2.0.0 Ok: queued as 4711\r\n";
  auto r = grind(password_auth(), {msg("Subject: hi\r\n\r\n.leading dot\r\n")}, server);
  const std::string body = "Subject: hi\r\n\r\n..leading dot\r\n.\r\n";
  CHECK(r.written == "EHLO mailscan.local\r\n"
                     "AUTH PLAIN " + mscan::imap::sasl_plain("support", "s3cret") + "\r\n"
                     "MAIL FROM:<support@corp.example> SIZE=" + std::to_string(body.size()) + "\r\n"
                     "RCPT TO:<bob@acme.example>\r\nDATA\r\n" + body + "QUIT\r\n");
  CHECK(r.events == std::vector<std::string>{"sent 0 250 2.0.0 Ok: queued as 4711", "done"});
}

TEST_CASE("AUTH LOGIN and no pipelining: one command at a time", "[unit][smtp]") {
  const std::string server =
    "220 mx\r\n250-mx\r\n250 AUTH=LOGIN\r\n"
    "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 ok\r\n"
    "250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n";
  auto r = grind(password_auth(), {msg()}, server);
  CHECK(r.written == "EHLO mailscan.local\r\nAUTH LOGIN\r\n" + mscan::imap::base64_encode("support") + "\r\n" +
                     mscan::imap::base64_encode("s3cret") + "\r\n"
                     "MAIL FROM:<support@corp.example>\r\nRCPT TO:<bob@acme.example>\r\nDATA\r\n"
                     "Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n");
  CHECK(r.events == std::vector<std::string>{"sent 0 250 queued", "done"});
}

TEST_CASE("wrong password: login_failed, nothing sent", "[unit][smtp]") {
  auto r = grind(password_auth(), {msg()},
                 "220 mx\r\n250-mx\r\n250 AUTH PLAIN\r\n535 5.7.8 Error: authentication failed\r\n");
  REQUIRE(r.events.size() == 1);
  CHECK(r.events[0].starts_with("failed login_failed code=535"));
  CHECK(r.written.find("MAIL FROM") == std::string::npos);
  CHECK(r.events[0].find("s3cret") == std::string::npos);
}

TEST_CASE("XOAUTH2: error challenge answered, then login_failed", "[unit][smtp]") {
  auto o = password_auth();
  o.auth = auth_mechanism::xoauth2;
  o.secret = "tok";
  auto r = grind(o, {msg()},
                 "220 mx\r\n250-mx\r\n250 AUTH XOAUTH2 PLAIN\r\n334 eyJzdGF0dXMiOiI0MDEifQ==\r\n535 5.7.3 no\r\n");
  CHECK(r.written == "EHLO mailscan.local\r\nAUTH XOAUTH2 " + mscan::imap::sasl_xoauth2("support", "tok") + "\r\n\r\n");
  REQUIRE(r.events.size() == 1);
  CHECK(r.events[0].starts_with("failed login_failed code=535"));
}

TEST_CASE("auth mechanisms not offered: auth_method_unsupported", "[unit][smtp]") {
  auto r = grind(password_auth(), {msg()}, "220 mx\r\n250-mx\r\n250 AUTH CRAM-MD5\r\n");
  REQUIRE(r.events.size() == 1);
  CHECK(r.events[0].starts_with("failed auth_method_unsupported"));
  auto o = password_auth();
  o.auth = auth_mechanism::xoauth2;
  auto x = grind(o, {msg()}, "220 mx\r\n250-mx\r\n250 AUTH PLAIN\r\n");
  CHECK(x.events[0].starts_with("failed auth_method_unsupported"));
  auto none = grind(password_auth(), {msg()}, "220 mx\r\n250 mx\r\n");
  CHECK(none.events[0].starts_with("failed auth_method_unsupported"));
}

TEST_CASE("STARTTLS: capabilities re-read after TLS, no downgrade", "[unit][smtp]") {
  auto o = password_auth();
  o.starttls = true;
  SECTION("upgrade, then AUTH with the new capabilities") {
    auto r = grind(o, {msg()},
                   "220 mx\r\n250-mx\r\n250-AUTH PLAIN\r\n250 STARTTLS\r\n220 go ahead\r\n<TLS>"
                   "250-mx\r\n250 AUTH LOGIN\r\n334 x\r\n334 y\r\n235 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n");
    CHECK(r.written.starts_with("EHLO mailscan.local\r\nSTARTTLS\r\nEHLO mailscan.local\r\nAUTH LOGIN\r\n"));
    CHECK(r.events == std::vector<std::string>{"start_tls", "sent 0 250 ok", "done"});
  }
  SECTION("not offered") {
    auto r = grind(o, {msg()}, "220 mx\r\n250-mx\r\n250 AUTH PLAIN\r\n");
    CHECK(r.written == "EHLO mailscan.local\r\n");
    REQUIRE(r.events.size() == 1);
    CHECK(r.events[0].starts_with("failed starttls_unavailable"));
  }
  SECTION("refused") {
    auto r = grind(o, {msg()}, "220 mx\r\n250-mx\r\n250 STARTTLS\r\n454 4.7.0 TLS not available\r\n");
    CHECK(r.events[0].starts_with("failed starttls_unavailable code=454"));
  }
  SECTION("plaintext injected after the 220") {
    auto r = grind(o, {msg()}, "220 mx\r\n250-mx\r\n250 STARTTLS\r\n220 go ahead\r\n250 injected\r\n");
    CHECK(r.events == std::vector<std::string>{"start_tls", r.events.back()});
    CHECK(r.events.back().starts_with("failed protocol_error"));
  }
}

TEST_CASE("throttling and server refusals are classified", "[unit][smtp]") {
  SECTION("421 at greeting") {
    auto r = grind(password_auth(), {msg()}, "421 4.7.0 Too many connections\r\n");
    CHECK(r.events[0].starts_with("failed throttled code=421"));
  }
  SECTION("554 at greeting") {
    auto r = grind(password_auth(), {msg()}, "554 no service\r\n");
    CHECK(r.events[0].starts_with("failed server_bye code=554"));
  }
  SECTION("451 at end of data: message failed, transient; next message still goes") {
    auto r = grind(session_options{}, {msg(), msg()},
                   "220 mx\r\n250 mx\r\n250 ok\r\n250 ok\r\n354 go\r\n451 4.3.0 try later\r\n"
                   "250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n");
    CHECK(r.events == std::vector<std::string>{"msgfail 0 throttled perm=0 code=451", "sent 1 250 queued", "done"});
  }
  SECTION("421 mid-session ends it") {
    auto r = grind(session_options{}, {msg()}, "220 mx\r\n250 mx\r\n421 4.4.2 shutting down\r\n");
    CHECK(r.events[0].starts_with("failed throttled code=421"));
  }
  SECTION("452 on RCPT: throttled, RSET") {
    auto r = grind(session_options{}, {msg()}, "220 mx\r\n250 mx\r\n250 ok\r\n452 4.5.3 too many\r\n250 reset\r\n");
    CHECK(r.events == std::vector<std::string>{"msgfail 0 throttled perm=0 code=452", "done"});
    CHECK(r.written.ends_with("RSET\r\nQUIT\r\n"));
  }
}

TEST_CASE("pipelined envelope with refusals", "[unit][smtp]") {
  const std::string ehlo = "220 mx\r\n250-mx\r\n250 PIPELINING\r\n";
  SECTION("unknown recipient: permanent, DATA refused, RSET") {
    auto r = grind(session_options{}, {msg()},
                   ehlo + "250 ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n250 ok\r\n");
    CHECK(r.events == std::vector<std::string>{"msgfail 0 recipient_rejected perm=1 code=550", "done"});
  }
  SECTION("sender refused") {
    auto r = grind(session_options{}, {msg()},
                   ehlo + "553 5.7.1 sender not owned\r\n503 need MAIL\r\n503 need RCPT\r\n250 ok\r\n");
    CHECK(r.events == std::vector<std::string>{"msgfail 0 message_rejected perm=1 code=553", "done"});
  }
  SECTION("one of two recipients refused: sent to the other, the refusal reported") {
    envelope e = msg();
    e.recipients.push_back("gone@acme.example");
    auto r = grind(session_options{}, {e}, ehlo + "250 ok\r\n250 ok\r\n550 5.1.1 gone\r\n354 go\r\n250 queued\r\n");
    CHECK(r.events == std::vector<std::string>{"sent 0 250 queued rejected=gone@acme.example: 550 5.1.1 gone", "done"});
  }
  SECTION("message refused at end of data") {
    auto r = grind(session_options{}, {msg()}, ehlo + "250 ok\r\n250 ok\r\n354 go\r\n554 5.7.1 spam\r\n");
    CHECK(r.events == std::vector<std::string>{"msgfail 0 message_rejected perm=1 code=554", "done"});
  }
}

TEST_CASE("hostile or broken servers", "[unit][smtp]") {
  SECTION("EOF in the middle of a reply") {
    auto r = grind(session_options{}, {msg()}, "220 mx\r\n250-mx\r\n250-PIPE", true);
    CHECK(r.events[0].starts_with("failed protocol_error"));
  }
  SECTION("EOF between replies") {
    auto r = grind(session_options{}, {msg()}, "220 mx\r\n", true);
    CHECK(r.events[0].starts_with("failed server_bye"));
  }
  SECTION("garbage") {
    auto r = grind(session_options{}, {msg()}, "* OK IMAP4rev1 ready\r\n");
    CHECK(r.events[0].starts_with("failed protocol_error"));
  }
  SECTION("an endless line") {
    auto r = run(session_options{}, {msg()}, "220 " + std::string(10000, 'x'));
    CHECK(r.events[0].starts_with("failed protocol_error"));
  }
  SECTION("EHLO refused: HELO when nothing needs ESMTP") {
    auto r = grind(session_options{}, {msg()}, "220 mx\r\n502 no\r\n250 hi\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n");
    CHECK(r.written.starts_with("EHLO localhost\r\nHELO localhost\r\nMAIL FROM"));
    CHECK(r.events == std::vector<std::string>{"sent 0 250 ok", "done"});
  }
}

TEST_CASE("messages refused before anything is sent", "[unit][smtp]") {
  envelope bad{"support@corp.example", {"bob@acme.example>\r\nRCPT TO:<evil@x"}, "x"};
  envelope longline{"support@corp.example", {"bob@acme.example"}, std::string(2000, 'x')};
  envelope utf8{"support@corp.example", {"b\xc3\xb6@acme.example"}, "x"};
  auto r = grind(session_options{}, {bad, longline, utf8, msg()},
                 "220 mx\r\n250 mx\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n");
  CHECK(r.events == std::vector<std::string>{"msgfail 0 message_rejected perm=1 code=0",
                                             "msgfail 1 message_rejected perm=1 code=0",
                                             "msgfail 2 message_rejected perm=1 code=0", "sent 3 250 ok", "done"});
  CHECK(r.written.find("evil") == std::string::npos);
}

TEST_CASE("a server echoing the password never gets it into an error", "[unit][smtp]") {
  auto r = grind(password_auth(), {msg()}, "220 mx\r\n250-mx\r\n250 AUTH PLAIN\r\n535 bad password s3cret\r\n");
  REQUIRE(r.events.size() == 1);
  CHECK(r.events[0].find("s3cret") == std::string::npos);
  CHECK(r.events[0].find("[redacted]") != std::string::npos);
}
