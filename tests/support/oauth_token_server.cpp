#include "tests/support/oauth_token_server.hpp"

#include <utility>  // before Asio (Boost 1.74 + g++ 12, see TOOLCHAIN.md)

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <chrono>
#include <map>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>

namespace mscan::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

std::map<std::string, std::string> parse_form(std::string_view body) {
  std::map<std::string, std::string> out;
  auto decode = [](std::string_view s) {
    std::string r;
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '+') {
        r += ' ';
      } else if (s[i] == '%' && i + 2 < s.size()) {
        r += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
        i += 2;
      } else {
        r += s[i];
      }
    }
    return r;
  };
  std::size_t pos = 0;
  while (pos <= body.size()) {
    auto amp = body.find('&', pos);
    auto part = body.substr(pos, amp == std::string_view::npos ? std::string_view::npos : amp - pos);
    auto eq = part.find('=');
    if (eq != std::string_view::npos)
      out[decode(part.substr(0, eq))] = decode(part.substr(eq + 1));
    if (amp == std::string_view::npos)
      break;
    pos = amp + 1;
  }
  return out;
}

std::string random_hex(std::size_t n) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string s;
  while (s.size() < n)
    s += "0123456789abcdef"[rng() % 16];
  return s;
}

} // namespace

struct oauth_token_server::impl {
  oauth_server_options opts;
  asio::io_context ioc;
  asio::ssl::context tls{asio::ssl::context::tls_server};
  tcp::acceptor tls_acceptor{ioc}, plain_acceptor{ioc};
  std::uint16_t tls_port = 0, plain_port = 0;
  std::atomic<bool> stopping{false};
  std::thread tls_thread, plain_thread;
  mutable std::mutex mu;
  std::vector<std::thread> conns;
  // token -> expiry
  std::map<std::string, std::chrono::steady_clock::time_point> tokens;
  std::vector<std::string> issued;
  std::size_t token_requests = 0, introspections = 0, fail_next = 0;
  bool revoked = false;

  http::response<http::string_body> handle(const http::request<http::string_body>& req) {
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.set(http::field::content_type, "application/json");
    res.keep_alive(false);
    auto form = parse_form(req.body());
    std::lock_guard lock(mu);
    if (req.method() == http::verb::post && req.target() == "/token") {
      ++token_requests;
      auto error = [&](http::status st, std::string code) {
        res.result(st);
        res.body() = "{\"error\":\"" + code + "\",\"error_description\":\"test server: " + code + "\"}";
      };
      if (fail_next > 0) {
        --fail_next;
        error(http::status::service_unavailable, "temporarily_unavailable");
      } else if (form["client_id"] != opts.client_id || form["client_secret"] != opts.client_secret) {
        error(http::status::unauthorized, "invalid_client");
      } else if (form["grant_type"] == "refresh_token" &&
                 (revoked || opts.refresh_token.empty() || form["refresh_token"] != opts.refresh_token)) {
        error(http::status::bad_request, "invalid_grant");
      } else if (form["grant_type"] != "refresh_token" && form["grant_type"] != "client_credentials") {
        error(http::status::bad_request, "unsupported_grant_type");
      } else {
        auto token = "at-" + std::to_string(issued.size() + 1) + "-" + random_hex(24);
        tokens[token] = std::chrono::steady_clock::now() + std::chrono::seconds(opts.expires_in);
        issued.push_back(token);
        res.body() = "{\"access_token\":\"" + token + "\",\"token_type\":\"Bearer\",\"expires_in\":" +
                     std::to_string(opts.expires_in) + "}";
      }
    } else if (req.method() == http::verb::post && req.target() == "/introspect") {
      ++introspections;
      auto it = tokens.find(form["token"]);
      bool active = it != tokens.end() && std::chrono::steady_clock::now() < it->second;
      // The username is returned for inactive tokens too: dovecot then refuses the login as
      // "not active" (an authentication failure) instead of a temporary failure.
      res.body() = std::string("{\"active\":") + (active ? "true" : "false") + ",\"username\":\"" + opts.identity +
                   "\"}";
    } else {
      res.result(http::status::not_found);
      res.body() = "{}";
    }
    res.prepare_payload();
    return res;
  }

  template <class Stream>
  void serve(Stream& stream) {
    beast::flat_buffer buf;
    http::request<http::string_body> req;
    boost::system::error_code ec;
    http::read(stream, buf, req, ec);
    if (ec)
      return;
    auto res = handle(req);
    http::write(stream, res, ec);
  }

