#include "core/notifier.hpp"
#include "common/text.hpp"

#include "protocols/net/http_client.hpp"
#include "storage/store.hpp"

#include <fmt/format.h>

#include <ctime>
#include <thread>

namespace mscan::core {

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
  return {{"event", "mailscan.notification"},
          {"kind", n.kind},
          {"user", n.user},
          {"at", iso8601_utc(n.at)},
          {"reason", n.reason.empty() ? nlohmann::json(nullptr) : nlohmann::json(n.reason)},
          {"detail", n.detail},
          {"next_step", n.next_step},
          {"consecutive_failures", n.consecutive_failures}};
}

delivery_result post_webhook(const webhook_options& o, const std::string& body) {
  delivery_result out;
  try {
    auto u = net::parse_http_url(o.url);
    if (!u) {
      out.error = "webhook " + u.error();
      return out;
    }
    net::http_request req{.url = o.url, .content_type = "application/json", .body = body, .headers = {},
                          .ca_file = o.ca_file, .verify_certificate = o.verify_certificate,
                          .timeout = o.timeout, .user_agent = "mailscan-notifier"};
    if (!o.bearer_token.empty())
      req.headers.emplace_back("Authorization", "Bearer " + o.bearer_token);
    const unsigned attempts = o.attempts == 0 ? 1 : o.attempts;
    for (unsigned i = 1; i <= attempts; ++i) {
      if (i > 1)
        std::this_thread::sleep_for(o.backoff * (i - 1));  // pacing a retry, not synchronisation
      auto r = net::http_post(req);
      out.attempts = i;
      out.http_status = r.status;
      out.delivered = r.status >= 200 && r.status < 300;
      out.error = r.status == 0 ? r.error : out.delivered ? "" : fmt::format("HTTP {}", r.status);
      const bool retry = r.status == 0 ? r.retryable : r.status == 429 || r.status >= 500;
      if (out.delivered || !retry)
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
