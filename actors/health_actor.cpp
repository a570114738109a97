#include "actors/health_actor.hpp"

#include "core/notifier.hpp"
#include "core/outbox.hpp"

#include <chrono>
#include <string_view>
#include <unordered_map>

namespace mscan::actors {

using namespace mscan::atoms;

caf::behavior health_actor(caf::event_based_actor* self, std::shared_ptr<storage::store> db,
                           std::shared_ptr<const core::config> cfg, std::shared_ptr<core::event_log> log) {
  core::webhook_options wo;
  wo.url = cfg->service.webhook_url;
  wo.ca_file = cfg->service.webhook_ca_file;
  wo.bearer_token = cfg->service.webhook_token;
  auto notifier = std::make_shared<core::notifier>(wo, db.get());
  // config::find_mailbox walks every mailbox: once per result that made a pass O(n^2).
  auto by_user = std::make_shared<std::unordered_map<std::string_view, const core::mailbox_config*>>();
  by_user->reserve(cfg->mailboxes.size());
  for (auto& m : cfg->mailboxes)
    by_user->emplace(m.user, &m);
  if (!cfg->service.notify_email.empty() && cfg->smtp.enabled())
    notifier->add_channel(
      [db, cfg](const storage::notification_record& n) { return core::queue_notification_mail(*db, *cfg, n); });
  // The outbox (ticket comments, notification mail) is sent from here: this actor is
  // detached, so an SMTP session may block it. At most every 30 s during a run, and once
  // more at the end (flush).
  auto last_send = std::make_shared<std::int64_t>(0);
  auto send_outbox = [db, cfg, last_send, log](std::int64_t now, bool force) {
    if (!cfg->smtp.enabled() || (!force && now - *last_send < 30))
      return;
    *last_send = now;
    // Outcomes are in the outbox (`mailscan outbox`) and the daily log.
    (void)core::send_due(*db, cfg->smtp, now, nullptr, 100, log.get());
  };
  return {
    [=](state_atom, const scan_result& r) {
      auto it = by_user->find(r.user);
      if (it == by_user->end())
        return;
      auto m = it->second;
      auto now = std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
      auto res = core::record_pass(*db, notifier.get(), *m, core::pass_outcome{r.ok, r.reason, r.detail, now, r.slow, r.more},
                                   cfg->engine.notify_after_failures);
      (void)res;  // a failed state write shows up as the next batch's write error
      send_outbox(now, false);
    },
    [=](flush_atom) {
      send_outbox(std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::system_clock::now().time_since_epoch()).count(), true);
      return true;
    },
  };
}

} // namespace mscan::actors
