#include "actors/cluster_coordinator.hpp"
#include "common/text.hpp"

#include <fmt/format.h>

#include <unistd.h>

#include <chrono>
#include <unordered_map>

namespace mscan::actors {

using namespace mscan::atoms;

namespace {

using clock = std::chrono::steady_clock;


struct member {
  std::string name;
  caf::actor actor;  // the node's cluster_node actor
  caf::node_id nid;
  clock::time_point last_beat;
  std::int64_t joined = 0;
};

struct coordinator_state {
  coordinator_settings s;
  caf::actor writer, health;
  std::shared_ptr<core::event_log> log;
  std::map<std::string, member> members;         // live nodes by name
  std::map<std::string, std::string> challenges;  // node id -> nonce of its pending join
  std::unordered_map<caf::actor_addr, caf::actor> proxies;  // one stand-in per mailbox
  cluster::membership file;
  // min_nodes gates the start only: once reached, a node dying does not stop the others.
  bool quorum_reached = false;
  static inline const char* name = "cluster_coordinator";
};
using coord_t = caf::stateful_actor<coordinator_state>*;

void log_line(const std::shared_ptr<core::event_log>& log, core::log_level lvl, std::string_view event,
              std::string_view node, const std::string& detail, std::string_view user = {}) {
  if (log)
    log->write(lvl, event, std::string{user}, std::string{node}, "", detail);
}

void write_file(coord_t self) {
  auto& st = self->state;
  auto& f = st.file;
  f.coordinator_pid = ::getpid();
  f.updated = now_unix();
  std::vector<cluster::node_record> next;
  for (auto& [name, m] : st.members)
    next.push_back({name, "up", m.joined, m.joined, ""});
  for (auto& n : f.nodes)
    if (n.state != "up" && !st.members.count(n.name) && next.size() < st.members.size() + 64)
      next.push_back(n);
  f.nodes = std::move(next);
  if (!cluster::write_membership(st.s.data_dir, f))
    log_line(st.log, core::log_level::error, "cluster_state_write_failed", "",
             cluster::membership_file(st.s.data_dir).string());
}

void broadcast(coord_t self, const caf::message& msg) {
  for (auto& [addr, p] : self->state.proxies)
    self->send(p, msg);
}

// A node is gone: died ("down", an error) or shut down in order ("left"). Its leases move.
void declare_down(coord_t self, const std::string& name, const std::string& why, bool left = false) {
  auto& st = self->state;
  auto it = st.members.find(name);
  if (it == st.members.end())
    return;
  self->demonitor(it->second.actor);
  // A node declared dead may only be hung: told so, it drops its passes and joins again as
  // a new member instead of writing into a cluster that forgot it.
  if (!left)
    self->send(it->second.actor, cl_node_down_atom::value);
  auto joined = it->second.joined;
  st.members.erase(it);
  st.file.nodes.insert(st.file.nodes.begin(), {name, left ? "left" : "down", joined, now_unix(), why});
  log_line(st.log, left ? core::log_level::info : core::log_level::error, left ? "node_left" : "node_down", name,
           why + "; its mailboxes are reassigned");
  write_file(self);
  broadcast(self, caf::make_message(cl_node_down_atom::value, name));
}

// The member a message came from, or null: the gate serves members only, so a node that was
// declared dead (or never joined) cannot write, even if its connection is still open.
const member* member_of_sender(coord_t self) {
  auto& src = self->current_sender();
  if (!src)
    return nullptr;
  for (auto& [name, m] : self->state.members)
    if (m.nid == src->node())
      return &m;
  return nullptr;
}

bool is_local(coord_t self) {
  auto& src = self->current_sender();
  return src && src->node() == self->node();
}

caf::behavior coordinator_actor(coord_t self, coordinator_settings s, caf::actor writer, caf::actor health,
                                std::shared_ptr<core::event_log> log) {
  auto& st = self->state;
  st.s = std::move(s);
  st.writer = std::move(writer);
  st.health = std::move(health);
  st.log = std::move(log);
  st.file.coordinator_running = true;
  // What the last coordinator left: its nodes are not members of this one until they rejoin
  // (they do, with the same names, so the owners are the same as before the restart).
  if (auto prev = cluster::read_membership(st.s.data_dir)) {
    for (auto& n : prev->nodes) {
      if (n.state == "up") {
        n.state = "down";
        n.detail = "the coordinator restarted; waiting for the node to rejoin";
        n.changed = now_unix();
      }
      st.file.nodes.push_back(n);
    }
  }
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    if (st.proxies.erase(dm.source))
      return;
    for (auto& [name, m] : st.members)
      if (m.actor.address() == dm.source) {
        auto n = name;  // declare_down erases the entry
        declare_down(self, n, "connection lost (" + caf::to_string(dm.reason) + ")");
        return;
      }
  });
  self->send(self, timeout_atom::value);
  return {
    // --- membership ---
    [=](cl_hello_atom, std::uint32_t version, const std::string& name) -> caf::message {
      auto& st = self->state;
      if (version != cluster::protocol_version) {
        auto why = fmt::format("incompatible cluster protocol version: node '{}' speaks version {}, the "
                               "coordinator version {}; run the same mailscan release on every node",
                               name, version, cluster::protocol_version);
        log_line(st.log, core::log_level::error, "node_refused", name, why);
        return caf::make_message(cl_refused_atom::value, why, std::string{});
      }
      auto& src = self->current_sender();
      if (!src)
        return caf::make_message(cl_refused_atom::value, std::string{"anonymous hello"}, std::string{});
      if (st.challenges.size() > 1024)
        st.challenges.clear();  // bounded: joins still in progress simply retry
      auto nonce = cluster::random_nonce();
      st.challenges[caf::to_string(src->node())] = nonce;
      return caf::make_message(cl_challenge_atom::value, st.s.secret_env, nonce);
    },
    [=](cl_join_atom, const std::string& name, const std::string& proof, caf::actor node) -> caf::message {
      auto& st = self->state;
      auto& src = self->current_sender();
      auto it = src ? st.challenges.find(caf::to_string(src->node())) : st.challenges.end();
      if (it == st.challenges.end())
        return caf::make_message(cl_refused_atom::value, std::string{"join without hello"}, std::uint32_t{0});
      auto nonce = it->second;
      st.challenges.erase(it);
      if (!cluster::same_proof(proof, cluster::join_proof(st.s.secret, nonce))) {
        auto why = fmt::format("wrong cluster secret: node '{}' does not know the value of {}", name,
                               st.s.secret_env);
        log_line(st.log, core::log_level::error, "node_refused", name, why);
        return caf::make_message(cl_refused_atom::value, why, std::uint32_t{0});
      }
      if (name.empty() || !node)
        return caf::make_message(cl_refused_atom::value, std::string{"a node needs a name and an actor"}, std::uint32_t{0});
      if (st.members.count(name))  // a restarted node that rejoined before its old self timed out
        declare_down(self, name, "replaced by a new node of the same name");
      self->monitor(node);
      st.members[name] = member{name, node, src->node(), clock::now(), now_unix()};
      st.quorum_reached = st.quorum_reached || st.members.size() >= st.s.min_nodes;
      log_line(st.log, core::log_level::info, "node_joined", name, fmt::format("{} node(s)", st.members.size()));
      write_file(self);
      broadcast(self, caf::make_message(cl_node_up_atom::value));
      return caf::make_message(cl_welcome_atom::value, st.s.config_file.string(), st.s.heartbeat_ms);
    },
    [=](cl_bye_atom, const std::string& name) {  // a node shutting down in order (SIGTERM)
      auto* m = member_of_sender(self);
      if (m && m->name == name)
        declare_down(self, name, "shut down", true);
    },
    [=](cl_beat_atom, const std::string& name) {
      auto& st = self->state;
      auto it = st.members.find(name);
      if (it != st.members.end() && self->current_sender() && it->second.nid == self->current_sender()->node())
        it->second.last_beat = clock::now();
    },
    [=](timeout_atom) {
      auto& st = self->state;
      auto now = clock::now();
      std::vector<std::string> hung;
      for (auto& [name, m] : st.members)
        if (now - m.last_beat > std::chrono::milliseconds(st.s.node_timeout_ms))
          hung.push_back(name);
      for (auto& name : hung)
        declare_down(self, name, fmt::format("no heartbeat for {} ms", st.s.node_timeout_ms));
      self->delayed_send(self, std::chrono::milliseconds(std::max<std::uint32_t>(50, st.s.heartbeat_ms / 2)),
                         timeout_atom::value);
    },
    [=](cl_owner_atom, const std::string& user) -> caf::message {
      auto& st = self->state;
      std::vector<std::string> names;
      names.reserve(st.members.size());
      for (auto& [name, m] : st.members)
        names.push_back(name);
      auto owner = cluster::owner_of(user, names);
      if (owner.empty() || !is_local(self) || !st.quorum_reached)
        return caf::make_message(caf::actor{}, std::string{});
      return caf::make_message(st.members[owner].actor, owner);
    },
    [=](caf::add_atom, caf::actor proxy) {
      if (!is_local(self) || !proxy)
        return;
      self->monitor(proxy);
      self->state.proxies[proxy.address()] = proxy;
    },
    [=](caf::publish_atom, const std::string& listen) {
      if (!is_local(self))
        return;
      self->state.file.listen = listen;
      write_file(self);
    },
    // --- the gate: what mailbox and matcher actors on the nodes send to "the writer" and
    //     "the health actor" ---
    [=](write_atom a, matched_batch& b) {
      if (!member_of_sender(self))
        return;  // never acknowledged: the mailbox's new owner fetches it again
      self->send(self->state.writer, a, std::move(b));
    },
    [=](checkpoints_atom a, const std::string& user) -> caf::result<caf::message> {
      if (!member_of_sender(self) && !is_local(self))
        return caf::make_error(caf::sec::request_receiver_down);
      return self->delegate(self->state.writer, a, user);
    },
    [=](state_atom a, const std::string& user) -> caf::result<caf::message> {
      if (!member_of_sender(self) && !is_local(self))
        return caf::make_error(caf::sec::request_receiver_down);
      return self->delegate(self->state.writer, a, user);
    },
    [=](state_atom a, scan_result& r) {
      if (member_of_sender(self))
        self->send(self->state.health, a, std::move(r));
    },
    [=](flush_atom) { return true; },  // a barrier: everything received before is forwarded
    [=](cl_bye_atom) -> caf::result<bool> {
      // Orderly end: every node is told to shut down and answers (so the message is not lost
      // in a socket buffer when this process exits); a node that does not answer in 2 s is
      // left to notice the closed connection.
      auto& st = self->state;
      auto rp = self->make_response_promise<bool>();
      auto pending = std::make_shared<std::size_t>(st.members.size());
      st.file.coordinator_running = false;
      for (auto& [name, m] : st.members)
        st.file.nodes.push_back({name, "left", m.joined, now_unix(), "the coordinator finished"});
      auto members = std::move(st.members);
      st.members.clear();
      write_file(self);
      if (members.empty())
        rp.deliver(true);
      for (auto& [name, m] : members) {
        self->demonitor(m.actor);
        auto answered = [=]() mutable {
          if (--*pending == 0)
            rp.deliver(true);
        };
        self->request(m.actor, std::chrono::seconds(2), cl_bye_atom::value)
          .then([answered](bool) mutable { answered(); }, [answered](caf::error&) mutable { answered(); });
      }
      return rp;
    },
  };
}

