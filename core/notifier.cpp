#include "core/notifier.hpp"

#include "storage/store.hpp"

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
#include <ctime>
#include <thread>

namespace mscan::core {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

storage::notification_record make_notification(const storage::mailbox_state& s, notify_kind kind,
                                               std::int64_t at) {
  storage::notification_record n;
  n.at = at;
  n.user = s.user;
  n.kind = std::string(to_string(kind));
  n.consecutive_failures = s.consecutive_failures;
  if (kind != notify_kind::recovered) {
    n.reason = s.last_error_reason;
    n.detail = s.last_error_detail;
    n.next_step = next_step(s.last_error_reason, s.last_error_detail);
  }
  return n;
}

nlohmann::json notification_json(const storage::notification_record& n) {
  std::time_t tt = static_cast<std::time_t>(n.at);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return {{"event", "mailscan.notification"},
          {"kind", n.kind},
          {"user", n.user},
          {"at", buf},
          {"reason", n.reason.empty() ? nlohmann::json(nullptr) : nlohmann::json(n.reason)},
          {"detail", n.detail},
          {"next_step", n.next_step},
          {"consecutive_failures", n.consecutive_failures}};
}

namespace {

struct parsed_url {
  bool tls = false;
  std::string host, port, target;
};

expected<parsed_url, std::string> parse_url(std::string_view url) {
  parsed_url u;
  if (url.starts_with("https://")) {
    u.tls = true;
    url.remove_prefix(8);
  } else if (url.starts_with("http://")) {
    url.remove_prefix(7);
  } else {
    return unexpected{std::string("webhook URL must start with http:// or https://")};
  }
  const auto slash = url.find('/');
  auto authority = url.substr(0, slash);
  u.target = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
  if (authority.find('@') != std::string_view::npos)
    return unexpected{std::string("webhook URL must not carry user:password (use bearer_token)")};
  if (authority.starts_with("[")) {  // [::1]:8080
    const auto close = authority.find(']');
    if (close == std::string_view::npos)
      return unexpected{std::string("webhook URL: unterminated IPv6 address")};
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
    return unexpected{std::string("webhook URL has an invalid port")};
  if (u.host.empty())
    return unexpected{std::string("webhook URL has no host")};
  return u;
}

struct attempt {
  bool ok = false, retry = true;
  int status = 0;
  std::string error = "no answer";
};

std::string describe(const boost::system::error_code& ec) {
  if (ec == beast::error::timeout || ec == asio::error::operation_aborted)
    return "timeout";
  if (ec.category() == asio::error::get_ssl_category())
    return fmt::format("TLS: {}", ec.message());
  return ec.message();
}

template <class Stream>
asio::awaitable<void> exchange(Stream& stream, const parsed_url& u, const webhook_options& o,
                               const std::string& body, attempt& res) {
  http::request<http::string_body> req{http::verb::post, u.target, 11};
  req.set(http::field::host, u.host);
  req.set(http::field::user_agent, "mailscan-notifier");
  req.set(http::field::content_type, "application/json");
  if (!o.bearer_token.empty())
    req.set(http::field::authorization, "Bearer " + o.bearer_token);
  req.body() = body;
  req.prepare_payload();
  co_await http::async_write(stream, req, asio::use_awaitable);
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.body_limit(1 << 20);
  co_await http::async_read(stream, buf, parser, asio::use_awaitable);
  res.status = static_cast<int>(parser.get().result_int());
  res.ok = res.status >= 200 && res.status < 300;
  res.retry = res.status == 429 || res.status >= 500;
  res.error = res.ok ? "" : fmt::format("HTTP {}", res.status);
}

attempt one_attempt(const webhook_options& o, const parsed_url& u, const std::string& body) {
  attempt res;
  asio::io_context ioc;
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  if (u.tls) {
    boost::system::error_code ec;
    ctx.set_default_verify_paths(ec);
    if (!o.ca_file.empty()) {
      ctx.load_verify_file(o.ca_file.string(), ec);
      if (ec) {
        res.retry = false;
        res.error = fmt::format("cannot read ca_file {}: {}", o.ca_file.string(), ec.message());
        return res;
      }
    }
    ctx.set_verify_mode(o.verify_certificate ? asio::ssl::verify_peer : asio::ssl::verify_none);
  }
  const auto deadline = o.timeout;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        try {
          tcp::resolver resolver(ioc);
          auto endpoints = co_await resolver.async_resolve(u.host, u.port, asio::use_awaitable);
          if (!u.tls) {
            beast::tcp_stream stream(ioc);
            stream.expires_after(deadline);
            co_await stream.async_connect(endpoints, asio::use_awaitable);
            co_await exchange(stream, u, o, body, res);
            boost::system::error_code ignored;
            stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
          } else {
            beast::ssl_stream<beast::tcp_stream> stream(ioc, ctx);
            beast::get_lowest_layer(stream).expires_after(deadline);
            boost::system::error_code ignored;
            asio::ip::make_address(u.host, ignored);
            if (ignored)  // a DNS name: SNI, as virtual hosts need it
              SSL_set_tlsext_host_name(stream.native_handle(), u.host.c_str());
            if (o.verify_certificate)
              stream.set_verify_callback(asio::ssl::host_name_verification(u.host));
            co_await beast::get_lowest_layer(stream).async_connect(endpoints, asio::use_awaitable);
            co_await stream.async_handshake(asio::ssl::stream_base::client, asio::use_awaitable);
            co_await exchange(stream, u, o, body, res);
          }
        } catch (const boost::system::system_error& e) {
          res.ok = false;
          res.retry = true;
          res.error = describe(e.code());
        } catch (const std::exception& e) {
          res.ok = false;
          res.retry = false;
          res.error = e.what();
        }
      },
      asio::detached);
  // The resolver has no deadline of its own; this bounds the whole attempt.
  ioc.run_for(deadline + std::chrono::milliseconds(200));
  if (!ioc.stopped()) {
    ioc.stop();
    res.ok = false;
    res.retry = true;
    res.error = "timeout";
  }
  return res;
}

} // namespace

