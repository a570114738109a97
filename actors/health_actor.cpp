#include "actors/health_actor.hpp"

#include "core/notifier.hpp"

#include <chrono>

namespace mscan::actors {

using namespace mscan::atoms;

caf::behavior health_actor(caf::event_based_actor* self, std::shared_ptr<storage::store> db,
                           std::shared_ptr<const core::config> cfg) {
  core::webhook_options wo;
  wo.url = cfg->service.webhook_url;
  wo.ca_file = cfg->service.webhook_ca_file;
  wo.bearer_token = cfg->service.webhook_token;
  auto notifier = std::make_shared<core::notifier>(wo, db.get());
  return {
    [=](state_atom, const scan_result& r) {
      auto m = cfg->find_mailbox(r.user);
      if (!m)
        return;
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
