#pragma once
// The scheduler: owns one mailbox actor per enabled mailbox and the connection leases.
// Nothing else opens mail-server connections: a mailbox scans only while it holds a lease,
// and leases are bounded globally (max_connections) and per host (max_connections_per_host).
// Waiting mailboxes queue in FIFO order (bounded: each mailbox waits at most once).
#include "actors/messages.hpp"
#include "core/config.hpp"
#include "core/event_log.hpp"
#include "protocols/net/tls_transport.hpp"

namespace mscan::actors {

struct scheduler_settings {
  core::config cfg;
  net::io_runtime* io = nullptr;
  caf::actor writer;
  std::vector<caf::actor> matchers;  // a mailbox always uses matchers[hash(user) % n]
  bool once = false;                 // one pass over every mailbox, then answer run_atom
  std::shared_ptr<core::event_log> log;
  bool probe = false;     // diagnostics pass (see engine_mode::probe)
  caf::actor observer;    // receives (progress_atom, scan_result, done, total) per first pass
};

// Accepts: (run_atom)  -> run_summary: with `once`, after every mailbox finished one pass;
//                         otherwise when stopped.
//          (stop_atom) -> stop granting leases, abandon passes in progress, answer run_atom.
caf::behavior scheduler_actor(caf::stateful_actor<struct scheduler_state>* self, scheduler_settings s);

struct scheduler_state {
  struct entry {
    core::mailbox_config cfg;
    caf::actor actor;
    bool waiting = false;
    bool scanning = false;
    bool done_once = false;
  };
  scheduler_settings s;
  std::vector<entry> mailboxes;
  std::deque<std::size_t> queue;  // mailboxes due and waiting for a lease
  std::size_t in_use = 0;
  std::map<std::string, std::size_t> per_host;
  std::size_t remaining = 0;
  bool stopping = false;
  caf::response_promise done;
  run_summary summary;
  static inline const char* name = "scheduler";
};

} // namespace mscan::actors
