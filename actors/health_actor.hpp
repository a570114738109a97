#pragma once
// The health actor: after every scan pass it applies the mailbox state machine
// (core/mailbox_health.hpp: ok / error / credentials_changed, one notification per failure
// episode, "recovered"), stores the new state and delivers notifications (webhook). Runs
// detached: a webhook may block for its retries, and must never stall the writer.
#include "actors/messages.hpp"
#include "core/config.hpp"
#include "core/event_log.hpp"

#include <memory>

namespace mscan::actors {

// Accepts: (state_atom, scan_result) -> applies the pass to the mailbox's stored state.
//          (flush_atom) -> replies once everything before it is done (shutdown barrier).
// `log` (may be null) gets the outbox's send outcomes.
caf::behavior health_actor(caf::event_based_actor* self, std::shared_ptr<storage::store> db,
                           std::shared_ptr<const core::config> cfg, std::shared_ptr<core::event_log> log);

} // namespace mscan::actors
