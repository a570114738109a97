#include "actors/scheduler_actor.hpp"
#include "actors/inflight_budget.hpp"

#include "actors/mailbox_actor.hpp"
#include "core/rules.hpp"

#include <fmt/format.h>

#include <functional>
#include <random>
#include <string_view>
#include <unordered_set>
#include <utility>

namespace mscan::actors {

using namespace mscan::atoms;

namespace {

using self_t = caf::stateful_actor<scheduler_state>*;
using clock = scheduler_state::clock;

std::string host_key(const core::mailbox_config& m) { return m.host + ":" + std::to_string(m.port); }

std::mt19937& rng() {
  thread_local std::mt19937 r{std::random_device{}()};
  return r;
}

// d +- fraction, never below zero.
std::chrono::milliseconds jitter(std::chrono::milliseconds d, double fraction) {
  auto span = static_cast<std::int64_t>(static_cast<double>(d.count()) * fraction);
  std::uniform_int_distribution<std::int64_t> dist(-span, span);
  return std::max(std::chrono::milliseconds{0}, d + std::chrono::milliseconds{dist(rng())});
}

bool take_login_token(self_t self, scheduler_state::host& h, clock::time_point now) {
  double rate = self->state.s.cfg.engine.max_logins_per_second_per_host;
  if (rate <= 0)
    return true;
  double cap = std::max(1.0, rate);
  auto elapsed = std::chrono::duration<double>(now - h.refilled).count();
  h.tokens = std::min(cap, h.tokens + elapsed * rate);
  h.refilled = now;
  if (h.tokens < 1)
    return false;
  h.tokens -= 1;
  return true;
}

// The lease figures of one host (and the global count) for the status service: O(1).
void publish_leases(self_t self, const std::string& key, const scheduler_state::host& h) {
  if (auto& m = self->state.s.metrics)
    m->leases(key, h.in_use, h.queue.size() + h.slow_queue.size(), self->state.in_use);
}

std::size_t slow_lane_cap(const core::engine_config& eng) {
  return std::max<std::size_t>(1, eng.max_connections_per_host / 4);
}

// Leases the first mailbox of `q` (one of h's queues); false when the host's login rate
// allows no login yet (retry_at says when).
bool lease_next(self_t self, scheduler_state::host& h, std::deque<std::size_t>& q, clock::time_point now,
                clock::time_point& retry_at) {
  auto& st = self->state;
  if (!take_login_token(self, h, now)) {
    retry_at = std::min(retry_at, now + std::chrono::milliseconds(static_cast<std::int64_t>(
                                          1000.0 / st.s.cfg.engine.max_logins_per_second_per_host) + 1));
    return false;
  }
  auto idx = q.front();
  q.pop_front();
  auto& e = st.mailboxes[idx];
  ++h.in_use;
  ++st.in_use;
  if (&q == &h.slow_queue) {
    ++h.slow_in_use;
    e.in_slow_lane = true;
  }
  e.waiting = false;
  e.scanning = true;
  self->send(e.actor, lease_atom::value);
  return true;
}

// Kept sessions (the block below on_result's helpers).
bool resume_kept(self_t self, std::size_t idx);
void reclaim_kept(self_t self);
bool others_wait(self_t self, std::size_t idx);
void release_kept(self_t self, std::size_t idx);

void grant_leases(self_t self) {
  auto& st = self->state;
  if (st.stopping || st.hosts.empty())
    return;
  auto now = clock::now();
  auto retry_at = clock::time_point::max();
  auto& eng = st.s.cfg.engine;
  // Visit hosts round-robin from where the last call stopped; within a host, FIFO.
  auto start = st.hosts.lower_bound(st.next_host);
  for (std::size_t visited = 0; visited < st.hosts.size() && st.in_use < eng.max_connections; ++visited) {
    if (start == st.hosts.end())
      start = st.hosts.begin();
    auto& [key, h] = *start;
    auto next = std::next(start);
    if (!h.queue.empty() || !h.slow_queue.empty()) {
      if (h.paused_until > now) {
        retry_at = std::min(retry_at, h.paused_until);
      } else {
        // The slow lane first, within its cap: slow mailboxes neither starve nor take more.
        while (!h.slow_queue.empty() && (h.slow_in_use < slow_lane_cap(eng) || h.queue.empty()) &&
               h.in_use < eng.max_connections_per_host && st.in_use < eng.max_connections)
          if (!lease_next(self, h, h.slow_queue, now, retry_at))
            break;
        while (!h.queue.empty() && h.in_use < eng.max_connections_per_host && st.in_use < eng.max_connections)
          if (!lease_next(self, h, h.queue, now, retry_at))
            break;
      }
      publish_leases(self, key, h);
    }
    start = next;
    st.next_host = start == st.hosts.end() ? std::string{} : start->first;
  }
  if (retry_at != clock::time_point::max() && !st.grant_timer) {
    st.grant_timer = true;
    self->delayed_send(self, std::chrono::duration_cast<std::chrono::milliseconds>(retry_at - now) +
                               std::chrono::milliseconds(1),
                       grant_atom::value);
  }
  reclaim_kept(self);
}


void make_due(self_t self, std::size_t idx) {
  auto& e = self->state.mailboxes[idx];
  if (e.waiting || e.scanning || e.removed || self->state.stopping)
    return;
  if (resume_kept(self, idx))
    return;
  if (e.releasing) {  // its slot is still counted: queueing now could exceed the bounds
    e.due_after_release = true;
    return;
  }
  e.waiting = true;
  auto key = host_key(*e.cfg);
  auto& h = self->state.hosts[key];
  (e.slow ? h.slow_queue : h.queue).push_back(idx);
  publish_leases(self, key, h);
  grant_leases(self);
}

void schedule_next(self_t self, std::size_t idx, std::chrono::milliseconds delay) {
  auto& e = self->state.mailboxes[idx];
  // One poll timer per mailbox: a pass started early (IDLE wake) makes the older one void,
  // or timers would pile up with every wake.
  ++e.epoch;
  self->delayed_send(self, delay, due_atom::value, idx, e.epoch);
}

void maybe_finish(self_t self) {
  auto& st = self->state;
  bool all_done = st.s.once ? st.remaining == 0 : false;
  bool stopped = st.stopping && st.in_use == 0 && st.draining == 0;
  if ((all_done || stopped) && st.done.pending()) {
    st.done.deliver(std::move(st.summary));  // one result per mailbox: not copied
    for (auto& e : st.mailboxes)
      if (e.actor)
        self->send_exit(e.actor, caf::exit_reason::user_shutdown);
  }
}

void spawn_one(self_t self, std::size_t idx) {
  auto& st = self->state;
  auto& e = st.mailboxes[idx];
  mailbox_settings ms;
  ms.cfg = e.cfg;
  ms.engine = st.engine;
  ms.budget = st.budget;
  ms.metrics = st.s.metrics;
  ms.io = st.s.io;
  ms.writer = st.s.writer;
  ms.log = st.s.log;
  ms.probe = st.s.probe;
  ms.health = st.s.health;
  ms.server_actions = !st.s.probe && core::has_server_actions(st.s.cfg.rules, e.cfg->user);
  ms.fetch_text = core::text_needed_by(st.s.cfg.engine, st.s.cfg.rules, e.cfg->user).has_value();
  if (auto t = st.s.token_sources.find(e.cfg->oauth_credential); t != st.s.token_sources.end())
    ms.token_source = t->second;
  if (!st.s.matchers.empty())
    ms.matcher = st.s.matchers[std::hash<std::string>{}(e.cfg->user) % st.s.matchers.size()];
  e.actor = st.s.spawn_mailbox ? st.s.spawn_mailbox(self, std::move(ms)) : spawn_mailbox_actor(self, std::move(ms));
  st.index[e.actor.address()] = idx;
}

// Replaces an idle mailbox's actor (new settings); the old one is told to exit.
void respawn(self_t self, std::size_t idx) {
  auto& e = self->state.mailboxes[idx];
  if (e.actor) {
    self->demonitor(e.actor);
    self->state.index.erase(e.actor.address());
    self->send_exit(e.actor, caf::exit_reason::user_shutdown);
  }
  e.actor = nullptr;
  if (!e.removed)
    spawn_one(self, idx);
}

// A reload that waited for the pass (or the kept session) to end.
void apply_pending(self_t self, std::size_t idx) {
  auto& st = self->state;
  auto& e = st.mailboxes[idx];
  if (e.pending_cfg) {
    e.cfg = std::move(e.pending_cfg);
    e.pending_cfg.reset();
    ++e.epoch;
    e.failures = 0;
  }
  respawn(self, idx);
  if (!e.removed && !st.s.once && !st.stopping)
    schedule_next(self, idx, std::chrono::milliseconds(0));
}

// ---- Kept sessions (see the header): all of their lease accounting is in this block. ----

void forget_kept(self_t self, std::size_t idx) {
  auto& st = self->state;
  std::erase(st.kept, idx);
  st.mailboxes[idx].kept = false;
}

// Tells a kept mailbox to log out; its slot stays counted until it reports the connection
// gone (kept_gone), so the bounds hold while the LOGOUT is under way.
void release_kept(self_t self, std::size_t idx) {
  auto& st = self->state;
  auto& e = st.mailboxes[idx];
  if (!e.kept || e.scanning)
    return;
  forget_kept(self, idx);
  e.releasing = true;
  ++st.releasing;
  ++st.hosts[host_key(*e.cfg)].releasing;
  if (e.actor)
    self->send(e.actor, unpark_atom::value);
}

// The mailbox's kept connection is closed (logged out, lost, or the actor went down).
void kept_gone(self_t self, std::size_t idx) {
  auto& st = self->state;
  auto& e = st.mailboxes[idx];
  const bool held = (e.kept || e.releasing) && !e.scanning;  // scanning: the pass's lease
  auto key = host_key(*e.cfg);
  auto& h = st.hosts[key];
  if (e.kept)
    forget_kept(self, idx);
  if (e.releasing) {
    e.releasing = false;
    --st.releasing;
    --h.releasing;
  }
  if (!held)
    return;
  --st.in_use;
  --h.in_use;
  publish_leases(self, key, h);
  if ((e.removed || e.pending_cfg) && e.actor)
    apply_pending(self, idx);
  else if (std::exchange(e.due_after_release, false))
    make_due(self, idx);
}

// A due kept mailbox scans at once on its open connection: no queue, no login token.
bool resume_kept(self_t self, std::size_t idx) {
  auto& e = self->state.mailboxes[idx];
  if (!e.kept || e.releasing)
    return false;
  forget_kept(self, idx);
  e.scanning = true;
  self->send(e.actor, lease_atom::value);
  return true;
}

std::size_t least_busy_kept(self_t self, const std::string* host) {
  auto& st = self->state;
  std::size_t best = st.mailboxes.size();
  for (auto idx : st.kept) {
    auto& e = st.mailboxes[idx];
    if (e.scanning || (host && host_key(*e.cfg) != *host))
      continue;
    if (best == st.mailboxes.size() || e.busy < st.mailboxes[best].busy)
      best = idx;
  }
  return best;
}

// Kept sessions never make anyone wait: for every mailbox queued behind a budget that kept
// sessions hold, one of them (the least busy) logs out. O(hosts + kept).
void reclaim_kept(self_t self) {
  auto& st = self->state;
  if (st.kept.empty() || st.stopping)
    return;
  const auto& eng = st.s.cfg.engine;
  auto now = clock::now();
  std::size_t waiting = 0;
  for (auto& [key, h] : st.hosts)
    if (h.paused_until <= now)
      waiting += h.queue.size();
  for (auto& [key, h] : st.hosts) {
    if (h.queue.empty() || h.paused_until > now)
      continue;
    while (h.in_use >= eng.max_connections_per_host && h.releasing < h.queue.size()) {
      auto victim = least_busy_kept(self, &key);
      if (victim == st.mailboxes.size())
        break;
      release_kept(self, victim);
    }
  }
  while (waiting > st.releasing && st.in_use >= eng.max_connections) {
    auto victim = least_busy_kept(self, nullptr);
    if (victim == st.mailboxes.size())
      break;
    release_kept(self, victim);
  }
}

// (park_atom): may this mailbox keep its connection after the pass?
bool may_keep(self_t self, std::size_t idx, std::uint64_t new_messages) {
  auto& st = self->state;
  auto& e = st.mailboxes[idx];
  e.busy = e.busy / 2 + static_cast<float>(new_messages) + (new_messages > 0 ? 1.0f : 0.0f);
  const auto limit = st.s.cfg.engine.keep_sessions;
  if (limit == 0 || st.s.once || st.stopping || !e.scanning || e.removed || e.pending_cfg || e.kept ||
      others_wait(self, idx))
    return false;
  if (st.kept.size() >= limit) {
    // Full: only a busier mailbox takes the place of the least busy one.
    auto victim = least_busy_kept(self, nullptr);
    if (victim == st.mailboxes.size() || st.mailboxes[victim].busy >= e.busy)
      return false;
    release_kept(self, victim);
  }
  e.kept = true;
  st.kept.push_back(idx);
  return true;
}

// Shutdown: every kept session logs out; run_atom is answered once they are all closed.
void release_all_kept(self_t self) {
  auto& st = self->state;
  for (auto idx : std::vector<std::size_t>(st.kept))
    release_kept(self, idx);
}

// ---- end of kept sessions ----

// ---- Slow lane. A mailbox reports its first answer slower than slow_response_ms in a lease
// (or `early`, past a quarter of it, counted only while healthy mailboxes of the host wait):
// it is marked slow and its lease moves into the lane, if the lane has room (or no healthy
// mailbox of the host waits); otherwise it is told to give the lease back (false) and
// queues in the lane.
bool on_slow(self_t self, std::size_t idx, std::uint32_t waited_ms, bool early) {
  auto& st = self->state;
  auto& e = st.mailboxes[idx];
  if (!e.scanning || st.s.cfg.engine.slow_response_ms == 0)
    return true;
  e.slow_this_pass = true;
  auto key = host_key(*e.cfg);
  auto& h = st.hosts[key];
  auto cap = slow_lane_cap(st.s.cfg.engine);
  if (!e.slow) {
    e.slow = true;
    if (st.s.metrics)
      st.s.metrics->slow_mailbox(+1, false);
    if (st.s.log)
      st.s.log->write(core::log_level::warning, "mailbox_slow", e.cfg->user, key, "",
                      fmt::format("the server took {} ms to start an answer (slow_response_ms = {}{}): this "
                                  "mailbox now shares the host's slow lane of {} connection(s)",
                                  waited_ms, st.s.cfg.engine.slow_response_ms,
                                  early ? "; a quarter of it counts while other mailboxes wait for the host" : "",
                                  cap));
  }
  if (e.in_slow_lane)
    return true;
  // Over the cap only while no healthy mailbox of the host waits (a host that is slow for
  // everyone keeps all of its connections).
  if (h.slow_in_use < cap || h.queue.empty()) {
    ++h.slow_in_use;
    e.in_slow_lane = true;
    return true;
  }
  if (st.s.metrics)
    st.s.metrics->slow_mailbox(0, true);
  return false;
}

// An early report (a quarter of slow_response_ms) counts only while healthy mailboxes of the
// host wait for a slot and the silence is far beyond the host's usual answer: the median of
// its last leases' quickest answers (a few slow mailboxes do not move it; a host slow for
// everyone, e.g. 300 ms a command, never trips it). Too few leases yet: not judged.
bool early_slow_counts(const scheduler_state::host& h, std::uint32_t waited_ms) {
  constexpr std::size_t min_samples = 8;
  constexpr std::int64_t factor = 8;
  if (h.queue.empty() || h.replies < min_samples)
    return false;
  const auto n = std::min(h.replies, h.reply_ms.size());
  std::array<std::int64_t, 32> v{};
  std::copy_n(h.reply_ms.begin(), n, v.begin());
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(n / 2), v.begin() + static_cast<std::ptrdiff_t>(n));
  return std::int64_t{waited_ms} >= factor * std::max<std::int64_t>(v[n / 2], 1);
}

// A whole pass ended: the slow mark decays once a pass saw no slow answer (the server is
// fast again), so a single bad moment does not keep a mailbox in the lane forever.
void end_of_pass_speed(self_t self, std::size_t idx, const scan_result& res) {
  auto& st = self->state;
  auto& e = st.mailboxes[idx];
  bool was_slow = std::exchange(e.slow_this_pass, false);
  if (!e.slow || was_slow || !res.ok)
    return;
  e.slow = false;
  if (st.s.metrics)
    st.s.metrics->slow_mailbox(-1, false);
  if (st.s.log)
    st.s.log->write(core::log_level::info, "mailbox_fast_again", e.cfg->user, host_key(*e.cfg), "",
                    "a whole pass without a slow answer: out of the slow lane");
}

// At start: the mailboxes stored as slow by an earlier process queue in the lane at once
// (their mark still decays after a whole fast pass); the failing ones keep their failure
// count, so their next failure backs off further. O(mailboxes + stored).
void restore_stored(self_t self) {
  auto& st = self->state;
  auto stored = std::exchange(st.s.stored, {});
  if (stored.empty())
    return;
  std::unordered_map<std::string_view, const scheduler_settings::stored_mailbox*> by_user;
  for (auto& m : stored)
    by_user.emplace(m.user, &m);
  std::size_t slow = 0, failing = 0;
  for (auto& e : st.mailboxes) {
    auto it = by_user.find(e.cfg->user);
    if (it == by_user.end())
      continue;
    e.failures = it->second->failures;
    failing += e.failures > 0;
    if (!it->second->slow || st.s.cfg.engine.slow_response_ms == 0)
      continue;
    e.slow = true;
    ++slow;
    if (st.s.metrics)
      st.s.metrics->slow_mailbox(+1, false);
  }
  if (st.s.log && slow + failing > 0)
    st.s.log->write(core::log_level::info, "stored_state_restored", "", "", "",
                    fmt::format("slow={} failing={}: the slow ones start in their host's slow lane, the failing "
                                "ones keep their back-off",
                                slow, failing));
}

void on_result(self_t self, std::size_t idx, scan_result res) {
  auto& st = self->state;
  auto& e = st.mailboxes[idx];
  auto key = host_key(*e.cfg);
  if (res.reply_ms >= 0) {
    auto& h = st.hosts[key];
    h.reply_ms[h.replies++ % h.reply_ms.size()] = res.reply_ms;
  }
  if (e.scanning) {
    e.scanning = false;
    if (std::exchange(e.in_slow_lane, false))
      --st.hosts[key].slow_in_use;
    if (std::exchange(e.slot_returned, false)) {
      --st.draining;  // its connection slot came back at conn_closed_atom
    } else if (!e.kept) {  // a kept session keeps its lease
      --st.in_use;
      --st.hosts[key].in_use;
      publish_leases(self, key, st.hosts[key]);
    } else if (st.stopping) {
      release_kept(self, idx);  // kept just before the stop: logs out like the others
    }
  }
  if (st.s.metrics && res.reason != "stopped")
    st.s.metrics->scan_finished(res.ok ? std::string{} : res.reason, res.fetched, res.new_messages,
                                res.new_sightings);
  e.failures = res.ok ? 0 : e.failures + 1;
  if (res.more && !e.removed && !e.pending_cfg && !st.stopping) {
    // A yielded slice (fairness): back in the host's queue at once, behind the mailboxes
    // that waited; the pass (and its one summary entry) goes on with the next lease.
    grant_leases(self);   // the freed slot goes to those that waited first
    make_due(self, idx);  // then this one queues (or takes it back if nobody wanted it)
    return;
  }
  res.more = false;  // a reload or shutdown ends the pass here
  end_of_pass_speed(self, idx, res);
  if (res.reason == "throttled" && !res.throttle_mailbox_only) {
    // The load governor: this host only, for as long as it asked (at least the mailbox's
    // throttle_backoff_s: a minute, or its provider preset's).
    auto pause = std::chrono::seconds(std::max<std::uint32_t>(res.retry_after_s, e.cfg->throttle_backoff_s));
    auto& until = st.hosts[key].paused_until;
    until = std::max(until, clock::now() + pause);  // a shorter hint never cuts a longer pause
    if (st.s.metrics)
      st.s.metrics->host_paused();
    if (st.s.log)
      st.s.log->write(core::log_level::warning, "host_throttled", res.user, key, "",
                      fmt::format("pausing new logins to this host for {} s", pause.count()));
  }
  if (!e.done_once) {
    e.done_once = true;
    if (st.remaining > 0)
      --st.remaining;
    e.summary_at = static_cast<std::uint32_t>(st.summary.results.size());
    st.summary.results.push_back(res);
    if (st.s.observer)
      self->send(st.s.observer, progress_atom::value, res, st.summary.results.size(), st.mailboxes.size());
  } else {
    if (e.summary_at < st.summary.results.size())  // (delivered already: nothing to update)
      st.summary.results[e.summary_at] = res;  // was a walk over every mailbox's result per poll
  }
  if ((e.removed || e.pending_cfg) && (e.kept || e.releasing)) {
    release_kept(self, idx);  // the change applies once its kept session is logged out
  } else if (e.removed || e.pending_cfg) {
    apply_pending(self, idx);
  } else if (!st.s.once && !st.stopping) {
    auto poll = std::chrono::milliseconds(std::int64_t{st.s.cfg.engine.poll_interval_s} * 1000);
    if (res.ok) {
      schedule_next(self, idx, jitter(poll, 0.1));  // mailboxes never synchronise
    } else if (res.throttle_mailbox_only) {
      schedule_next(self, idx, std::chrono::seconds(res.retry_after_s));
    } else {
      auto cap = std::chrono::milliseconds(std::int64_t{st.s.cfg.engine.max_backoff_s} * 1000);
      auto shift = std::min<std::uint32_t>(e.failures - 1, 10);
      auto backoff = std::min(cap, poll * (std::int64_t{1} << shift));
      schedule_next(self, idx, jitter(backoff, 0.2));
    }
  }
  grant_leases(self);
  maybe_finish(self);
}

std::size_t index_of(self_t self, const caf::actor_addr& a) {
  auto it = self->state.index.find(a);
  return it == self->state.index.end() ? self->state.mailboxes.size() : it->second;
}

// Whether a mailbox that used up a slice of its lease should give it back: someone waits for
// a slot of its host, or every connection is in use while some host could take one more.
bool others_wait(self_t self, std::size_t idx) {
  auto& st = self->state;
  const auto& eng = st.s.cfg.engine;
  if (st.stopping)
    return false;
  auto now = clock::now();
  auto waiting = [&](const scheduler_state::host& h) {
    return (!h.queue.empty() || (!h.slow_queue.empty() && h.slow_in_use < slow_lane_cap(eng))) &&
           h.paused_until <= now;
  };
  if (auto it = st.hosts.find(host_key(*st.mailboxes[idx].cfg)); it != st.hosts.end() && waiting(it->second))
    return true;
  if (st.in_use < eng.max_connections)
    return false;
  return std::any_of(st.hosts.begin(), st.hosts.end(), [&](const auto& kv) {
    return waiting(kv.second) && kv.second.in_use < eng.max_connections_per_host;
  });
}

void unqueue(self_t self, std::size_t idx) {
  auto& e = self->state.mailboxes[idx];
  if (!e.waiting)
    return;
  auto key = host_key(*e.cfg);
  auto& h = self->state.hosts[key];
  std::erase(h.queue, idx);
  std::erase(h.slow_queue, idx);
  e.waiting = false;
  publish_leases(self, key, h);
}

bool scans(const scheduler_state& st, const core::mailbox_config& m) {
  // scan_emails = false keeps a mailbox in diagnostics but out of scanning.
  return !m.disable_mail_scan && (m.scan_emails || st.s.probe);
}

bool same_settings(const core::mailbox_config& a, const core::mailbox_config& b) {
  return a.address == b.address && a.type == b.type && a.host == b.host && a.port == b.port && a.security == b.security &&
         a.verify_certificate == b.verify_certificate && a.ca_file == b.ca_file && a.auth == b.auth &&
         a.username == b.username && a.secret == b.secret && a.oauth_credential == b.oauth_credential &&
         a.throttle_backoff_s == b.throttle_backoff_s && a.max_download_mb_per_day == b.max_download_mb_per_day &&
         a.folders == b.folders && a.scan == b.scan;
}

void apply_reload(self_t self, const core::config& next) {
  auto& st = self->state;
  auto old_engine = std::exchange(st.s.cfg.engine, next.engine);
  st.engine = std::make_shared<const core::engine_config>(next.engine);  // for actors spawned from now on
  // A mailbox whose rules gain or lose server-side actions is respawned like a changed one
  // (it opens folders read-write only when it may act); so is one whose rules start or stop
  // reading message text (header path).
  auto old_rules = std::exchange(st.s.cfg.rules, next.rules);
  auto acts_changed = [&](const std::string& user) {
    return core::has_server_actions(old_rules, user) != core::has_server_actions(next.rules, user) ||
           core::text_needed_by(old_engine, old_rules, user).has_value() !=
             core::text_needed_by(next.engine, next.rules, user).has_value();
  };
  std::size_t added = 0, removed = 0, changed = 0;
  for (auto& m : next.mailboxes) {
    if (!scans(st, m))
      continue;
    auto it = std::find_if(st.mailboxes.begin(), st.mailboxes.end(),
                           [&](auto& e) { return e.cfg->user == m.user && !e.removed; });
    if (it == st.mailboxes.end()) {
      st.mailboxes.push_back({std::make_shared<const core::mailbox_config>(m), caf::actor{}});
      auto idx = st.mailboxes.size() - 1;
      spawn_one(self, idx);
      ++added;
      if (!st.s.once)
        schedule_next(self, idx, jitter(std::chrono::milliseconds(1000), 1.0));
      continue;
    }
    if (same_settings(*it->cfg, m) && !acts_changed(m.user))
      continue;
    ++changed;
    auto idx = static_cast<std::size_t>(it - st.mailboxes.begin());
    if (it->scanning || it->kept || it->releasing) {
      it->pending_cfg = std::make_unique<core::mailbox_config>(m);
      if (!it->scanning)
        release_kept(self, static_cast<std::size_t>(it - st.mailboxes.begin()));
    } else {
      unqueue(self, idx);  // under its old host
      it->cfg = std::make_shared<const core::mailbox_config>(m);
      it->failures = 0;
      ++it->epoch;
      respawn(self, idx);
      if (!st.s.once)
        schedule_next(self, idx, std::chrono::milliseconds(0));
    }
  }
  for (std::size_t idx = 0; idx < st.mailboxes.size(); ++idx) {
    auto& e = st.mailboxes[idx];
    if (e.removed)
      continue;
    bool keep = std::any_of(next.mailboxes.begin(), next.mailboxes.end(),
                            [&](auto& m) { return m.user == e.cfg->user && scans(st, m); });
    if (keep)
      continue;
    ++removed;
    e.removed = true;
    ++e.epoch;
    unqueue(self, idx);
    if (!e.scanning && (e.kept || e.releasing))
      release_kept(self, idx);  // logged out first; respawned (exits) when it is gone
    else if (!e.scanning)
      respawn(self, idx);  // removed: only exits
  }
  if (st.s.log)
    st.s.log->write(core::log_level::info, "config_reloaded", "", "", "",
                    fmt::format("added={} removed={} changed={}", added, removed, changed));
  grant_leases(self);
}

} // namespace

