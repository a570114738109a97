#pragma once
// The scheduler: owns one mailbox actor per enabled mailbox and the connection leases.
// Nothing else opens mail-server connections: a mailbox scans only while it holds a lease,
// and leases are bounded globally (max_connections) and per host (max_connections_per_host),
// optionally rate-limited per host (new logins per second). A host that answers "throttled"
// is paused for its suggested back-off — that host only. A failing mailbox backs off
// exponentially with jitter; a crashed mailbox actor is replaced. A mailbox whose server is
// slower than slow_response_ms to answer is "slow": slow mailboxes queue separately and hold
// at most max(1, max_connections_per_host / 4) of their host's connections, so a few stalling
// accounts cannot take every slot from the healthy ones (the slow lane). Waiting mailboxes queue in
// FIFO order (bounded: each mailbox waits at most once).
//
//   due --> waiting --(lease: global + host slot + login token, host not paused)--> scanning
//    ^                                                                                  |
//    +------ poll_interval +-10% (ok) / min(poll * 2^failures, max_backoff) (error) <--+
//
// Kept sessions (engine.keep_sessions > 0, docs/imap.md): at the end of a pass a mailbox asks
// (park_atom) to keep its logged-in connection and lease. Granted while nobody waits and
// fewer than keep_sessions are kept (else only by evicting a less busy one). A kept mailbox
// that falls due is leased again at once (no queue, no login token). Whenever someone waits
// and the budget is held by kept sessions, the least busy one is told to log out
// (unpark_atom) and its slot goes to the waiter as soon as the connection is closed.
//
//   scanning --park granted--> kept --due / IDLE wake--> scanning
//                                |--someone waits / reload / stop--> releasing --closed--> free
#include "actors/engine_metrics.hpp"
#include "actors/mailbox_actor.hpp"
#include "actors/messages.hpp"
#include "core/config.hpp"
#include "core/event_log.hpp"
#include "protocols/net/tls_transport.hpp"

#include <chrono>
#include <functional>
#include <unordered_map>

