#include "actors/scheduler_actor.hpp"

#include "actors/mailbox_actor.hpp"

#include <functional>
#include <random>

namespace mscan::actors {

using namespace mscan::atoms;

namespace {

using self_t = caf::stateful_actor<scheduler_state>*;

std::string host_key(const core::mailbox_config& m) { return m.host + ":" + std::to_string(m.port); }

void grant_leases(self_t self) {
  auto& st = self->state;
  if (st.stopping)
    return;
  // FIFO, skipping (not dropping) mailboxes whose host is at its limit.
  for (auto it = st.queue.begin(); it != st.queue.end() && st.in_use < st.s.cfg.engine.max_connections;) {
    auto& e = st.mailboxes[*it];
    auto& host_used = st.per_host[host_key(e.cfg)];
    if (host_used >= st.s.cfg.engine.max_connections_per_host) {
      ++it;
      continue;
    }
    ++host_used;
    ++st.in_use;
    e.waiting = false;
    e.scanning = true;
    self->send(e.actor, lease_atom::value);
    it = st.queue.erase(it);
  }
}

void make_due(self_t self, std::size_t idx) {
  auto& e = self->state.mailboxes[idx];
  if (e.waiting || e.scanning || self->state.stopping)
    return;
  e.waiting = true;
  self->state.queue.push_back(idx);
  grant_leases(self);
}

void maybe_finish(self_t self) {
  auto& st = self->state;
  bool all_done = st.s.once ? st.remaining == 0 : false;
  bool stopped = st.stopping && st.in_use == 0;
  if ((all_done || stopped) && st.done.pending()) {
    st.done.deliver(st.summary);
    for (auto& e : st.mailboxes)
      if (e.actor)
        self->send_exit(e.actor, caf::exit_reason::user_shutdown);
  }
}

void on_result(self_t self, std::size_t idx, scan_result res) {
  auto& st = self->state;
  auto& e = st.mailboxes[idx];
  if (e.scanning) {
    e.scanning = false;
    --st.in_use;
    --st.per_host[host_key(e.cfg)];
  }
  if (!e.done_once) {
    e.done_once = true;
    if (st.remaining > 0)
      --st.remaining;
    st.summary.results.push_back(res);
    if (st.s.observer)
      self->send(st.s.observer, progress_atom::value, res, st.summary.results.size(), st.mailboxes.size());
  } else {
    for (auto& r : st.summary.results)
      if (r.user == res.user)
        r = res;
  }
  if (!st.s.once && !st.stopping) {
    // Next poll with +-10 % jitter so that mailboxes never synchronise.
    thread_local std::mt19937 rng{std::random_device{}()};
    auto base = std::chrono::milliseconds(std::int64_t{st.s.cfg.engine.poll_interval_s} * 1000);
    std::uniform_int_distribution<std::int64_t> d(-base.count() / 10, base.count() / 10);
    self->delayed_send(self, base + std::chrono::milliseconds(d(rng)), due_atom::value, idx);
  }
  grant_leases(self);
  maybe_finish(self);
}

std::size_t index_of(self_t self, const caf::actor_addr& a) {
  auto& m = self->state.mailboxes;
  for (std::size_t i = 0; i < m.size(); ++i)
    if (m[i].actor && m[i].actor.address() == a)
      return i;
  return m.size();
}

} // namespace

caf::behavior scheduler_actor(caf::stateful_actor<scheduler_state>* self, scheduler_settings s) {
  auto& st = self->state;
  st.s = std::move(s);
  for (auto& m : st.s.cfg.mailboxes) {
    // scan_emails = false keeps a mailbox in diagnostics but out of scanning.
    if (m.disable_mail_scan || (!m.scan_emails && !st.s.probe))
      continue;
    st.mailboxes.push_back({m, caf::actor{}, false, false, false});
  }
  auto spawn_one = [self](std::size_t idx) {
    auto& st = self->state;
    auto& e = st.mailboxes[idx];
    mailbox_settings ms;
    ms.cfg = e.cfg;
    ms.engine = st.s.cfg.engine;
    ms.io = st.s.io;
    ms.writer = st.s.writer;
    ms.log = st.s.log;
    ms.probe = st.s.probe;
    if (!st.s.matchers.empty())
      ms.matcher = st.s.matchers[std::hash<std::string>{}(e.cfg.user) % st.s.matchers.size()];
    e.actor = spawn_mailbox_actor(self, std::move(ms));
  };
  for (std::size_t i = 0; i < st.mailboxes.size(); ++i)
    spawn_one(i);
  st.remaining = st.mailboxes.size();

  self->set_down_handler([self, spawn_one](caf::down_msg& dm) {
    auto idx = index_of(self, dm.source);
    if (idx >= self->state.mailboxes.size())
      return;
    auto user = self->state.mailboxes[idx].cfg.user;
    bool was_scanning = self->state.mailboxes[idx].scanning;
    self->state.mailboxes[idx].actor = nullptr;
    if (self->state.stopping || !self->state.done.pending())
      return;
    // A crashed mailbox actor: its lease returns, the pass counts as failed, and a fresh
    // actor takes over (it resumes from the last durable checkpoint).
    spawn_one(idx);
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
        for (std::size_t i = 0; i < st.mailboxes.size(); ++i)
          make_due(self, i);
      } else {
        // Spread the first polls over one interval: no thundering herd at start-up.
        auto n = st.mailboxes.size();
        auto interval = std::chrono::milliseconds(std::int64_t{st.s.cfg.engine.poll_interval_s} * 1000);
        for (std::size_t i = 0; i < n; ++i)
          self->delayed_send(self, interval * static_cast<std::int64_t>(i) / static_cast<std::int64_t>(n),
                             due_atom::value, i);
      }
      return st.done;
    },
    [=](due_atom, std::size_t idx) {
      if (idx < self->state.mailboxes.size())
        make_due(self, idx);
    },
    [=](scan_done_atom, scan_result& res) {
      auto idx = index_of(self, self->current_sender() ? caf::actor_cast<caf::actor_addr>(self->current_sender())
                                                       : caf::actor_addr{});
      if (idx >= self->state.mailboxes.size())
        return;
      on_result(self, idx, std::move(res));
    },
    [=](stop_atom) {
      auto& st = self->state;
      st.stopping = true;
      st.queue.clear();
      for (auto& e : st.mailboxes)
        if (e.scanning)
          self->send(e.actor, stop_atom::value);
      maybe_finish(self);
    },
  };
}

} // namespace mscan::actors