// --- the per-mailbox stand-in --------------------------------------------------------------

struct proxy_state {
  std::string user;
  caf::actor scheduler, coord;
  std::shared_ptr<core::event_log> log;
  bool leased = false;
  bool stopping = false;
  caf::actor owner;  // the node scanning it under the current lease
  std::string owner_name;
  std::uint64_t gen = 0;  // answers to an older owner question are ignored
  std::chrono::milliseconds grace{0};  // before a lease moves off a dead node
  clock::time_point not_before{};
  static inline const char* name = "cluster_mailbox";
};
using proxy_t = caf::stateful_actor<proxy_state>*;

void give_back(proxy_t self, scan_result r) {
  auto& st = self->state;
  st.leased = false;
  st.stopping = false;
  st.owner = nullptr;
  st.owner_name.clear();
  ++st.gen;
  self->send(st.scheduler, scan_done_atom::value, std::move(r));
}

// Passes the lease to whichever node owns the mailbox now; with no node, waits for one.
void dispatch(proxy_t self) {
  auto& st = self->state;
  st.owner = nullptr;
  st.owner_name.clear();
  auto g = ++st.gen;
  if (st.stopping) {
    give_back(self, failed_result(st.user, "stopped", "shutdown requested"));
    return;
  }
  self->request(st.coord, caf::infinite, cl_owner_atom::value, st.user)
    .then([=](caf::actor& node, std::string& name) {
      auto& st = self->state;
      if (!st.leased || g != st.gen || !node)
        return;  // stale, or no node yet: cl_node_up_atom retries
      st.owner = std::move(node);
      st.owner_name = std::move(name);
      self->send(st.owner, lease_atom::value, st.user);
    });
}

