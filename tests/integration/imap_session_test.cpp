// The IMAP scan session over the real transport, against a private real dovecot (and, for
// what dovecot cannot be made to do, tiny fake servers and a TCP forwarder on loopback).
// Every test starts its own dovecot; every wait is bounded and condition-based.
#include <catch2/catch.hpp>

#include <utility>  // before Asio: Boost 1.74 + g++ 12 under C++20 (TOOLCHAIN.md)

#include <boost/asio.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "tests/integration/imap_session_driver.hpp"
#include "tests/support/dovecot_fixture.hpp"

using namespace mscan;
using namespace mscan::test;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

#define REQUIRE_DOVECOT()                                    \
  do {                                                       \
    if (!dovecot_available()) {                              \
      WARN("/usr/sbin/dovecot not installed: test skipped"); \
      return;                                                \
    }                                                        \
  } while (false)

const std::string k_password = "s3cr3t-Pa55";  // must never show up in any error

std::string message(const std::string& subject, const std::string& body = "hello") {
  return "From: Bob <bob@acme.example>\r\nTo: alice@corp.example\r\nSubject: " + subject +
         "\r\nMessage-ID: <" + subject + "@acme.example>\r\nDate: Mon, 23 Nov 2026 10:00:00 "
         "+0000\r\n\r\n" + body + "\r\n";
}

dovecot_options alice_only() {
  dovecot_options o;
  o.users = {{"alice", k_password}};
  return o;
}

net::endpoint_options plain_to(std::uint16_t port) {
  net::endpoint_options eo;
  eo.host = "127.0.0.1";
  eo.port = port;
  eo.implicit_tls = false;
  eo.connect_timeout_ms = 5000;
  eo.idle_timeout_ms = 10000;
  return eo;
}

net::endpoint_options tls_to(const dovecot_fixture& dv, std::string host = "127.0.0.1") {
  net::endpoint_options eo;
  eo.host = std::move(host);
  eo.port = dv.imaps_port();
  eo.implicit_tls = true;
  eo.ca_file = dv.ca_file();
  eo.connect_timeout_ms = 5000;
  eo.idle_timeout_ms = 10000;
  return eo;
}

imap::session_options alice(std::string password = k_password) {
  imap::session_options so;
  so.username = "alice";
  so.secret = std::move(password);
  return so;
}

std::string describe(const scan_outcome& r) {
  std::string s = r.complete ? "complete" : "not complete";
  if (r.deadline_passed)
    s += ", driver deadline passed";
  if (r.error)
    s += ", error " + std::string(imap::to_string(r.error->kind)) + ": " + r.error->detail;
  return s;
}

void check_no_secret(const scan_outcome& r) {
  if (r.error)
    CHECK(r.error->detail.find(k_password) == std::string::npos);
}

// An io_context on its own thread for the fake servers below; stop() abandons every pending
// operation (they are destroyed with the context).
struct loopback_io {
  asio::io_context ctx;
  asio::executor_work_guard<asio::io_context::executor_type> guard{ctx.get_executor()};
  std::thread thread{[this] { ctx.run(); }};
  ~loopback_io() {
    ctx.stop();
    thread.join();
  }
};

