// The transport against tiny loopback servers (no IMAP, no dovecot): TLS version floor, SNI,
// graceful close (close_notify / FIN after the last write), idle timeout and its pause.
// The server's certificate is made in-process (self-signed EC P-256), so no files are needed.
#include <catch2/catch.hpp>

#include <utility>  // before Asio: Boost 1.74 + g++ 12 under C++20 (TOOLCHAIN.md)

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "protocols/net/tls_transport.hpp"

using namespace mscan;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

namespace {

// A self-signed server certificate for localhost / 127.0.0.1.
struct test_identity {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  test_identity() {
    key = EVP_EC_gen("P-256");
    cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    auto* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, cert, cert, nullptr, nullptr, 0);
    if (auto* ext = X509V3_EXT_conf_nid(nullptr, &v3, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1")) {
      X509_add_ext(cert, ext, -1);
      X509_EXTENSION_free(ext);
    }
    X509_sign(cert, key, EVP_sha256());
  }
  ~test_identity() {
    X509_free(cert);
    EVP_PKEY_free(key);
  }
};

// What the server saw of one client.
struct server_view {
  bool handshake_ok = false;
  std::string sni;                 // empty: the client sent none
  std::string received;
  boost::system::error_code end;   // how reading ended
};

// One-connection server on 127.0.0.1: TLS (with a version ceiling) or plain, silent or not.
class test_server {
 public:
  struct options {
    bool tls = true;
    int max_version = 0;   // e.g. TLS1_1_VERSION; 0 = library default
    bool silent = false;   // accept and never read or write (for timeouts)
  };
  explicit test_server(options o) : opts_(o), tls_ctx_(ssl::context::tls_server),
      acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    SSL_CTX* c = tls_ctx_.native_handle();
    SSL_CTX_use_certificate(c, identity_.cert);
    SSL_CTX_use_PrivateKey(c, identity_.key);
    if (opts_.max_version) {
      // Old protocol versions need the lowest security level in OpenSSL 3 at all.
      SSL_CTX_set_security_level(c, 0);
      SSL_CTX_set_cipher_list(c, "ALL:@SECLEVEL=0");
      SSL_CTX_set_min_proto_version(c, TLS1_VERSION);
      SSL_CTX_set_max_proto_version(c, opts_.max_version);
    }
    SSL_CTX_set_tlsext_servername_callback(c, +[](SSL*, int*, void*) { return SSL_TLSEXT_ERR_OK; });
    stream_ = std::make_unique<ssl::stream<tcp::socket>>(io_, tls_ctx_);
    acceptor_.async_accept(stream_->next_layer(), [this](boost::system::error_code ec) { on_accept(ec); });
    thread_ = std::thread([this] { io_.run(); });
  }
  ~test_server() {
    asio::post(io_, [this] {
      boost::system::error_code ec;
      acceptor_.close(ec);
      stream_->next_layer().close(ec);
    });
    work_.reset();
    io_.stop();
    thread_.join();
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  // Completes when the client's side ended (EOF, close_notify, error) or the handshake failed.
  std::shared_future<server_view> done() { return done_; }

 private:
  void on_accept(boost::system::error_code ec) {
    if (ec)
      return finish(ec);
    if (opts_.silent)
      return;
    if (!opts_.tls)
      return read();
    stream_->async_handshake(ssl::stream_base::server, [this](boost::system::error_code hec) {
      if (hec)
        return finish(hec);
      view_.handshake_ok = true;
      if (const char* name = SSL_get_servername(stream_->native_handle(), TLSEXT_NAMETYPE_host_name))
        view_.sni = name;
      read();
    });
  }
  void read() {
    auto handler = [this](boost::system::error_code ec, std::size_t n) {
      view_.received.append(buf_.data(), n);
      if (ec)
        return finish(ec);
      read();
    };
    if (opts_.tls)
      stream_->async_read_some(asio::buffer(buf_), handler);
    else
      stream_->next_layer().async_read_some(asio::buffer(buf_), handler);
  }
  void finish(boost::system::error_code ec) {
    if (finished_)
      return;
    finished_ = true;
    view_.end = ec;
    promise_.set_value(view_);
  }

  options opts_;
  test_identity identity_;
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{io_.get_executor()};
  ssl::context tls_ctx_;
  tcp::acceptor acceptor_;
  std::unique_ptr<ssl::stream<tcp::socket>> stream_;
  std::array<char, 4096> buf_{};
  server_view view_;
  bool finished_ = false;
  std::promise<server_view> promise_;
  std::shared_future<server_view> done_ = promise_.get_future().share();
  std::thread thread_;
};

// The client side's events, waitable.
struct client_events {
  std::promise<void> connected;
  std::promise<net::failure> failed;
  std::once_flag connected_once, failed_once;
  net::connection_callbacks callbacks() {
    net::connection_callbacks cbs;
    cbs.on_connected = [this] { std::call_once(connected_once, [&] { connected.set_value(); }); };
    cbs.on_data = [](std::string) {};
    cbs.on_failure = [this](net::failure f) { std::call_once(failed_once, [&] { failed.set_value(std::move(f)); }); };
    return cbs;
  }
};

net::endpoint_options to_server(const test_server& s, std::string host = "127.0.0.1", bool tls = true) {
  net::endpoint_options eo;
  eo.host = std::move(host);
  eo.port = s.port();
  eo.implicit_tls = tls;
  eo.verify_certificate = false;  // a self-signed test identity; verification is covered by
                                  // the integration tests against the fixture CA
  eo.connect_timeout_ms = 5000;
  return eo;
}

}  // namespace