delivery_result post_webhook(const webhook_options& o, const std::string& body) {
  delivery_result out;
  try {
    auto u = parse_url(o.url);
    if (!u) {
      out.error = u.error();
      return out;
    }
    const unsigned attempts = o.attempts == 0 ? 1 : o.attempts;
    for (unsigned i = 1; i <= attempts; ++i) {
      if (i > 1)
        std::this_thread::sleep_for(o.backoff * (i - 1));  // pacing a retry, not synchronisation
      auto r = one_attempt(o, *u, body);
      out.attempts = i;
      out.http_status = r.status;
      out.delivered = r.ok;
      out.error = r.error;
      if (r.ok || !r.retry)
        break;
    }
    if (!out.delivered)
      out.error = fmt::format("{} (host {}, {} attempt(s))", out.error, u->host, out.attempts);
  } catch (const std::exception& e) {
    out.delivered = false;
    out.error = e.what();
  }
  return out;
}

notifier::notifier(webhook_options webhook, storage::store* db) : webhook_(std::move(webhook)), db_(db) {}

delivery_result notifier::notify(storage::notification_record n) {
  delivery_result r;
  try {
    if (!webhook_.url.empty()) {
      r = post_webhook(webhook_, notification_json(n).dump());
      n.delivery = r.delivered ? "webhook: delivered" : "webhook: failed: " + r.error;
    }
    for (auto& c : channels_)
      if (auto d = c(n); !d.empty())
        n.delivery += (n.delivery.empty() ? "" : "; ") + d;
    if (db_)
      if (auto put = db_->put_notification(n); !put && r.error.empty())
        r.error = "not recorded: " + put.error().message;
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

expected<health_decision, storage::error> record_pass(storage::store& db, notifier* n,
                                                       const mailbox_config& mailbox, const pass_outcome& pass,
                                                       std::uint32_t notify_after) {
  try {
    auto prev = db.mailbox_state_of(mailbox.user).value_or(storage::mailbox_state{});
    prev.user = mailbox.user;
    auto d = next_state(prev, pass, mailbox, notify_after);
    if (auto put = db.put_mailbox_state(d.state); !put)
      return unexpected{put.error()};
    if (d.notify != notify_kind::none) {
      auto rec = make_notification(d.state, d.notify, pass.finished_at);
      if (n)
        n->notify(std::move(rec));
      else
        (void)db.put_notification(rec);
    }
    return d;
  } catch (const std::exception& e) {
    return unexpected{storage::error{storage::error::code::io_error, e.what()}};
  }
}

} // namespace mscan::core
