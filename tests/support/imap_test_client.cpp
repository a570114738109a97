#include "tests/support/imap_test_client.hpp"

#include <utility>  // before Asio: Boost 1.74 + g++ 12 (TOOLCHAIN.md)

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <optional>

#include <openssl/ssl.h>

namespace mscan::test {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

struct imap_test_client::impl {
  asio::io_context io;
  asio::ssl::context ctx{asio::ssl::context::tls_client};
  asio::ssl::stream<tcp::socket> stream{io, ctx};
  std::chrono::milliseconds timeout;
  bool tls = false;
  std::string buf;  // bytes read but not consumed
  std::string greeting;
  std::string last_status;
  unsigned next_tag = 1;

  explicit impl(std::chrono::milliseconds t) : timeout(t) {}

  // Runs the io_context until the started operation completes or the deadline passes.
  template <class Start>
  error_code run(Start start) {
    std::optional<error_code> result;
    start([&](error_code ec, std::size_t = 0) { result = ec; });
    io.restart();
    io.run_for(timeout);
    if (!result) {
      error_code ignored;
      stream.next_layer().cancel(ignored);
      stream.next_layer().close(ignored);
      io.restart();
      io.run();
      return asio::error::timed_out;
    }
    return *result;
  }

  error_code read_until_crlf() {
    return run([&](auto handler) {
      if (tls)
        asio::async_read_until(stream, asio::dynamic_buffer(buf), "\r\n", handler);
      else
        asio::async_read_until(stream.next_layer(), asio::dynamic_buffer(buf), "\r\n", handler);
    });
  }

  error_code read_at_least(std::size_t size) {
    if (buf.size() >= size) return {};
    std::size_t missing = size - buf.size();
    return run([&](auto handler) {
      if (tls)
        asio::async_read(stream, asio::dynamic_buffer(buf), asio::transfer_exactly(missing),
                         handler);
      else
        asio::async_read(stream.next_layer(), asio::dynamic_buffer(buf),
                         asio::transfer_exactly(missing), handler);
    });
  }

  error_code write(const std::string& data) {
    return run([&](auto handler) {
      if (tls)
        asio::async_write(stream, asio::buffer(data), handler);
      else
        asio::async_write(stream.next_layer(), asio::buffer(data), handler);
    });
  }

  // One response: a line, plus any literals it announces ("{n}" at the end), kept inline.
  expected<std::string, std::string> read_response() {
    std::string out;
    for (;;) {
      auto crlf = buf.find("\r\n");
      if (crlf == std::string::npos) {
        if (auto ec = read_until_crlf()) return unexpected{"read failed: " + ec.message()};
        continue;
      }
      std::string line = buf.substr(0, crlf);
      buf.erase(0, crlf + 2);
      out += line;
      // A literal: "...{123}" (or "{123+}"), then 123 raw bytes, then the line continues.
      if (line.empty() || line.back() != '}') return out;
      auto open = line.rfind('{');
      if (open == std::string::npos) return out;
      std::string digits = line.substr(open + 1, line.size() - open - 2);
      if (!digits.empty() && digits.back() == '+') digits.pop_back();
      if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos ||
          digits.size() > 9)
        return out;
      std::size_t n = std::stoul(digits);
      if (auto ec = read_at_least(n)) return unexpected{"literal read failed: " + ec.message()};
      out += "\r\n";
      out += buf.substr(0, n);
      buf.erase(0, n);
    }
  }

  expected<void, std::string> connect(std::uint16_t port) {
    tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
    auto ec = run([&](auto handler) { stream.next_layer().async_connect(ep, handler); });
    if (ec) return unexpected{"connect 127.0.0.1:" + std::to_string(port) + ": " + ec.message()};
    return {};
  }

  expected<void, std::string> handshake(const tls_options& t) {
    error_code ec;
    ctx.load_verify_file(t.ca_file, ec);
    if (ec) return unexpected{"load_verify_file: " + ec.message()};
    stream.set_verify_mode(asio::ssl::verify_peer, ec);
    if (ec) return unexpected{"set_verify_mode: " + ec.message()};
    stream.set_verify_callback(asio::ssl::host_name_verification(t.host_name), ec);
    if (ec) return unexpected{"set_verify_callback: " + ec.message()};
    error_code addr_ec;
    asio::ip::make_address(t.host_name, addr_ec);
    if (addr_ec)  // SNI only for DNS names (RFC 6066)
      SSL_set_tlsext_host_name(stream.native_handle(), t.host_name.c_str());
    ec = run([&](auto handler) {
      stream.async_handshake(asio::ssl::stream_base::client,
                             [handler](error_code e) mutable { handler(e, 0); });
    });
    if (ec) {
      long verify = SSL_get_verify_result(stream.native_handle());
      std::string detail = ec.message();
      if (verify != X509_V_OK) detail += " (" + std::string(X509_verify_cert_error_string(verify)) + ")";
      return unexpected{"TLS handshake failed: " + detail};
    }
    tls = true;
    return {};
  }