TEST_CASE("a server offering at most TLS 1.1 is refused", "[unit][net][tls]") {
  test_server server{{.tls = true, .max_version = TLS1_1_VERSION}};
  client_events ev;  // outlives the runtime whose thread calls into it
  net::io_runtime rt;
  auto conn = net::connection::create(rt, to_server(server), ev.callbacks());
  conn->start();
  auto f = ev.failed.get_future();
  REQUIRE(f.wait_for(5s) == std::future_status::ready);
  auto failure = f.get();
  CHECK(failure.kind == net::failure_kind::tls_handshake_failed);
  CHECK(server.done().wait_for(5s) == std::future_status::ready);
  CHECK_FALSE(server.done().get().handshake_ok);
  conn->close();
}

TEST_CASE("TLS 1.2 is accepted", "[unit][net][tls]") {
  test_server server{{.tls = true, .max_version = TLS1_2_VERSION}};
  client_events ev;  // outlives the runtime whose thread calls into it
  net::io_runtime rt;
  auto conn = net::connection::create(rt, to_server(server), ev.callbacks());
  conn->start();
  REQUIRE(ev.connected.get_future().wait_for(5s) == std::future_status::ready);
  conn->close(true);
  REQUIRE(server.done().wait_for(5s) == std::future_status::ready);
  CHECK(server.done().get().handshake_ok);
  CHECK(server.done().get().end == asio::error::eof);  // close_notify
}

TEST_CASE("SNI is sent for DNS names, never for IP literals", "[unit][net][tls]") {
  for (std::string host : {"localhost", "127.0.0.1"}) {
    test_server server{{}};
    client_events ev;
    net::io_runtime rt;
    auto conn = net::connection::create(rt, to_server(server, host), ev.callbacks());
    conn->start();
    REQUIRE(ev.connected.get_future().wait_for(5s) == std::future_status::ready);
    conn->close(true);
    REQUIRE(server.done().wait_for(5s) == std::future_status::ready);
    CHECK(server.done().get().sni == (host == "localhost" ? "localhost" : ""));
    // Closed right after the handshake, while TLS 1.3 session tickets arrive: still a
    // close_notify (eof), not a vanished peer (stream_truncated) after close_timeout_ms.
    CHECK(server.done().get().end == asio::error::eof);
  }
}

TEST_CASE("graceful close flushes the last write, then close_notify (TLS) or FIN (plain)",
          "[unit][net]") {
  const bool tls = GENERATE(true, false);
  test_server server{{.tls = tls}};
  client_events ev;  // outlives the runtime whose thread calls into it
  net::io_runtime rt;
  auto conn = net::connection::create(rt, to_server(server, "127.0.0.1", tls), ev.callbacks());
  conn->start();
  REQUIRE(ev.connected.get_future().wait_for(5s) == std::future_status::ready);
  // A large last write: close() must not cut it off.
  const std::string last = "a9 LOGOUT " + std::string(200000, 'z') + "\r\n";
  conn->write("a8 NOOP\r\n");
  conn->write(last);
  conn->close(true);
  REQUIRE(server.done().wait_for(5s) == std::future_status::ready);
  auto view = server.done().get();
  CHECK(view.received == "a8 NOOP\r\n" + last);
  // asio reports a peer's close_notify (TLS) and a FIN (plain) as eof; a TLS peer that just
  // vanished would be ssl::error::stream_truncated.
  CHECK(view.end == asio::error::eof);
  // No callback after close().
  CHECK(ev.failed.get_future().wait_for(0s) == std::future_status::timeout);
}

