#pragma once
// Live figures of a running engine for the status service (/metrics, /api/issues): the
// scheduler, the writer and the engine publish into one shared collector; the service's
// thread reads a copy. CAF-free, so the HTTP side does not compile CAF headers.
// Every publish is O(1) (one host's entry, one histogram bucket): nothing here walks the
// mailboxes or the messages.
#include "storage/types.hpp"

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace mscan::actors {

// An issue found in one tracked message: a subject token shaped like a CRM reference that
// names no known item, or a warning of the MIME parser (a part it had to repair or skip).
struct message_finding {
  std::int64_t at = 0;     // unix seconds it was written
  std::string kind{};      // "unknown_reference" | "parse_warning"
  std::string user{}, message_id{}, subject{}, detail{};
  std::string next_step{};
};

// The findings of one record (the same rules for the live engine and for a store read).
std::vector<message_finding> findings_of(const storage::message_record& rec, std::int64_t at);

struct engine_stats {
  static constexpr std::array<double, 11> write_bounds{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                       0.1,   0.25,   0.5,   1,    2.5};
  struct host_leases {
    std::size_t in_use = 0, waiting = 0;
  };
  bool ready = false;
  std::uint64_t scans_ok = 0, scans_failed = 0;
  std::map<std::string, std::uint64_t> errors_by_reason{};
  std::uint64_t messages_fetched = 0, messages_new = 0, sightings_new = 0;
  std::size_t leases_in_use = 0, max_connections = 0, max_connections_per_host = 0;
  std::map<std::string, host_leases> hosts{};  // "host:port"
  std::int64_t slow_mailboxes = 0;      // marked slow now (the scheduler's slow lane)
  std::uint64_t slow_lane_yields = 0;   // leases given back because the slow lane was full
  std::uint64_t host_pauses = 0;        // hosts paused after a throttling answer (load governor)
  std::uint64_t kept_sessions_lost = 0;  // kept connections the server broke (next poll logs in)
  std::size_t writer_pending_batches = 0;       // at the latest group commit
  std::uint64_t writes = 0;
  double write_seconds_sum = 0;
  std::array<std::uint64_t, write_bounds.size()> write_buckets{};  // non-cumulative
  std::uint64_t write_failures = 0;
  std::map<std::string, std::uint64_t> findings_by_kind{};
  std::vector<message_finding> recent_findings{};  // oldest first, at most max_findings
};

class engine_metrics {
 public:
  static constexpr std::size_t max_findings = 200;

  void set_ready(bool ready);
  void set_limits(std::size_t max_connections, std::size_t per_host);
  // reason empty = the pass succeeded.
  void scan_finished(const std::string& reason, std::uint64_t fetched, std::uint64_t new_messages,
                     std::uint64_t new_sightings);
  void leases(const std::string& host, std::size_t host_in_use, std::size_t host_waiting,
              std::size_t global_in_use);
  // delta: +1 a mailbox was marked slow, -1 it is fast again; yielded: the lane was full.
  void slow_mailbox(int delta, bool yielded);
  void host_paused();
  void kept_session_lost();
  void write_done(double seconds, std::size_t pending_batches, bool ok);
  void found(std::vector<message_finding> fs);
  engine_stats snapshot() const;

 private:
  mutable std::mutex mu_;
  engine_stats s_;
  std::deque<message_finding> recent_;
};

} // namespace mscan::actors