  expected<void, std::string> read_greeting() {
    auto g = read_response();
    if (!g) return unexpected{g.error()};
    greeting = *g;
    return {};
  }
};

imap_test_client::imap_test_client(std::unique_ptr<impl> i) : impl_(std::move(i)) {}
imap_test_client::~imap_test_client() = default;

expected<std::unique_ptr<imap_test_client>, imap_test_client::error>
imap_test_client::connect_plain(std::uint16_t port, std::chrono::milliseconds timeout) {
  try {
    auto i = std::make_unique<impl>(timeout);
    if (auto r = i->connect(port); !r) return unexpected{r.error()};
    if (auto r = i->read_greeting(); !r) return unexpected{r.error()};
    return std::unique_ptr<imap_test_client>(new imap_test_client(std::move(i)));
  } catch (const std::exception& e) {
    return unexpected{std::string("connect_plain: ") + e.what()};
  }
}

expected<std::unique_ptr<imap_test_client>, imap_test_client::error>
imap_test_client::connect_tls(std::uint16_t port, const tls_options& tls,
                              std::chrono::milliseconds timeout) {
  try {
    auto i = std::make_unique<impl>(timeout);
    if (auto r = i->connect(port); !r) return unexpected{r.error()};
    if (auto r = i->handshake(tls); !r) return unexpected{r.error()};
    if (auto r = i->read_greeting(); !r) return unexpected{r.error()};
    return std::unique_ptr<imap_test_client>(new imap_test_client(std::move(i)));
  } catch (const std::exception& e) {
    return unexpected{std::string("connect_tls: ") + e.what()};
  }
}

const std::string& imap_test_client::greeting() const { return impl_->greeting; }
const std::string& imap_test_client::last_status() const { return impl_->last_status; }
bool imap_test_client::is_tls() const { return impl_->tls; }

expected<imap_test_client::lines, imap_test_client::error> imap_test_client::command(
    std::string_view cmd) {
  try {
    std::string tag = "a" + std::to_string(impl_->next_tag++);
    std::string line = tag + " " + std::string(cmd) + "\r\n";
    if (auto ec = impl_->write(line)) return unexpected{"write failed: " + ec.message()};
    lines out;
    for (;;) {
      auto r = impl_->read_response();
      if (!r) return unexpected{r.error()};
      out.push_back(std::move(*r));
      if (out.back().starts_with(tag + " ")) {
        impl_->last_status = out.back();
        return out;
      }
    }
  } catch (const std::exception& e) {
    return unexpected{std::string("command: ") + e.what()};
  }
}

expected<std::string, imap_test_client::error> imap_test_client::read_response() {
  try {
    return impl_->read_response();
  } catch (const std::exception& e) {
    return unexpected{std::string("read_response: ") + e.what()};
  }
}

expected<void, imap_test_client::error> imap_test_client::starttls(const tls_options& tls) {
  try {
    auto r = command("STARTTLS");
    if (!r) return unexpected{r.error()};
    if (last_status().find(" OK") == std::string::npos)
      return unexpected{"STARTTLS refused: " + last_status()};
    if (!impl_->buf.empty()) return unexpected{std::string("data after STARTTLS OK (injection?)")};
    return impl_->handshake(tls);
  } catch (const std::exception& e) {
    return unexpected{std::string("starttls: ") + e.what()};
  }
}

long long status_item(const imap_test_client::lines& response, std::string_view item) {
  std::string key = " " + std::string(item) + " ";
  std::string key_open = "(" + std::string(item) + " ";
  for (const auto& line : response) {
    if (!line.starts_with("* STATUS ")) continue;
    auto pos = line.find(key_open);
    std::size_t len = key_open.size();
    if (pos == std::string::npos) {
      pos = line.find(key);
      len = key.size();
    }
    if (pos == std::string::npos) continue;
    return std::atoll(line.c_str() + pos + len);
  }
  return -1;
}

long long exists_count(const imap_test_client::lines& response) {
  for (const auto& line : response) {
    if (!line.starts_with("* ")) continue;
    auto sp = line.find(' ', 2);
    if (sp != std::string::npos && line.compare(sp, 7, " EXISTS") == 0)
      return std::atoll(line.c_str() + 2);
  }
  return -1;
}

}  // namespace mscan::test
