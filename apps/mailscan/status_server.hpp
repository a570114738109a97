#pragma once
// The opt-in status service (Boost.Beast): health, readiness, per-mailbox status, the issues
// list (mailboxes in error with reason and next step), notifications, Prometheus metrics and
// the single-page dashboard (compiled in from dashboard/index.html). Every endpoint but the
// dashboard's static page needs `Authorization: Bearer <token>`; the page itself carries no
// data and reads the token from its URL fragment (#token=...), which browsers never send.
//
//   GET /  /dashboard                  the page (no token)
//   GET /healthz  /health              200 "ok"
//   GET /readyz   /ready               200 "ready" | 503 "not ready"
//   GET /api/mailboxes  /api/status    {"ready", "mailboxes": [status shape of INTERFACE.md + next_step]}
//   GET /api/mailboxes/USER            {"mailbox": {...}, "notifications": [...], "log": [...]}
//   GET /api/issues                    {"issues": [...], "counts": {kind: n}}; every issue has
//                                      "kind", "user", "reason", "detail", "next_step":
//                                      kind "mailbox" (error / credentials_changed: also "state",
//                                      "consecutive_failures", "last_scanned"), "unknown_reference"
//                                      and "parse_warning" (also "message_id", "subject", "at")
//   GET /api/notifications             {"notifications": [...]} newest first
//   POST /api/diagnose[?user=U]        the `mailscan diagnose --json` document (404: no such user,
//                                      409: one is running)
//   GET /metrics                       Prometheus text format 0.0.4
#include "actors/engine.hpp"
#include "actors/engine_metrics.hpp"
#include "common/expected.hpp"
#include "core/config.hpp"
#include "storage/types.hpp"

#include <nlohmann/json.hpp>

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace mscan::storage {
class store;
}

namespace mscan::apps {

// Extra samples the engine may publish (scans, messages, lease usage, queue depths, ...).
struct metric_sample {
  std::string name, help;
  std::string type = "gauge";  // gauge | counter | histogram
  std::vector<std::pair<std::string, std::string>> labels{};
  double value = 0;
  std::string family{};  // HELP/TYPE name when it differs from `name` (histogram _bucket/_sum/_count)
};

struct status_snapshot {
  bool ready = false;  // the engine runs and its store is open
  std::vector<storage::mailbox_state> mailboxes{};
  std::vector<storage::notification_record> notifications{};  // newest first
  std::vector<metric_sample> metrics{};
  // Unknown references and parse warnings (newest last, bounded) and their counts by kind.
  std::vector<actors::message_finding> findings{};
  std::map<std::string, std::uint64_t> findings_by_kind{};
};

// The live engine's figures as Prometheus samples (scans, messages, errors by reason, leases
// per host and global, queue depths, write latency histogram, findings).
std::vector<metric_sample> engine_samples(const actors::engine_stats& s);

struct status_server_options {
  std::string listen = "127.0.0.1:0";  // HOST:PORT; port 0 = any free port
  std::string token{};                 // required, non-empty
  bool allow_remote = false;           // a non-loopback listen address is refused without it
  // Called per request from the server's thread; must be thread-safe.
  std::function<status_snapshot()> snapshot{};
  // Optional: recent log lines of one user (newest last) for the mailbox detail.
  std::function<std::vector<std::string>(const std::string& user)> recent_log{};
  // Optional: diagnostics on demand (POST /api/diagnose): `user` empty = every mailbox; the
  // diagnose --json document, or nullopt when the user is unknown. One probe at a time (409
  // while one runs); it blocks one of the server's two threads meanwhile.
  std::function<std::optional<nlohmann::json>(const std::string& user)> diagnose{};
  std::shared_ptr<std::atomic<bool>> diagnosing = std::make_shared<std::atomic<bool>>(false);
};

struct http_reply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

// The whole request handling without sockets (tests call it directly).
http_reply handle_request(const status_server_options& o, std::string_view method, std::string_view target,
                          std::string_view authorization);
std::string prometheus_text(const status_snapshot& s);
nlohmann::json mailbox_json(const storage::mailbox_state& s);  // status shape + "next_step"
// {"at", "user", "kind", "reason", "detail", "next_step", "consecutive_failures", "delivery"}
nlohmann::json notification_json(const storage::notification_record& n);
// `status`: one line per notification (an array of notification_json), or "no notifications".
void print_notifications(std::ostream& os, const nlohmann::json& notes);

class status_server {
 public:
  // Binds and serves on its own thread. Errors: bad listen address, empty token, bind failure.
  static expected<std::unique_ptr<status_server>, std::string> start(status_server_options o);
  ~status_server();  // stops
  status_server(const status_server&) = delete;
  status_server& operator=(const status_server&) = delete;
  std::uint16_t port() const;
  void stop();

  struct impl;

 private:
  explicit status_server(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

// Findings from the newest `newest` tracked messages of a store (for `serve`, which has no
// live engine): O(messages) — callers cache it.
void add_store_findings(status_snapshot& s, const storage::store& db, std::size_t newest = 500);

// A snapshot read from a store (read-only open per call; none yet = empty, not ready).
// Mailboxes of `cfg` without a stored state appear as never scanned.
status_snapshot snapshot_from_store(const core::config& cfg, const storage::store* db);

// The newest `max_lines` lines of one user from the daily logs (MailScanner_YYYY-MM-DD.log in
// log_dir, core/event_log.hpp), oldest first; reads at most the last 4 MiB of the two newest files.
std::vector<std::string> recent_log_lines(const std::filesystem::path& log_dir, const std::string& user,
                                          std::size_t max_lines = 50);

// `mailscan serve --config FILE [--listen HOST:PORT]`: the service over the store alone (beside a
// running `mailscan run`, which holds the store read-write); prints "listening HOST:PORT" and
// serves until SIGINT/SIGTERM.
int run_serve(const std::string& config_file, const std::string& listen_override);

// The service options both `serve` and `run` use for a config: listen, token, remote access,
// recent log lines and diagnostics on demand. Errors: no token (message says which variable).
expected<status_server_options, std::string> service_options(const core::config& cfg, std::string listen);

// `mailscan run` with [service] listen: starts the service over the running engine — its own
// store handle and live figures, wired into `engine` (metrics, on_store) — and prints
// "listening HOST:PORT". Errors: no token, non-loopback address without allow_remote, bind.
expected<std::unique_ptr<status_server>, std::string> start_run_service(const core::config& cfg,
                                                                         actors::engine_options& engine);

} // namespace mscan::apps