TEST_CASE("hard close after connect: the server sees the connection end", "[unit][net]") {
  test_server server{{.tls = false}};
  client_events ev;  // outlives the runtime whose thread calls into it
  net::io_runtime rt;
  auto conn = net::connection::create(rt, to_server(server, "127.0.0.1", false), ev.callbacks());
  conn->start();
  REQUIRE(ev.connected.get_future().wait_for(5s) == std::future_status::ready);
  conn->close(false);
  REQUIRE(server.done().wait_for(5s) == std::future_status::ready);
  CHECK(server.done().get().end);
}

TEST_CASE("idle timeout: a silent server fails the connection, set_idle_timeout pauses and re-arms",
          "[unit][net]") {
  test_server server{{.tls = false, .silent = true}};
  client_events ev;  // outlives the runtime whose thread calls into it
  net::io_runtime rt;
  auto eo = to_server(server, "127.0.0.1", false);
  auto failed = ev.failed.get_future();
  SECTION("fires") {
    eo.idle_timeout_ms = 150;
    const auto t0 = std::chrono::steady_clock::now();
    auto conn = net::connection::create(rt, eo, ev.callbacks());
    conn->start();
    REQUIRE(failed.wait_for(5s) == std::future_status::ready);
    CHECK(std::chrono::steady_clock::now() - t0 >= 150ms);
    auto f = failed.get();
    CHECK(f.kind == net::failure_kind::timeout);
    CHECK(f.detail.find("150 ms") != std::string::npos);
  }
  SECTION("paused, then re-armed") {
    eo.idle_timeout_ms = 100;
    auto conn = net::connection::create(rt, eo, ev.callbacks());
    conn->start();
    REQUIRE(ev.connected.get_future().wait_for(5s) == std::future_status::ready);
    conn->set_idle_timeout(0);
    // Paused: nothing fires within several idle periods (a bounded negative check).
    CHECK(failed.wait_for(400ms) == std::future_status::timeout);
    conn->set_idle_timeout(100);
    REQUIRE(failed.wait_for(5s) == std::future_status::ready);
    CHECK(failed.get().kind == net::failure_kind::timeout);
  }
}

TEST_CASE("quiet: reported once per quiet spell, again only after traffic", "[unit][net]") {
  test_server server{{.tls = false}};  // reads what the client writes, never answers
  client_events ev;  // outlives the runtime whose thread calls into it
  net::io_runtime rt;
  auto eo = to_server(server, "127.0.0.1", false);
  eo.quiet_ms = 100;
  std::atomic<int> quiet{0};
  auto cbs = ev.callbacks();
  cbs.on_quiet = [&] { ++quiet; };
  auto conn = net::connection::create(rt, eo, std::move(cbs));
  conn->start();
  REQUIRE(ev.connected.get_future().wait_for(5s) == std::future_status::ready);
  // Silent for several quiet periods: one report (a bounded wait, generous for a busy host).
  for (int i = 0; i < 100 && quiet.load() == 0; ++i) std::this_thread::sleep_for(20ms);
  REQUIRE(quiet.load() == 1);
  std::this_thread::sleep_for(400ms);
  CHECK(quiet.load() == 1);
  // Traffic (a write counts: a new command starts a new wait) re-arms it.
  conn->write("a1 NOOP\r\n");
  for (int i = 0; i < 100 && quiet.load() == 1; ++i) std::this_thread::sleep_for(20ms);
  CHECK(quiet.load() == 2);
  conn->close(false);
  std::this_thread::sleep_for(250ms);
  CHECK(quiet.load() == 2);  // nothing after close
}

TEST_CASE("failure kinds have stable names", "[unit][net]") {
  CHECK(net::to_string(net::failure_kind::dns_failure) == "dns_failure");
  CHECK(net::to_string(net::failure_kind::connection_refused) == "connection_refused");
  CHECK(net::to_string(net::failure_kind::timeout) == "timeout");
  CHECK(net::to_string(net::failure_kind::tls_handshake_failed) == "tls_handshake_failed");
  CHECK(net::to_string(net::failure_kind::certificate_invalid) == "certificate_invalid");
  CHECK(net::to_string(net::failure_kind::closed_by_peer) == "closed_by_peer");
  CHECK(net::to_string(net::failure_kind::io_error) == "io_error");
}