namespace mscan::actors {

using config_ptr = std::shared_ptr<const core::config>;

struct scheduler_settings {
  core::config cfg;  // engine and rules; its mailboxes unless mailbox_source is set
  net::io_runtime* io = nullptr;
  caf::actor writer;
  std::vector<caf::actor> matchers;  // a mailbox always uses matchers[hash(user) % n]
  bool once = false;                 // one pass over every mailbox, then answer run_atom
  std::shared_ptr<core::event_log> log;
  bool probe = false;     // diagnostics pass (see engine_mode::probe)
  caf::actor observer;    // receives (progress_atom, scan_result, done, total) per first pass
  caf::actor health;      // mailbox state machine + notifications (scan mode)
  std::shared_ptr<engine_metrics> metrics;  // optional: live figures for the status service
  // [[oauth_credential]] name -> its token actor (one per credential, shared by its mailboxes)
  std::map<std::string, caf::actor> token_sources;
  // Null: spawn_mailbox_actor. A cluster coordinator spawns stand-ins that lease the
  // mailbox to whichever node owns it (actors/cluster_coordinator.hpp); whatever it returns
  // must be monitored by the scheduler and answer leases like a mailbox actor.
  std::function<caf::actor(caf::event_based_actor*, mailbox_settings)> spawn_mailbox;
  // The config whose mailboxes the scheduler runs, shared with the health actor: entries and
  // mailbox actors point into it instead of holding copies (memory per mailbox).
  config_ptr mailbox_source;
  // What the store knows of mailboxes from earlier processes (storage::mailbox_state), only
  // for those slow or failing: a slow one is leased in the slow lane from its first lease (a
  // new process does not lend it a healthy slot to find out again); a failing one goes on
  // with its back-off where it was instead of starting over at one poll interval.
  struct stored_mailbox {
    std::string user;
    bool slow = false;
    std::uint32_t failures = 0;
  };
  std::vector<stored_mailbox> stored;
};

// Accepts: (run_atom)  -> run_summary: with `once`, after every mailbox finished one pass;
//                         otherwise when stopped.
//          (stop_atom) -> stop granting leases, abandon passes in progress, answer run_atom.
//          (reload_atom, config_ptr) -> apply a new config: added mailboxes start, removed
//                         ones stop (after their pass), changed ones are replaced when idle;
//                         the others are not disturbed.
caf::behavior scheduler_actor(caf::stateful_actor<struct scheduler_state>* self, scheduler_settings s);

struct scheduler_state {
  using clock = std::chrono::steady_clock;
  struct entry {
    // Shared with the mailbox actor (one copy per mailbox, not two).
    std::shared_ptr<const core::mailbox_config> cfg;
    caf::actor actor;
    bool waiting = false;
    bool scanning = false;
    // The pass's connection is closed and its slot given back (conn_closed_atom); the pass
    // still waits for its batches' acknowledgements (scanning until scan_done).
    bool slot_returned = false;
    bool done_once = false;
    bool removed = false;
    // A reload waiting for the pass to end (a pointer: an empty optional would still take the
    // config's ~300 bytes in every one of 10,000 entries).
    std::unique_ptr<core::mailbox_config> pending_cfg;
    std::uint32_t failures = 0;
    std::uint64_t epoch = 0;  // due messages of an older epoch are ignored
    std::uint32_t summary_at = 0;  // its result's index in summary.results (once done_once)
    // Kept sessions: `kept` holds its lease beyond the pass; `releasing` was told to log out
    // and still holds it until the mailbox says the connection is gone.
    bool kept = false;
    bool releasing = false;
    bool due_after_release = false;  // fell due while releasing: queues once it is closed
    float busy = 0;  // decaying count of new mail per pass: the busiest stay kept
    // Slow lane: the server was slow in a recent pass (kept across passes until a whole pass
    // has no slow answer), in this pass, and whether its lease counts in the lane.
    bool slow = false;
    bool slow_this_pass = false;
    bool in_slow_lane = false;
  };
  struct host {
    std::deque<std::size_t> queue;  // its mailboxes due and waiting for a lease (FIFO)
    std::size_t in_use = 0;
    // Slow mailboxes wait here and hold at most slow_lane_cap() of the host's slots (of in_use).
    std::deque<std::size_t> slow_queue;
    std::size_t slow_in_use = 0;
    clock::time_point paused_until{};
    double tokens = 1;
    clock::time_point refilled = clock::now();
    std::size_t releasing = 0;  // kept sessions of this host told to log out
    // The quickest answer of its last leases (scan_result::reply_ms), a ring: the host's
    // usual speed, so that an early slow report never fires on a host slow for everyone.
    std::array<std::int64_t, 32> reply_ms{};
    std::size_t replies = 0;
  };
  scheduler_settings s;
  // The engine settings every mailbox actor shares (replaced on reload; each actor keeps the
  // one it was spawned with).
  std::shared_ptr<const core::engine_config> engine;
  // The in-flight byte budget every mailbox of this scheduler shares (max_inflight_mb).
  std::shared_ptr<inflight_budget> budget;
  std::vector<entry> mailboxes;
  std::size_t in_use = 0;
  // Per-host queues: granting costs O(hosts + grants), never O(waiting mailboxes) — with
  // 50,000 mailboxes on one host a single FIFO was walked in full on every result.
  std::map<std::string, host> hosts;
  std::string next_host;  // round-robin start, so no host starves the others
  std::unordered_map<caf::actor_addr, std::size_t> index;  // mailbox actor -> entry
  std::size_t remaining = 0;
  bool stopping = false;
  bool grant_timer = false;
  std::vector<std::size_t> kept;  // entries with kept sessions (at most keep_sessions)
  std::size_t draining = 0;  // passes with their slot back early, still waiting for acks
  std::size_t releasing = 0;
  caf::response_promise done;
  run_summary summary;
  static inline const char* name = "scheduler";
};

} // namespace mscan::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(mscan::actors::config_ptr)