caf::behavior mailbox_proxy(proxy_t self, std::string user, caf::actor scheduler, caf::actor coord,
                            std::shared_ptr<core::event_log> log, std::chrono::milliseconds grace) {
  auto& st = self->state;
  st.grace = grace;
  st.user = std::move(user);
  st.scheduler = std::move(scheduler);
  st.coord = std::move(coord);
  st.log = std::move(log);
  return {
    [=](lease_atom) {
      if (self->state.leased)
        return;
      self->state.leased = true;
      dispatch(self);
    },
    [=](slice_atom) -> caf::result<bool> {
      // Fairness across the cluster: the scheduler knows who waits for this lease's slot;
      // it answers the stand-in it leased to, so the stand-in asks on the node's behalf.
      auto rp = self->make_response_promise<bool>();
      self->request(self->state.scheduler, caf::infinite, slice_atom::value)
        .then([=](bool others_wait) mutable { rp.deliver(others_wait); },
              [=](caf::error&) mutable { rp.deliver(false); });
      return rp;
    },
    [=](scan_done_atom, scan_result& r) {
      auto& st = self->state;
      auto& src = self->current_sender();
      if (!st.leased || !st.owner || !src || caf::actor_cast<caf::actor_addr>(src) != st.owner.address())
        return;  // a node that lost the mailbox (declared dead) reporting late
      give_back(self, std::move(r));
    },
    [=](cl_node_down_atom, const std::string& name) {
      auto& st = self->state;
      if (!st.leased || st.owner_name != name)
        return;
      log_line(st.log, core::log_level::warning, "mailbox_reassigned", name,
               "the node scanning it is gone; the pass restarts on another node from the last durable checkpoint",
               st.user);
      // The dead node's server connection closes with its process, but the server may not
      // have noticed yet: the lease moves after a short grace so the server never sees one
      // connection too many.
      st.owner = nullptr;
      st.owner_name.clear();
      ++st.gen;
      st.not_before = clock::now() + st.grace;
      self->delayed_send(self, st.grace, cl_node_up_atom::value);
    },
    [=](cl_node_up_atom) {
      auto& st = self->state;
      if (st.leased && !st.owner && clock::now() >= st.not_before)
        dispatch(self);
    },
    [=](stop_atom) {
      auto& st = self->state;
      if (!st.leased)
        return;
      st.stopping = true;
      if (st.owner)
        self->send(st.owner, stop_atom::value, st.user);
      else
        give_back(self, failed_result(st.user, "stopped", "shutdown requested"));
    },
  };
}

} // namespace