// Forwards TCP connections from listen_address:<free port> to 127.0.0.1:target_port. With
// cut_after_fetch_bytes, both sides are closed once the server sent that many bytes after the
// client's first "UID FETCH" (to kill a session in the middle of a literal).
class tcp_forwarder {
 public:
  tcp_forwarder(const std::string& listen_address, std::uint16_t target_port,
                std::size_t cut_after_fetch_bytes = std::string::npos)
    : acceptor_(io_.ctx, tcp::endpoint(asio::ip::make_address(listen_address), 0)),
      target_port_(target_port),
      cut_after_(cut_after_fetch_bytes) {
    accept();
  }
  ~tcp_forwarder() {
    asio::post(io_.ctx, [this] {
      boost::system::error_code ec;
      acceptor_.close(ec);
    });
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  bool cut() const { return cut_done_; }

 private:
  struct pair_state {
    explicit pair_state(asio::io_context& c) : client(c), server(c) {}
    tcp::socket client, server;
    std::array<char, 16384> c2s{}, s2c{};
    bool fetch_seen = false;
    std::size_t after_fetch = 0;
    void close() {
      boost::system::error_code ec;
      client.close(ec);
      server.close(ec);
    }
  };

  void accept() {
    auto p = std::make_shared<pair_state>(io_.ctx);
    acceptor_.async_accept(p->client, [this, p](boost::system::error_code ec) {
      if (ec)
        return;
      p->server.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), target_port_),
                              [this, p](boost::system::error_code ec2) {
                                if (ec2)
                                  return p->close();
                                pump_c2s(p);
                                pump_s2c(p);
                              });
      accept();
    });
  }

  void pump_c2s(std::shared_ptr<pair_state> p) {
    p->client.async_read_some(asio::buffer(p->c2s), [this, p](boost::system::error_code ec, std::size_t n) {
      if (ec)
        return p->close();
      if (std::string_view(p->c2s.data(), n).find("UID FETCH") != std::string_view::npos)
        p->fetch_seen = true;
      asio::async_write(p->server, asio::buffer(p->c2s, n), [this, p](boost::system::error_code ec2, std::size_t) {
        if (ec2)
          return p->close();
        pump_c2s(p);
      });
    });
  }

  void pump_s2c(std::shared_ptr<pair_state> p) {
    p->server.async_read_some(asio::buffer(p->s2c), [this, p](boost::system::error_code ec, std::size_t n) {
      if (ec)
        return p->close();
      if (p->fetch_seen && cut_after_ != std::string::npos) {
        const std::size_t room = cut_after_ - p->after_fetch;
        if (n >= room) {
          // Forward exactly up to the cut, then drop both connections.
          asio::async_write(p->client, asio::buffer(p->s2c, room), [this, p](boost::system::error_code, std::size_t) {
            cut_done_ = true;
            p->close();
          });
          return;
        }
        p->after_fetch += n;
      }
      asio::async_write(p->client, asio::buffer(p->s2c, n), [this, p](boost::system::error_code ec2, std::size_t) {
        if (ec2)
          return p->close();
        pump_s2c(p);
      });
    });
  }

  loopback_io io_;
  tcp::acceptor acceptor_;
  std::uint16_t target_port_;
  std::size_t cut_after_;
  std::atomic<bool> cut_done_{false};
};

