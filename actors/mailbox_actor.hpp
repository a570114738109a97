#pragma once
// One mailbox: scans when the scheduler grants it a connection lease, feeds fetched batches
// into the pipeline within its credit, and reports one scan_result per pass.
//
//            (lease_atom)                 scan_complete / scan_failed
//   idle ----------------> loading ----> connected/scanning ---------------> draining
//    ^                     (checkpoints    (bytes <-> scan_session;            (waits for the
//    |                      from writer)    batches out within credit)          last durable ack)
//    +--------------------------------- (scan_done_atom, scan_result) to scheduler <--+
//
// The connection is closed as soon as the server part is over; the lease goes back with the
// scan_done report once every batch of the pass is durable (or refused).
#include "actors/messages.hpp"
#include "core/config.hpp"
#include "core/event_log.hpp"
#include "protocols/net/tls_transport.hpp"

namespace mscan::actors {

class inflight_budget;
class engine_metrics;

struct mailbox_settings {
  // Shared, never copied per mailbox (memory per idle mailbox): the scheduler's entry holds
  // the same mailbox config, and every mailbox the same engine settings.
  std::shared_ptr<const core::mailbox_config> cfg;
  std::shared_ptr<const core::engine_config> engine;
  net::io_runtime* io = nullptr;
  caf::actor matcher;
  caf::actor writer;
  std::shared_ptr<core::event_log> log;
  bool probe = false;  // diagnostics only: open the folders, fetch and write nothing
  caf::actor health;   // applies each pass to the stored mailbox state (scan mode)
  bool server_actions = false;  // rules may move/delete/mark read (core::has_server_actions)
  bool fetch_text = true;       // false = the header path (core::text_needed_by says none)
  caf::actor token_source;  // the credential's token actor (oauth_credential), else none
  // Ask the scheduler for a slow-lane slot when the server is slow (slow_response_ms); off
  // where the "scheduler" is a cluster node, which has no lanes.
  bool report_slow = true;
  // Tell the scheduler when the connection is closed while batches still wait for the
  // writer (conn_closed_atom: the slot is free); off where the "scheduler" is a cluster node.
  bool release_on_close = true;
  // The engine-wide in-flight byte budget the scheduler's mailboxes share; null = none.
  std::shared_ptr<inflight_budget> budget;
  std::shared_ptr<engine_metrics> metrics;  // optional: counts kept sessions lost
};

// Accepts: (lease_atom) from the scheduler: run one pass, then reply-by-send
//          (scan_done_atom, scan_result) to the scheduler (the lease returns with it).
//          (stop_atom): abandon the pass (nothing durable is lost; the checkpoint stays).
// Spawned and monitored by the scheduler.
caf::actor spawn_mailbox_actor(caf::event_based_actor* scheduler, mailbox_settings s);

} // namespace mscan::actors