void cluster_hooks::configure(caf::actor_system_config& cfg) { cfg.load<caf::io::middleman>(); }

std::string cluster_hooks::start(caf::actor_system& sys, caf::actor writer, caf::actor health,
                                 std::shared_ptr<core::event_log> log, scheduler_settings& ss) {
  sys_ = &sys;
  coordinator_ = sys.spawn(coordinator_actor, settings, std::move(writer), std::move(health), log);
  // reuse = SO_REUSEADDR: a restarted coordinator gets its port back despite TIME_WAIT.
  auto port = sys.middleman().publish(coordinator_, settings.port, settings.host.c_str(), true);
  if (!port) {
    caf::anon_send_exit(coordinator_, caf::exit_reason::user_shutdown);
    coordinator_ = nullptr;
    return fmt::format("cannot listen on {}:{}: {}", settings.host, settings.port, sys.render(port.error()));
  }
  auto listen = fmt::format("{}:{}", settings.host, *port);
  caf::scoped_actor{sys}->send(coordinator_, caf::publish_atom::value, listen);  // a local sender
  if (log)
    log->write(core::log_level::info, "cluster_listening", "", listen, "", "");
  if (settings.on_listening)
    settings.on_listening(settings.host, *port);
  // Long enough for a loaded server to see the dead node's connections close and reap their
  // sessions (a 200 ms grace let dovecot count one session too many in 6 of 33 kill tests under
  // CPU load); not tied to the heartbeat, which only says how soon the node is known dead.
  const auto grace = std::chrono::milliseconds(1000);
  ss.spawn_mailbox = [coord = coordinator_, log, grace](caf::event_based_actor* sched, mailbox_settings ms) {
    auto p = sched->spawn<caf::monitored>(mailbox_proxy, ms.cfg->user, caf::actor_cast<caf::actor>(sched), coord,
                                          log, grace);
    sched->send(coord, caf::add_atom::value, p);
    return p;
  };
  return {};
}

void cluster_hooks::finish(caf::scoped_actor& self) {
  if (!coordinator_)
    return;
  self->request(coordinator_, caf::infinite, flush_atom::value).receive([](bool) {}, [](caf::error&) {});
  self->request(coordinator_, std::chrono::seconds(5), cl_bye_atom::value).receive([](bool) {}, [](caf::error&) {});
  sys_->middleman().unpublish(coordinator_, 0);
  self->send_exit(coordinator_, caf::exit_reason::user_shutdown);
  coordinator_ = nullptr;
}

} // namespace mscan::actors
