#include "protocols/net/http_client.hpp"

#include "protocols/net/tls_context.hpp"

#include <utility>  // before Asio (Boost 1.74 + g++ 12, see TOOLCHAIN.md)

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <fmt/format.h>

#include <charconv>

namespace mscan::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

expected<http_url, std::string> parse_http_url(std::string_view url) {
  http_url u;
  if (url.starts_with("https://")) {
    u.tls = true;
    url.remove_prefix(8);
  } else if (url.starts_with("http://")) {
    url.remove_prefix(7);
  } else {
    return unexpected{std::string("URL must start with http:// or https://")};
  }
  const auto slash = url.find('/');
  auto authority = url.substr(0, slash);
  u.target = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
  if (authority.find('@') != std::string_view::npos)
    return unexpected{std::string("URL must not carry user:password")};
  if (authority.starts_with("[")) {  // [::1]:8080
    const auto close = authority.find(']');
    if (close == std::string_view::npos)
      return unexpected{std::string("URL: unterminated IPv6 address")};
    u.host = std::string(authority.substr(1, close - 1));
    authority.remove_prefix(close + 1);
    if (authority.starts_with(":"))
      u.port = std::string(authority.substr(1));
  } else {
    const auto colon = authority.rfind(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos)
      u.port = std::string(authority.substr(colon + 1));
  }
  if (u.port.empty())
    u.port = u.tls ? "443" : "80";
  unsigned port = 0;
  auto [p, ec] = std::from_chars(u.port.data(), u.port.data() + u.port.size(), port);
  if (ec != std::errc{} || p != u.port.data() + u.port.size() || port == 0 || port > 65535)
    return unexpected{std::string("URL has an invalid port")};
  if (u.host.empty())
    return unexpected{std::string("URL has no host")};
  return u;
}

namespace {

std::string describe(const boost::system::error_code& ec) {
  if (ec == beast::error::timeout || ec == asio::error::operation_aborted)
    return "timeout";
  if (ec.category() == asio::error::get_ssl_category())
    return fmt::format("TLS: {}", ec.message());
  return ec.message();
}

template <class Stream>
asio::awaitable<void> exchange(Stream& stream, const http_url& u, const http_request& r, http_response& res) {
  http::request<http::string_body> req{http::verb::post, u.target, 11};
  req.set(http::field::host, u.host);
  req.set(http::field::user_agent, r.user_agent);
  req.set(http::field::content_type, r.content_type);
  req.set(http::field::accept, "application/json");
  for (auto& [k, v] : r.headers)
    req.set(k, v);
  req.body() = r.body;
  req.prepare_payload();
  co_await http::async_write(stream, req, asio::use_awaitable);
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.body_limit(1 << 20);
  co_await http::async_read(stream, buf, parser, asio::use_awaitable);
  res.status = static_cast<int>(parser.get().result_int());
  res.body = std::move(parser.get().body());
  if (auto it = parser.get().find(http::field::retry_after); it != parser.get().end()) {
    unsigned n = 0;
    auto v = it->value();
    if (std::from_chars(v.data(), v.data() + v.size(), n).ec == std::errc{})
      res.retry_after_s = n;
  }
}

} // namespace

http_response http_post(const http_request& r) {
  http_response res;
  try {
    auto u = parse_http_url(r.url);
    if (!u) {
      res.error = u.error();
      res.retryable = false;
      return res;
    }
    asio::io_context ioc;
    std::shared_ptr<asio::ssl::context> ctx;
    if (u->tls) {
      ctx = make_client_tls_context(r.verify_certificate, r.ca_file.string(), res.error);
      if (!ctx) {
        res.retryable = false;
        return res;
      }
    }
    const auto deadline = r.timeout;
    asio::co_spawn(
        ioc,
        [&]() -> asio::awaitable<void> {
          try {
            tcp::resolver resolver(ioc);
            auto endpoints = co_await resolver.async_resolve(u->host, u->port, asio::use_awaitable);
            if (!u->tls) {
              beast::tcp_stream stream(ioc);
              stream.expires_after(deadline);
              co_await stream.async_connect(endpoints, asio::use_awaitable);
              co_await exchange(stream, *u, r, res);
              boost::system::error_code ignored;
              stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
            } else {
              beast::ssl_stream<beast::tcp_stream> stream(ioc, *ctx);
              beast::get_lowest_layer(stream).expires_after(deadline);
              boost::system::error_code ignored;
              asio::ip::make_address(u->host, ignored);
              if (ignored)  // a DNS name: SNI, as virtual hosts need it
                SSL_set_tlsext_host_name(stream.native_handle(), u->host.c_str());
              if (r.verify_certificate)
                stream.set_verify_callback(asio::ssl::host_name_verification(u->host));
              co_await beast::get_lowest_layer(stream).async_connect(endpoints, asio::use_awaitable);
              co_await stream.async_handshake(asio::ssl::stream_base::client, asio::use_awaitable);
              co_await exchange(stream, *u, r, res);
            }
          } catch (const boost::system::system_error& e) {
            res.status = 0;
            res.retryable = true;
            res.error = describe(e.code());
          } catch (const std::exception& e) {
            res.status = 0;
            res.retryable = false;
            res.error = e.what();
          }
        },
        asio::detached);
    // The resolver has no deadline of its own; this bounds the whole attempt.
    ioc.run_for(deadline + std::chrono::milliseconds(200));
    if (!ioc.stopped()) {
      ioc.stop();
      res.status = 0;
      res.retryable = true;
      res.error = "timeout";
    }
  } catch (const std::exception& e) {
    res.status = 0;
    res.retryable = false;
    res.error = e.what();
  }
  return res;
}

} // namespace mscan::net
