#include "actors/health_actor.hpp"

#include "core/notifier.hpp"

#include <chrono>
#include <string_view>
#include <unordered_map>

namespace mscan::actors {

using namespace mscan::atoms;

caf::behavior health_actor(caf::event_based_actor* self, std::shared_ptr<storage::store> db,
                           std::shared_ptr<const core::config> cfg) {
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
  return {
    [=](state_atom, const scan_result& r) {
      auto it = by_user->find(r.user);
      if (it == by_user->end())
        return;
      auto m = it->second;
      auto now = std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
      auto res = core::record_pass(*db, notifier.get(), *m, core::pass_outcome{r.ok, r.reason, r.detail, now},
                                   cfg->engine.notify_after_failures);
      (void)res;  // a failed state write shows up as the next batch's write error
    },
    [=](flush_atom) { return true; },
  };
}

} // namespace mscan::actors