  void serve_connection(tcp::socket sock, bool use_tls) {
    try {
      if (use_tls) {
        beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(sock)), tls);
        beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(5));
        boost::system::error_code ec;
        stream.handshake(asio::ssl::stream_base::server, ec);
        if (ec)
          return;
        serve(stream);
        stream.shutdown(ec);
      } else {
        beast::tcp_stream stream(std::move(sock));
        stream.expires_after(std::chrono::seconds(5));
        serve(stream);
        boost::system::error_code ec;
        stream.socket().shutdown(tcp::socket::shutdown_both, ec);
      }
    } catch (const std::exception&) {
      // a test client that hung up: nothing to answer
    }
  }

  void accept_loop(tcp::acceptor& acc, bool use_tls) {
    while (!stopping) {
      boost::system::error_code ec;
      tcp::socket sock(ioc);
      acc.accept(sock, ec);
      if (stopping)
        return;
      if (ec)
        continue;
      std::lock_guard lock(mu);
      conns.emplace_back([this, s = std::move(sock), use_tls]() mutable { serve_connection(std::move(s), use_tls); });
    }
  }

  static std::uint16_t open(tcp::acceptor& acc) {
    tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
    acc.open(ep.protocol());
    acc.set_option(tcp::acceptor::reuse_address(true));
    acc.bind(ep);
    acc.listen();
    return acc.local_endpoint().port();
  }

  void wake(std::uint16_t port) {
    boost::system::error_code ec;
    tcp::socket s(ioc);
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
  }
};

oauth_token_server::oauth_token_server(oauth_server_options o) : impl_(std::make_unique<impl>()) {
  impl_->opts = std::move(o);
  impl_->tls_port = impl::open(impl_->tls_acceptor);
  impl_->plain_port = impl::open(impl_->plain_acceptor);
  impl_->tls_thread = std::thread([this] { impl_->accept_loop(impl_->tls_acceptor, true); });
  impl_->plain_thread = std::thread([this] { impl_->accept_loop(impl_->plain_acceptor, false); });
}

oauth_token_server::~oauth_token_server() {
  impl_->stopping = true;
  impl_->wake(impl_->tls_port);
  impl_->wake(impl_->plain_port);
  impl_->tls_thread.join();
  impl_->plain_thread.join();
  std::vector<std::thread> conns;
  {
    std::lock_guard lock(impl_->mu);
    conns.swap(impl_->conns);
  }
  for (auto& t : conns)
    t.join();
}

void oauth_token_server::use_certificate(const std::filesystem::path& cert, const std::filesystem::path& key) {
  std::lock_guard lock(impl_->mu);
  impl_->tls.use_certificate_chain_file(cert.string());
  impl_->tls.use_private_key_file(key.string(), asio::ssl::context::pem);
}

std::string oauth_token_server::token_url() const {
  return "https://127.0.0.1:" + std::to_string(impl_->tls_port) + "/token";
}
std::string oauth_token_server::introspection_url() const {
  return "http://127.0.0.1:" + std::to_string(impl_->plain_port) + "/introspect";
}
std::size_t oauth_token_server::token_requests() const {
  std::lock_guard lock(impl_->mu);
  return impl_->token_requests;
}
std::size_t oauth_token_server::tokens_issued() const {
  std::lock_guard lock(impl_->mu);
  return impl_->issued.size();
}
std::size_t oauth_token_server::introspections() const {
  std::lock_guard lock(impl_->mu);
  return impl_->introspections;
}
std::vector<std::string> oauth_token_server::issued_tokens() const {
  std::lock_guard lock(impl_->mu);
  return impl_->issued;
}
void oauth_token_server::revoke_refresh_token() {
  std::lock_guard lock(impl_->mu);
  impl_->revoked = true;
}
void oauth_token_server::set_refresh_token(std::string token) {
  std::lock_guard lock(impl_->mu);
  impl_->opts.refresh_token = std::move(token);
  impl_->revoked = false;
}
void oauth_token_server::expire_access_tokens() {
  std::lock_guard lock(impl_->mu);
  for (auto& [t, exp] : impl_->tokens)
    exp = std::chrono::steady_clock::now();
}
void oauth_token_server::fail_next(std::size_t n) {
  std::lock_guard lock(impl_->mu);
  impl_->fail_next = n;
}

} // namespace mscan::test
