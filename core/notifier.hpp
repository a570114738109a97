#pragma once
// Operator notifications: the record (what core/mailbox_health.hpp decided), its JSON, and the
// webhook channel (HTTP POST of that JSON, http or https with certificate verification,
// bounded retries with backoff, a timeout per attempt). Blocking: call it from a detached
// actor or a worker thread, never from a cooperative actor.
//
// How to wire it into `mailscan run` (the engine owns the store):
//   - once: notifier n{webhook_options{.url = cfg.service.webhook_url,
//                     .ca_file = cfg.service.webhook_ca_file,
//                     .bearer_token = cfg.service.webhook_token}, &store};
//   - before a mailbox's pass: if (!may_login(store.mailbox_state_of(user).value_or({}), mailbox))
//     skip the LOGIN (the mailbox stays credentials_changed; report it, do not count a failure);
//   - after each pass (scan, not probe), in a detached actor (delivery may block for
//     attempts x timeout): record_pass(store, &n, mailbox, {ok, reason, detail, now},
//     cfg.engine.notify_after_failures) — it reads the previous state, applies next_state(),
//     stores the new state and sends/records the notification, if any;
//   - `status`, the status service and the dashboard then read states and notifications.
#include "common/expected.hpp"
#include "core/mailbox_health.hpp"
#include "storage/types.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace mscan::storage {
class store;
}

namespace mscan::core {

// The record for `kind` about the state health_decision returned (reason, detail, failures,
// and the next step for the reason).
storage::notification_record make_notification(const storage::mailbox_state& state, notify_kind kind,
                                               std::int64_t at);

// {"event": "mailscan.notification", "kind", "user", "at" (ISO 8601 UTC), "reason", "detail",
//  "next_step", "consecutive_failures"}
nlohmann::json notification_json(const storage::notification_record& n);

struct webhook_options {
  std::string url;                   // http://host[:port]/path or https://...
  std::filesystem::path ca_file{};   // extra trust anchor for https (system store otherwise)
  bool verify_certificate = true;
  std::chrono::milliseconds timeout{5000};  // per attempt: connect + TLS + request + response
  unsigned attempts = 3;                    // in all (bounded), only for retryable failures
  std::chrono::milliseconds backoff{500};   // before retry n: backoff * n
  std::string bearer_token{};               // sent as Authorization when set; never logged
};

struct delivery_result {
  bool delivered = false;
  unsigned attempts = 0;
  int http_status = 0;  // last status seen, 0 = none
  std::string error{};  // why the last attempt failed (no URL path/query, no token)
};

// POSTs body (application/json). 2xx = delivered; connection errors, timeouts, 429 and 5xx
// are retried; other statuses are final. Never throws.
delivery_result post_webhook(const webhook_options& opts, const std::string& body);

// Sends through the webhook (when a URL is configured) and records the notification with
// its delivery outcome in the store (when one is given). Never throws.
class notifier {
 public:
  notifier(webhook_options webhook, storage::store* db);
  delivery_result notify(storage::notification_record n);
  // A second channel beside the webhook (the e-mail one queues the mail in the outbox,
  // core/outbox.hpp): returns its delivery text ("email: queued <id>"), "" = not used.
  using channel = std::function<std::string(const storage::notification_record&)>;
  void add_channel(channel c) { channels_.push_back(std::move(c)); }

 private:
  webhook_options webhook_;
  storage::store* db_;
  std::vector<channel> channels_;
};

// One finished pass: previous state from the store -> next_state() -> put_mailbox_state ->
// notification (sent through `n` when given, always recorded in the store). Errors: the store
// refused the state write (nothing was notified then).
expected<health_decision, storage::error> record_pass(storage::store& db, notifier* n,
                                                       const mailbox_config& mailbox, const pass_outcome& pass,
                                                       std::uint32_t notify_after_failures);

} // namespace mscan::core
