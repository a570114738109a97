#pragma once
// Builds the actor pipeline for one `mailscan run` and drives it to completion.
// Kept free of CAF types so that the CLI does not compile CAF headers.
#include "actors/engine_metrics.hpp"
#include "common/expected.hpp"
#include "core/config.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace caf {
class actor_system_config;
}

namespace mscan::storage {
class store;
}

namespace mscan::actors {

struct folder_info {
  std::string name;
  std::uint32_t exists = 0;
};

struct pass_result {
  std::string user;
  bool ok = false;
  std::string reason, detail;
  std::uint64_t fetched = 0, new_messages = 0, new_sightings = 0;
  std::vector<std::string> capabilities;  // as the server announced them after login
  std::vector<folder_info> folders;       // opened during the pass, with message counts
  std::vector<std::pair<std::string, std::string>> server_id;  // RFC 2971 ID answer, as sent
};

enum class engine_mode {
  scan,   // the real job: fetch, match, persist
  probe,  // diagnostics: connect, TLS, login, open the configured folders, LOGOUT;
          // nothing fetched, nothing written, the store is not even opened
};

struct engine_report {
  std::vector<pass_result> passes;
  std::uint64_t messages_in_store = 0;
};

struct cluster_hooks;  // actors/cluster_coordinator.hpp

struct engine_options {
  bool once = true;
  engine_mode mode = engine_mode::scan;
  const std::atomic<bool>* stop = nullptr;  // set by a signal handler: orderly shutdown
  std::atomic<bool>* reload = nullptr;      // set by SIGHUP: re-read the config file, apply it
  // Called (from the engine's thread) as each mailbox finishes its first pass.
  std::function<void(const pass_result&, std::size_t done, std::size_t total)> on_progress;
  // The status service of `run` (scan mode only): live figures, and the engine's own store
  // handle — given once the store is open and the pipeline is up, taken back (nullptr) before
  // the store closes. Called from the engine's thread.
  std::shared_ptr<engine_metrics> metrics;
  std::function<void(std::shared_ptr<storage::store>)> on_store;
  // Called with each config a reload applied (SIGHUP), from the engine's thread.
  std::function<void(const core::config&)> on_reload;
  // Set by `mailscan coordinator`: mailboxes are scanned by the nodes that join; this
  // process keeps the store, writer, health and scheduler (leases for the whole cluster).
  cluster_hooks* cluster = nullptr;
  // Called, from a watchdog thread, when tearing the actor system down takes over 30 s after
  // the work is done (shutdown_watchdog.hpp), with the final report; returns the exit code
  // the process then ends with (`run` prints the report and returns its usual code). Unset: 1.
  std::function<int(const engine_report&)> on_shutdown_stuck;
};

// Errors: the store could not be opened (message names the directory and the cause).
expected<engine_report, std::string> run_engine(const core::config& cfg, const engine_options& opts);

// CAF's scheduler as the engine runs it (worker count, idle polling); cluster nodes too.
void tune_scheduler(caf::actor_system_config& cfg);

} // namespace mscan::actors