// A scripted IMAP server for one client at a time: sends `greeting`, then answers each
// command line with answer(tag, rest-of-line); an empty answer closes the connection.
// Everything the client sent is kept (to prove what was NOT sent).
class fake_imap_server {
 public:
  using answer_fn = std::function<std::string(const std::string& tag, const std::string& command)>;
  fake_imap_server(std::string greeting, answer_fn answer)
    : acceptor_(io_.ctx, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
      greeting_(std::move(greeting)),
      answer_(std::move(answer)) {
    accept();
  }
  ~fake_imap_server() {
    asio::post(io_.ctx, [this] {
      boost::system::error_code ec;
      acceptor_.close(ec);
    });
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::string received() {
    std::lock_guard lock{mtx_};
    return received_;
  }

 private:
  struct conn_state {
    explicit conn_state(asio::io_context& c) : sock(c) {}
    tcp::socket sock;
    asio::streambuf in;
    std::string out;
  };

  void accept() {
    auto c = std::make_shared<conn_state>(io_.ctx);
    acceptor_.async_accept(c->sock, [this, c](boost::system::error_code ec) {
      if (ec)
        return;
      send(c, greeting_);
      accept();
    });
  }

  void send(std::shared_ptr<conn_state> c, std::string bytes) {
    if (bytes.empty()) {
      boost::system::error_code ec;
      c->sock.close(ec);
      return;
    }
    c->out = std::move(bytes);
    asio::async_write(c->sock, asio::buffer(c->out), [this, c](boost::system::error_code ec, std::size_t) {
      if (!ec)
        read_line(c);
    });
  }

  void read_line(std::shared_ptr<conn_state> c) {
    asio::async_read_until(c->sock, c->in, "\r\n", [this, c](boost::system::error_code ec, std::size_t n) {
      if (ec)
        return;
      std::string line(asio::buffers_begin(c->in.data()), asio::buffers_begin(c->in.data()) + static_cast<std::ptrdiff_t>(n));
      c->in.consume(n);
      {
        std::lock_guard lock{mtx_};
        received_ += line;
      }
      line.resize(line.size() - 2);
      const auto sp = line.find(' ');
      const std::string tag = line.substr(0, sp);
      const std::string command = sp == std::string::npos ? std::string{} : line.substr(sp + 1);
      send(c, answer_(tag, command));
    });
  }

  loopback_io io_;
  tcp::acceptor acceptor_;
  std::string greeting_;
  answer_fn answer_;
  std::mutex mtx_;
  std::string received_;
};

bool starts_with_ci(const std::string& s, std::string_view prefix) {
  if (s.size() < prefix.size())
    return false;
  for (std::size_t i = 0; i < prefix.size(); ++i)
    if (std::toupper(static_cast<unsigned char>(s[i])) != std::toupper(static_cast<unsigned char>(prefix[i])))
      return false;
  return true;
}

}  // namespace

TEST_CASE("scan over plain IMAP: every folder, every message, clean LOGOUT", "[integration][imap_session]") {
  REQUIRE_DOVECOT();
  dovecot_fixture dv{alice_only()};
  for (int i = 0; i < 3; ++i)
    dv.seed("alice", "INBOX", message("inbox-" + std::to_string(i)));
  dv.seed("alice", "Sent", message("sent-0"), true);
  net::io_runtime rt;
  auto r = run_scan(rt, plain_to(dv.imap_port()), alice());
  INFO(describe(r));
  REQUIRE(r.complete);
  CHECK(r.messages.size() == 4);
  CHECK(r.folders.size() == 2);
  std::set<std::string> subjects;
  for (auto& m : r.messages) {
    CHECK_FALSE(m.truncated);
    CHECK(m.uidvalidity != 0);
    CHECK(m.raw.find("Subject: ") != std::string::npos);
    subjects.insert(m.raw.substr(m.raw.find("Subject: ") + 9, 7));
  }
  CHECK(subjects == std::set<std::string>{"inbox-0", "inbox-1", "inbox-2", "sent-0\r"});
  // The graceful close delivered LOGOUT before the socket went away.
  CHECK(dv.wait_for_log("Disconnected: Logged out", 1));
  // (The fixture's readiness probes close without logging in; those lines do not count.)
  INFO(dv.log_tail(20));
  CHECK(dv.count_in_log("Disconnected: Connection closed") ==
        dv.count_in_log("Disconnected: Connection closed (no auth attempts"));
}

TEST_CASE("scan over implicit TLS, verified against the fixture CA", "[integration][imap_session][tls]") {
  REQUIRE_DOVECOT();
  dovecot_fixture dv{alice_only()};
  dv.seed("alice", "INBOX", message("tls-0"));
  net::io_runtime rt;
  SECTION("IP literal (certificate has IP:127.0.0.1)") {
    auto r = run_scan(rt, tls_to(dv), alice());
    INFO(describe(r));
    REQUIRE(r.complete);
    CHECK(r.messages.size() == 1);
  }
  SECTION("DNS name (certificate has DNS:localhost; SNI sent)") {
    auto r = run_scan(rt, tls_to(dv, "localhost"), alice());
    INFO(describe(r));
    REQUIRE(r.complete);
    CHECK(r.messages.size() == 1);
  }
  CHECK(dv.wait_for_log("Disconnected: Logged out", 1));
  CHECK(dv.count_in_log(", TLS, session=") == 1);
}

TEST_CASE("scan over STARTTLS", "[integration][imap_session][tls]") {
  REQUIRE_DOVECOT();
  dovecot_fixture dv{alice_only()};
  dv.seed("alice", "INBOX", message("starttls-0"));
  net::io_runtime rt;
  auto eo = plain_to(dv.imap_port());
  eo.ca_file = dv.ca_file();
  auto so = alice();
  so.starttls = true;
  auto r = run_scan(rt, eo, so);
  INFO(describe(r));
  REQUIRE(r.complete);
  CHECK(r.messages.size() == 1);
  // Capabilities asked again after the handshake: STARTTLS is no longer offered.
  CHECK(std::find(r.capabilities.begin(), r.capabilities.end(), "STARTTLS") == r.capabilities.end());
  CHECK(dv.wait_for_log("Disconnected: Logged out", 1));
  // Dovecot marks a login that happened under TLS in its login line.
  INFO(dv.log_tail(10));
  CHECK(dv.count_in_log(", TLS, session=") == 1);
}

TEST_CASE("STARTTLS required but not offered: starttls_unavailable, nothing sent in clear",
          "[integration][imap_session][tls]") {
  fake_imap_server fake{"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake server ready\r\n",
                        [](const std::string& tag, const std::string& cmd) -> std::string {
                          if (starts_with_ci(cmd, "CAPABILITY"))
                            return "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + " OK done\r\n";
                          if (starts_with_ci(cmd, "LOGOUT"))
                            return "* BYE bye\r\n" + tag + " OK done\r\n";
                          return tag + " BAD not here\r\n";
                        }};
  net::io_runtime rt;
  auto so = alice();
  so.starttls = true;
  auto r = run_scan(rt, plain_to(fake.port()), so, {5s});
  INFO(describe(r));
  REQUIRE(r.error);
  CHECK(r.error->kind == imap::error_kind::starttls_unavailable);
  CHECK_FALSE(r.complete);
  const auto sent = fake.received();
  CHECK(sent.find(k_password) == std::string::npos);
  CHECK(sent.find("LOGIN") == std::string::npos);
  CHECK(sent.find("AUTHENTICATE") == std::string::npos);
}

TEST_CASE("wrong password: login_failed, secret not in the error", "[integration][imap_session]") {
  REQUIRE_DOVECOT();
  dovecot_fixture dv{alice_only()};
  net::io_runtime rt;
  auto r = run_scan(rt, tls_to(dv), alice("not-the-" + k_password));
  INFO(describe(r));
  REQUIRE(r.error);
  CHECK(r.error->kind == imap::error_kind::login_failed);
  CHECK(r.error->detail.find("not-the-") == std::string::npos);
  check_no_secret(r);
}

TEST_CASE("certificate checks: wrong CA, host-name mismatch, verification off",
          "[integration][imap_session][tls]") {
  REQUIRE_DOVECOT();
  dovecot_fixture dv{alice_only()};
  dv.seed("alice", "INBOX", message("cert-0"));
  net::io_runtime rt;
  SECTION("wrong CA: certificate_invalid naming the chain check") {
    auto eo = tls_to(dv);
    eo.ca_file = dv.wrong_ca_file();
    auto r = run_scan(rt, eo, alice());
    INFO(describe(r));
    REQUIRE(r.error);
    CHECK(r.error->kind == imap::error_kind::certificate_invalid);
    // OpenSSL's verify error for a chain that ends at no trusted root.
    CHECK(r.error->detail.find("issuer certificate") != std::string::npos);
    CHECK(r.messages.empty());
    check_no_secret(r);
  }
  SECTION("STARTTLS with the wrong CA fails before any credential is sent") {
    auto eo = plain_to(dv.imap_port());
    eo.ca_file = dv.wrong_ca_file();
    auto so = alice();
    so.starttls = true;
    auto r = run_scan(rt, eo, so);
    INFO(describe(r));
    REQUIRE(r.error);
    CHECK(r.error->kind == imap::error_kind::certificate_invalid);
  }
  SECTION("host name not in the certificate (127.0.0.2): certificate_invalid naming the name") {
    tcp_forwarder fwd{"127.0.0.2", dv.imaps_port()};
    auto eo = tls_to(dv, "127.0.0.2");
    eo.port = fwd.port();
    auto r = run_scan(rt, eo, alice());
    INFO(describe(r));
    REQUIRE(r.error);
    CHECK(r.error->kind == imap::error_kind::certificate_invalid);
    CHECK(r.error->detail.find("host name 127.0.0.2") != std::string::npos);
  }
  SECTION("implicit TLS to the plain port: tls_handshake_failed (not a certificate problem)") {
    auto eo = tls_to(dv);
    eo.port = dv.imap_port();
    auto r = run_scan(rt, eo, alice());
    INFO(describe(r));
    REQUIRE(r.error);
    CHECK(r.error->kind == imap::error_kind::tls_handshake_failed);
  }
  SECTION("verify_certificate = false accepts the wrong CA and the wrong name") {
    tcp_forwarder fwd{"127.0.0.2", dv.imaps_port()};
    auto eo = tls_to(dv, "127.0.0.2");
    eo.port = fwd.port();
    eo.ca_file = dv.wrong_ca_file();
    eo.verify_certificate = false;
    auto r = run_scan(rt, eo, alice());
    INFO(describe(r));
    REQUIRE(r.complete);
    CHECK(r.messages.size() == 1);
  }
}

TEST_CASE("connect failures are classified: refused, DNS, greeting and handshake timeouts",
          "[integration][imap_session]") {
  net::io_runtime rt;
  SECTION("connection refused on a closed port") {
    std::uint16_t port = 0;
    {
      asio::io_context ctx;
      tcp::acceptor a{ctx, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
      port = a.local_endpoint().port();
    }  // closed again: nothing listens there now
    auto r = run_scan(rt, plain_to(port), alice(), {5s});
    INFO(describe(r));
    REQUIRE(r.error);
    CHECK(r.error->kind == imap::error_kind::connection_refused);
  }
  SECTION("DNS failure (.invalid never resolves, RFC 6761)") {
    auto eo = plain_to(143);
    eo.host = "nonexistent.invalid";
    auto r = run_scan(rt, eo, alice(), {10s});
    INFO(describe(r));
    REQUIRE(r.error);
    CHECK(r.error->kind == imap::error_kind::dns_failure);
    CHECK(r.error->detail.find("nonexistent.invalid") != std::string::npos);
  }
  // A listening socket nobody accepts on: the kernel completes the TCP handshake, then
  // silence.
  asio::io_context ctx;
  tcp::acceptor silent{ctx, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  SECTION("plain: no greeting within idle_timeout_ms") {
    auto eo = plain_to(silent.local_endpoint().port());
    eo.idle_timeout_ms = 300;
    const auto t0 = std::chrono::steady_clock::now();
    auto r = run_scan(rt, eo, alice(), {5s});
    INFO(describe(r));
    REQUIRE(r.error);
    CHECK(r.error->kind == imap::error_kind::timeout);
    CHECK(std::chrono::steady_clock::now() - t0 >= 300ms);
    CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  }
  SECTION("implicit TLS: no handshake within connect_timeout_ms") {
    net::endpoint_options eo;
    eo.host = "127.0.0.1";
    eo.port = silent.local_endpoint().port();
    eo.connect_timeout_ms = 300;
    auto r = run_scan(rt, eo, alice(), {5s});
    INFO(describe(r));
    REQUIRE(r.error);
    CHECK(r.error->kind == imap::error_kind::timeout);
    CHECK(r.elapsed < 3s);
  }
}

TEST_CASE("folder names with non-ASCII characters are listed and scanned", "[integration][imap_session]") {
  REQUIRE_DOVECOT();
  dovecot_fixture dv{alice_only()};
  dv.seed("alice", "INBOX", message("inbox"));
  dv.seed("alice", "Résumé", message("resume-0"));
  dv.seed("alice", "Résumé", message("resume-1"));
  dv.seed("alice", "日本語", message("nihongo"));
  dv.seed("alice", "Archive/Überweisungen", message("ueber"));
  net::io_runtime rt;
  SECTION("all folders (LIST)") {
    auto r = run_scan(rt, plain_to(dv.imap_port()), alice());
    INFO(describe(r));
    REQUIRE(r.complete);
    std::map<std::string, std::size_t> per_folder;
    for (auto& m : r.messages)
      ++per_folder[m.folder];
    CHECK(per_folder["INBOX"] == 1);
    CHECK(per_folder["Résumé"] == 2);
    CHECK(per_folder["日本語"] == 1);
    CHECK(per_folder["Archive/Überweisungen"] == 1);
  }
  SECTION("configured folder names (sent as the server wants them)") {
    auto so = alice();
    so.folders = {"日本語", "Résumé"};
    auto r = run_scan(rt, plain_to(dv.imap_port()), so);
    INFO(describe(r));
    REQUIRE(r.complete);
    REQUIRE(r.folders.size() == 2);
    CHECK(r.folders[0].folder == "日本語");
    CHECK(r.folders[1].folder == "Résumé");
    CHECK(r.messages.size() == 3);
  }
}

TEST_CASE("a 20 MB message: truncated above max_message_bytes, whole below", "[integration][imap_session]") {
  REQUIRE_DOVECOT();
  dovecot_fixture dv{alice_only()};
  std::string body;
  body.reserve(20u << 20);
  const std::string line(76, 'x');
  while (body.size() < (20u << 20))
    body += line + "\r\n";
  const auto raw = message("big", body);
  dv.seed("alice", "INBOX", raw);
  dv.seed("alice", "INBOX", message("small"));
  net::io_runtime rt;
  SECTION("default max_message_bytes (2 MiB): header + first 2 MiB of the body, truncated") {
    auto r = run_scan(rt, plain_to(dv.imap_port()), alice());
    INFO(describe(r));
    REQUIRE(r.complete);
    REQUIRE(r.messages.size() == 2);
    // Small messages are fetched before large ones within a batch: find the big one by size.
    std::sort(r.messages.begin(), r.messages.end(), [](auto& a, auto& b) { return a.uid < b.uid; });
    auto& big = r.messages[0];
    CHECK(big.truncated);
    CHECK(big.size == raw.size());  // RFC822.SIZE: what the server holds
    CHECK(big.raw.size() < raw.size());
    CHECK(big.raw.size() >= 2u * 1024 * 1024);
    CHECK(big.raw.find("Subject: big") != std::string::npos);
    CHECK_FALSE(r.messages[1].truncated);
  }
  SECTION("max_message_bytes 32 MiB: fetched whole") {
    auto so = alice();
    so.max_message_bytes = 32u << 20;
    auto r = run_scan(rt, plain_to(dv.imap_port()), so);
    INFO(describe(r));
    REQUIRE(r.complete);
    REQUIRE(r.messages.size() == 2);
    std::sort(r.messages.begin(), r.messages.end(), [](auto& a, auto& b) { return a.uid < b.uid; });
    CHECK_FALSE(r.messages[0].truncated);
    CHECK(r.messages[0].raw.size() == raw.size());
    CHECK(r.messages[0].raw == raw);
  }
}

TEST_CASE("a mailbox of 10,000 messages: all fetched, in batches, in bounded time",
          "[integration][imap_session][scale]") {
  REQUIRE_DOVECOT();
  dovecot_fixture dv{alice_only()};
  constexpr std::size_t n = 10000;
  for (std::size_t i = 0; i < n; ++i)
    dv.seed("alice", "INBOX", message("m" + std::to_string(i), "body of message " + std::to_string(i)));
  net::io_runtime rt;
  auto so = alice();
  so.batch_size = 500;
  auto r = run_scan(rt, plain_to(dv.imap_port()), so, {60s, false});
  INFO(describe(r));
  REQUIRE(r.complete);
  CHECK(r.messages.size() == n);
  std::set<std::uint32_t> uids;
  for (auto& m : r.messages)
    uids.insert(m.uid);
  CHECK(uids.size() == n);
  CHECK(*uids.begin() == 1);
  CHECK(*uids.rbegin() == n);
  CHECK(r.batches.size() == n / 500);
  WARN("10,000 messages scanned in " << r.elapsed.count() << " ms (" << r.bytes_received << " bytes)");
  CHECK(r.elapsed < 30s);
}

TEST_CASE("server disconnect in the middle of a FETCH literal: classified, nothing complete",
          "[integration][imap_session]") {
  REQUIRE_DOVECOT();
  dovecot_fixture dv{alice_only()};
  dv.seed("alice", "INBOX", message("big", std::string(200000, 'y')));
  dv.seed("alice", "INBOX", message("after"));
  tcp_forwarder fwd{"127.0.0.1", dv.imap_port(), 5000};
  net::io_runtime rt;
  auto so = alice();
  so.folders = {"INBOX"};
  auto r = run_scan(rt, plain_to(fwd.port()), so);
  INFO(describe(r));
  CHECK(fwd.cut());
  REQUIRE(r.error);
  CHECK(r.error->kind == imap::error_kind::protocol_error);
  CHECK_FALSE(r.complete);
  CHECK(r.folders.empty());   // no folder reported complete (no checkpoint may advance)
  CHECK(r.batches.empty());
  CHECK(r.messages.empty());  // the half-received message is not reported
}