caf::behavior scheduler_actor(caf::stateful_actor<scheduler_state>* self, scheduler_settings s) {
  auto& st = self->state;
  st.s = std::move(s);
  st.engine = std::make_shared<const core::engine_config>(st.s.cfg.engine);
  st.budget = std::make_shared<inflight_budget>(std::uint64_t{st.s.cfg.engine.max_inflight_mb} << 20);
  if (auto src = std::exchange(st.s.mailbox_source, nullptr)) {
    st.mailboxes.reserve(src->mailboxes.size());
    for (auto& m : src->mailboxes)
      if (scans(st, m))
        st.mailboxes.push_back({std::shared_ptr<const core::mailbox_config>(src, &m), caf::actor{}});
  } else {
    st.mailboxes.reserve(st.s.cfg.mailboxes.size());
    for (auto& m : st.s.cfg.mailboxes)
      if (scans(st, m))
        st.mailboxes.push_back({std::make_shared<const core::mailbox_config>(std::move(m)), caf::actor{}});
  }
  // The entries hold the mailboxes; the directory lives in the matchers. Keeping this copy
  // of it would cost memory per mailbox (and per contact) for nothing; freed before the
  // actors are spawned, so they reuse it. The rules stay: they decide which mailboxes run
  // server-side actions (spawn_one, apply_reload).
  st.s.cfg.mailboxes = {};
  st.s.cfg.accounts = {};
  st.s.cfg.contacts = {};
  st.s.cfg.items = {};
  st.s.cfg.item_patterns = {};
  restore_stored(self);
  for (std::size_t i = 0; i < st.mailboxes.size(); ++i)
    spawn_one(self, i);
  st.remaining = st.mailboxes.size();

  self->set_down_handler([self](caf::down_msg& dm) {
    auto idx = index_of(self, dm.source);
    if (idx >= self->state.mailboxes.size())
      return;
    auto& e = self->state.mailboxes[idx];
    auto user = e.cfg->user;
    bool was_scanning = e.scanning;
    self->state.index.erase(dm.source);
    e.actor = nullptr;
    kept_gone(self, idx);  // its connection went with it
    if (self->state.stopping || !self->state.done.pending() || e.removed)
      return;
    // A crashed mailbox actor: its lease returns, the pass counts as failed (so it backs
    // off), and a fresh actor takes over from the last durable checkpoint.
    spawn_one(self, idx);
    if (self->state.s.log)
      self->state.s.log->write(core::log_level::error, "mailbox_actor_crashed", user, "", "",
                               caf::to_string(dm.reason));
    if (was_scanning)
      on_result(self, idx, failed_result(user, "internal_error", caf::to_string(dm.reason)));
  });

  return {
    [=](run_atom) {
      auto& st = self->state;
      st.done = self->make_response_promise();
      if (st.mailboxes.empty()) {
        maybe_finish(self);
        if (st.done.pending())
          st.done.deliver(st.summary);
        return st.done;
      }
      if (st.s.once) {
        // Those that failed in the last process queue behind the others: a wrong password
        // or a broken server does not take a healthy mailbox's slot at the start.
        for (bool failing : {false, true})
          for (std::size_t i = 0; i < st.mailboxes.size(); ++i)
            if ((st.mailboxes[i].failures > 0) == failing)
              make_due(self, i);
      } else {
        // Spread the first polls over one interval: no thundering herd at start-up.
        auto n = st.mailboxes.size();
        auto interval = std::chrono::milliseconds(std::int64_t{st.s.cfg.engine.poll_interval_s} * 1000);
        for (std::size_t i = 0; i < n; ++i)
          schedule_next(self, i, interval * static_cast<std::int64_t>(i) / static_cast<std::int64_t>(n));
      }
      return st.done;
    },
    [=](due_atom, std::size_t idx, std::uint64_t epoch) {
      if (idx < self->state.mailboxes.size() && self->state.mailboxes[idx].epoch == epoch)
        make_due(self, idx);
    },
    [=](grant_atom) {
      self->state.grant_timer = false;
      grant_leases(self);
    },
    [=](scan_done_atom, scan_result& res) {
      auto idx = index_of(self, self->current_sender() ? caf::actor_cast<caf::actor_addr>(self->current_sender())
                                                       : caf::actor_addr{});
      if (idx >= self->state.mailboxes.size())
        return;
      on_result(self, idx, std::move(res));
    },
    [=](conn_closed_atom) {
      // Waiting for the writer holds no server connection: the slot goes to the next mailbox
      // now, not after the group commit (a paced or slow disk would idle it).
      auto& st = self->state;
      auto idx = index_of(self, caf::actor_cast<caf::actor_addr>(self->current_sender()));
      if (idx >= st.mailboxes.size())
        return;
      auto& e = st.mailboxes[idx];
      if (!e.scanning || e.kept || e.slot_returned)
        return;
      e.slot_returned = true;
      ++st.draining;
      auto key = host_key(*e.cfg);
      auto& h = st.hosts[key];
      if (std::exchange(e.in_slow_lane, false))
        --h.slow_in_use;
      --st.in_use;
      --h.in_use;
      publish_leases(self, key, h);
      grant_leases(self);
    },
    [=](slice_atom) {
      auto idx = index_of(self, caf::actor_cast<caf::actor_addr>(self->current_sender()));
      return idx < self->state.mailboxes.size() && self->state.mailboxes[idx].scanning && others_wait(self, idx);
    },
    [=](park_atom, std::uint64_t new_messages) {
      auto idx = index_of(self, caf::actor_cast<caf::actor_addr>(self->current_sender()));
      return idx < self->state.mailboxes.size() && may_keep(self, idx, new_messages);
    },
    [=](unpark_atom) {
      auto idx = index_of(self, caf::actor_cast<caf::actor_addr>(self->current_sender()));
      if (idx >= self->state.mailboxes.size())
        return;
      kept_gone(self, idx);
      grant_leases(self);
      maybe_finish(self);
    },
    [=](wake_atom) {
      auto idx = index_of(self, caf::actor_cast<caf::actor_addr>(self->current_sender()));
      if (idx < self->state.mailboxes.size())
        make_due(self, idx);
    },
    [=](slow_atom, std::uint32_t waited_ms, bool early) -> caf::result<bool, bool> {
      auto idx = index_of(self, caf::actor_cast<caf::actor_addr>(self->current_sender()));
      if (idx >= self->state.mailboxes.size())
        return {true, false};
      auto& e = self->state.mailboxes[idx];
      if (early && (!e.scanning || !early_slow_counts(self->state.hosts[host_key(*e.cfg)], waited_ms)))
        return {true, false};
      return {on_slow(self, idx, waited_ms, early), true};
    },
    [=](reload_atom, const config_ptr& next) {
      if (next)
        apply_reload(self, *next);
    },
    [=](stop_atom) {
      auto& st = self->state;
      st.stopping = true;
      for (auto& [key, h] : st.hosts) {
        h.queue.clear();
        h.slow_queue.clear();
      }
      for (auto& e : st.mailboxes)
        if (e.scanning)
          self->send(e.actor, stop_atom::value);
      release_all_kept(self);
      maybe_finish(self);
    },
  };
}

} // namespace mscan::actors
