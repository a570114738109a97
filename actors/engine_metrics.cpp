#include "actors/engine_metrics.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace mscan::actors {

std::vector<message_finding> findings_of(const storage::message_record& rec, std::int64_t at) {
  std::vector<message_finding> out;
  // The writer asks for every new message: the common clean one costs no allocation.
  if (rec.warnings.empty() &&
      std::none_of(rec.reasons.begin(), rec.reasons.end(), [](auto& r) { return r.kind == "alert"; }))
    return out;
  const std::string user = !rec.users.empty() ? rec.users.front()
                           : !rec.sightings.empty() ? rec.sightings.front().user
                                                    : std::string{};
  const std::string id = rec.message_id.empty() ? rec.key : rec.message_id;
  auto base = [&](std::string kind) {
    return message_finding{at, std::move(kind), user, id, rec.subject, {}, {}};
  };
  std::vector<std::string> alert_texts;  // the matcher also words each alert as a warning
  for (auto& r : rec.reasons) {
    if (r.kind != "alert")
      continue;
    auto f = base("unknown_reference");
    f.detail = fmt::format("unknown {} reference {} in subject", r.cause, r.target);
    f.next_step = fmt::format("if {0} is a real {1}, add it to the directory ([[item]] kind = \"{1}\", "
                              "reference = \"{0}\", or directory_file); otherwise nothing to do",
                              r.target, r.cause);
    alert_texts.push_back(f.detail);
    out.push_back(std::move(f));
  }
  for (auto& w : rec.warnings) {
    if (std::find(alert_texts.begin(), alert_texts.end(), w) != alert_texts.end())
      continue;
    auto f = base("parse_warning");
    f.detail = w;
    f.next_step = fmt::format("the message was tracked as far as it could be read: check its links with "
                              "`mailscan explain {}` and the original in the mailbox",
                              id);
    out.push_back(std::move(f));
  }
  return out;
}

void engine_metrics::set_ready(bool ready) {
  std::lock_guard lock(mu_);
  s_.ready = ready;
}

void engine_metrics::set_limits(std::size_t max_connections, std::size_t per_host) {
  std::lock_guard lock(mu_);
  s_.max_connections = max_connections;
  s_.max_connections_per_host = per_host;
}

void engine_metrics::scan_finished(const std::string& reason, std::uint64_t fetched, std::uint64_t new_messages,
                                   std::uint64_t new_sightings) {
  std::lock_guard lock(mu_);
  if (reason.empty())
    ++s_.scans_ok;
  else {
    ++s_.scans_failed;
    ++s_.errors_by_reason[reason];
  }
  s_.messages_fetched += fetched;
  s_.messages_new += new_messages;
  s_.sightings_new += new_sightings;
}

void engine_metrics::leases(const std::string& host, std::size_t host_in_use, std::size_t host_waiting,
                            std::size_t global_in_use) {
  std::lock_guard lock(mu_);
  s_.hosts[host] = {host_in_use, host_waiting};
  s_.leases_in_use = global_in_use;
}

void engine_metrics::slow_mailbox(int delta, bool yielded) {
  std::lock_guard lock(mu_);
  s_.slow_mailboxes += delta;
  if (yielded)
    ++s_.slow_lane_yields;
}

void engine_metrics::host_paused() {
  std::lock_guard lock(mu_);
  ++s_.host_pauses;
}

void engine_metrics::kept_session_lost() {
  std::lock_guard lock(mu_);
  ++s_.kept_sessions_lost;
}

void engine_metrics::write_done(double seconds, std::size_t pending_batches, bool ok) {
  std::lock_guard lock(mu_);
  s_.writer_pending_batches = pending_batches;
  if (!ok)
    ++s_.write_failures;
  ++s_.writes;
  s_.write_seconds_sum += seconds;
  auto it = std::lower_bound(engine_stats::write_bounds.begin(), engine_stats::write_bounds.end(), seconds);
  if (it != engine_stats::write_bounds.end())
    ++s_.write_buckets[static_cast<std::size_t>(it - engine_stats::write_bounds.begin())];
}

void engine_metrics::found(std::vector<message_finding> fs) {
  if (fs.empty())
    return;
  std::lock_guard lock(mu_);
  for (auto& f : fs) {
    ++s_.findings_by_kind[f.kind];
    recent_.push_back(std::move(f));
    if (recent_.size() > max_findings)
      recent_.pop_front();
  }
}

engine_stats engine_metrics::snapshot() const {
  std::lock_guard lock(mu_);
  auto s = s_;
  s.recent_findings.assign(recent_.begin(), recent_.end());
  return s;
}

} // namespace mscan::actors
