#include "actors/cluster_node.hpp"
#include "actors/shutdown_watchdog.hpp"
#include "actors/inflight_budget.hpp"

#include "actors/cluster_common.hpp"
#include "actors/engine.hpp"
#include "actors/mailbox_actor.hpp"
#include "actors/matcher_actor.hpp"
#include "actors/messages.hpp"
#include "core/rules.hpp"

#include <caf/io/all.hpp>
#include <fmt/format.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include <mutex>
#include <thread>
#include <unordered_map>

namespace mscan::actors {

using namespace mscan::atoms;

namespace {

// How the node actor ended, for run_node (written once, before the actor quits).
struct node_outcome {
  std::mutex m;
  bool joined = false;  // welcomed at least once
  bool bye = false;     // the coordinator ended the cluster: orderly
  bool lost = false;    // the coordinator went away: try to rejoin
  node_error error;     // refused, or the config cannot be used here
  bool failed = false;
};

struct node_state {
  node_options opts;
  std::string node_name;
  caf::actor coord;
  std::shared_ptr<node_outcome> out;
  net::io_runtime* io = nullptr;
  std::shared_ptr<const core::config> cfg;
  std::shared_ptr<inflight_budget> budget;  // this node's mailboxes share it (max_inflight_mb)
  std::filesystem::file_time_type cfg_mtime{};
  std::shared_ptr<core::event_log> log;
  std::vector<caf::actor> matchers;
  std::uint32_t heartbeat_ms = 1000;
  struct slot {
    caf::actor actor;
    caf::actor proxy;  // the coordinator's stand-in that leased it
  };
  std::map<std::string, slot> mailboxes;
  std::unordered_map<caf::actor_addr, std::string> index;
  std::vector<std::pair<std::string, caf::actor>> early;  // leases before the welcome was read
  static inline const char* name = "cluster_node";
};
using node_t = caf::stateful_actor<node_state>*;

void fail(node_t self, int code, std::string message) {
  {
    std::lock_guard lk{self->state.out->m};
    self->state.out->failed = true;
    self->state.out->error = {code, std::move(message)};
  }
  self->quit(caf::exit_reason::user_shutdown);
}

// The coordinator re-reads its config on SIGHUP; a node re-reads the same file when it changed
// (checked at each lease: one stat), so added mailboxes, new passwords and new rules reach it.
// Idle mailbox actors are dropped and made again with the new settings at their next lease.
void reload_if_changed(node_t self) {
  auto& st = self->state;
  std::error_code ec;
  auto mtime = std::filesystem::last_write_time(st.cfg->file, ec);
  if (ec || mtime == st.cfg_mtime)
    return;
  st.cfg_mtime = mtime;
  auto failed = [&](const std::string& why) {  // the running config stays in force
    st.log->write(core::log_level::error, "config_reload_failed", "", st.node_name, "", why);
  };
  auto next = core::load_config(st.cfg->file);
  if (!next)
    return failed(next.error().message);
  auto linker = core::build_linker(*next, std::make_shared<const core::directory>(*next));
  if (!linker)
    return failed(linker.error().message);
  st.cfg = std::make_shared<const core::config>(std::move(next.value()));
  for (auto& m : st.matchers)
    self->send(m, reload_atom::value, *linker);
  for (auto it = st.mailboxes.begin(); it != st.mailboxes.end();) {
    if (it->second.proxy) {
      ++it;
      continue;
    }
    st.index.erase(it->second.actor.address());
    self->demonitor(it->second.actor);
    self->unlink_from(it->second.actor);
    self->send_exit(it->second.actor, caf::exit_reason::user_shutdown);
    it = st.mailboxes.erase(it);
  }
}

void lease(node_t self, const std::string& user, caf::actor proxy) {
  auto& st = self->state;
  if (!st.cfg) {
    st.early.emplace_back(user, std::move(proxy));
    return;
  }
  reload_if_changed(self);
  auto* m = st.cfg->find_mailbox(user);
  if (!m) {
    self->send(proxy, scan_done_atom::value,
               failed_result(user, "internal_error",
                             fmt::format("node {}: the config file {} here has no mailbox '{}'", st.node_name,
                                         st.cfg->file.string(), user)));
    return;
  }
  auto& slot = st.mailboxes[user];
  slot.proxy = std::move(proxy);
  if (!slot.actor) {
    mailbox_settings ms;
    ms.cfg = std::make_shared<const core::mailbox_config>(*m);
    ms.engine = std::shared_ptr<const core::engine_config>(st.cfg, &st.cfg->engine);
    ms.io = st.io;
    ms.matcher = st.matchers[std::hash<std::string>{}(user) % st.matchers.size()];
    ms.writer = st.coord;  // the gate forwards to the coordinator's writer
    ms.health = st.coord;
    ms.log = st.log;
    ms.server_actions = core::has_server_actions(st.cfg->rules, user);
    ms.report_slow = false;
    ms.release_on_close = false;
    ms.budget = st.budget;  // the coordinator's scheduler sees only this node's stand-in
    ms.fetch_text = core::text_needed_by(st.cfg->engine, st.cfg->rules, user).has_value();
    slot.actor = spawn_mailbox_actor(self, std::move(ms));
    self->link_to(slot.actor);  // dies with the node actor (and its connection with it)
    st.index[slot.actor.address()] = user;
  }
  self->send(slot.actor, lease_atom::value);
}

void welcome(node_t self, const std::string& config_file, std::uint32_t heartbeat_ms) {
  auto& st = self->state;
  auto cfg = core::load_config(config_file);
  if (!cfg) {
    fail(self, 2, fmt::format("the coordinator's config cannot be used on this node: {}", cfg.error().message));
    return;
  }
  auto ms = matcher_settings_for(*cfg);
  if (!ms) {
    fail(self, 2, ms.error());
    return;
  }
  st.cfg = std::make_shared<const core::config>(std::move(cfg.value()));
  st.budget = std::make_shared<inflight_budget>(std::uint64_t{st.cfg->engine.max_inflight_mb} << 20);
  std::error_code ec;
  st.cfg_mtime = std::filesystem::last_write_time(st.cfg->file, ec);
  st.log = std::make_shared<core::event_log>(st.cfg->engine);
  st.heartbeat_ms = heartbeat_ms ? heartbeat_ms : 1000;
  auto n = st.cfg->engine.matchers ? st.cfg->engine.matchers : std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < n; ++i) {
    st.matchers.push_back(self->spawn(matcher_actor, *ms, st.coord));
    self->link_to(st.matchers.back());
  }
  {
    std::lock_guard lk{st.out->m};
    st.out->joined = true;
  }
  st.log->write(core::log_level::info, "node_joined", "", st.node_name, "", config_file);
  if (st.opts.on_joined)
    st.opts.on_joined(st.node_name, config_file);
  self->send(self, cl_beat_atom::value);
  for (auto& [user, proxy] : std::exchange(st.early, {}))
    lease(self, user, proxy);
}

caf::behavior node_actor(node_t self, node_options opts, std::string name, caf::actor coord,
                         std::shared_ptr<node_outcome> out, net::io_runtime* io) {
  auto& st = self->state;
  st.opts = std::move(opts);
  st.node_name = std::move(name);
  st.coord = std::move(coord);
  st.out = std::move(out);
  st.io = io;
  // Linked mailbox actors and matchers: their exits are not ours (a crashed mailbox is a down
  // message below); ours reaches them when we quit.
  self->set_exit_handler([](caf::exit_msg&) {});
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    if (dm.source == st.coord.address()) {
      {
        std::lock_guard lk{st.out->m};
        st.out->lost = true;
      }
      if (st.log)
        st.log->write(core::log_level::error, "coordinator_lost", "", st.node_name, "", caf::to_string(dm.reason));
      self->quit(caf::exit_reason::user_shutdown);
      return;
    }
    auto it = st.index.find(dm.source);
    if (it == st.index.end())
      return;
    auto user = it->second;
    st.index.erase(it);
    auto slot = st.mailboxes[user];
    st.mailboxes.erase(user);
    // A crashed mailbox actor: the lease returns as a failed pass, like on a single node.
    if (slot.proxy)
      self->send(slot.proxy, scan_done_atom::value, failed_result(user, "internal_error", caf::to_string(dm.reason)));
  });
  self->monitor(st.coord);
  auto version = st.opts.protocol_version ? st.opts.protocol_version : cluster::protocol_version;
  self->request(st.coord, std::chrono::seconds(10), cl_hello_atom::value, version, st.node_name)
    .then(
      [=](caf::atom_value kind, std::string& a, std::string& b) {
        if (kind != cl_challenge_atom::value) {
          fail(self, 2, fmt::format("the coordinator refused this node: {}", a));
          return;
        }
        const char* secret = std::getenv(a.c_str());
        if (!secret || !*secret) {
          fail(self, 2, fmt::format("the cluster secret is not set: the coordinator's [cluster] secret_env names "
                                    "the environment variable {}, which is empty or unset here",
                                    a));
          return;
        }
        self->request(self->state.coord, std::chrono::seconds(10), cl_join_atom::value, self->state.node_name,
                      cluster::join_proof(secret, b), caf::actor_cast<caf::actor>(self))
          .then(
            [=](caf::atom_value kind, std::string& a, std::uint32_t hb) {
              if (kind != cl_welcome_atom::value)
                fail(self, 2, fmt::format("the coordinator refused this node: {}", a));
              else
                welcome(self, a, hb);
            },
            [=](caf::error& e) { fail(self, 1, "no answer to the join: " + self->system().render(e)); });
      },
      [=](caf::error& e) { fail(self, 1, "no answer to the hello: " + self->system().render(e)); });
  return {
    [=](lease_atom, const std::string& user) {
      lease(self, user, caf::actor_cast<caf::actor>(self->current_sender()));
    },
    [=](slice_atom) -> caf::result<bool> {
      // A mailbox's slice is used up: the coordinator's stand-in asks its scheduler.
      auto& st = self->state;
      auto it = st.index.find(caf::actor_cast<caf::actor_addr>(self->current_sender()));
      if (it == st.index.end() || !st.mailboxes[it->second].proxy)
        return false;
      auto rp = self->make_response_promise<bool>();
      self->request(st.mailboxes[it->second].proxy, caf::infinite, slice_atom::value)
        .then([=](bool others_wait) mutable { rp.deliver(others_wait); },
              [=](caf::error&) mutable { rp.deliver(false); });
      return rp;
    },
    [=](scan_done_atom, scan_result& r) {
      auto& st = self->state;
      auto it = st.index.find(caf::actor_cast<caf::actor_addr>(self->current_sender()));
      if (it == st.index.end())
        return;
      auto& slot = st.mailboxes[it->second];
      if (slot.proxy)
        self->send(slot.proxy, scan_done_atom::value, std::move(r));
      slot.proxy = nullptr;
    },
    [=](stop_atom, const std::string& user) {
      auto it = self->state.mailboxes.find(user);
      if (it != self->state.mailboxes.end())
        self->send(it->second.actor, stop_atom::value);
    },
    [=](cl_beat_atom) {
      self->send(self->state.coord, cl_beat_atom::value, self->state.node_name);
      self->delayed_send(self, std::chrono::milliseconds(self->state.heartbeat_ms), cl_beat_atom::value);
    },
    [=](cl_bye_atom) {
      {
        std::lock_guard lk{self->state.out->m};
        self->state.out->bye = true;
      }
      if (self->state.log)
        self->state.log->write(core::log_level::info, "node_left", "", self->state.node_name, "", "the coordinator finished");
      self->quit(caf::exit_reason::user_shutdown);
      return true;
    },
    [=](cl_node_down_atom) {  // the coordinator declared us dead (we were too slow): rejoin
      auto& st = self->state;
      if (self->current_sender() != caf::actor_cast<caf::strong_actor_ptr>(st.coord))
        return;
      {
        std::lock_guard lk{st.out->m};
        st.out->lost = true;
      }
      if (st.log)
        st.log->write(core::log_level::error, "node_dropped", "", st.node_name, "",
                      "the coordinator declared this node dead (no heartbeat in time); joining again");
      self->quit(caf::exit_reason::user_shutdown);
    },
    [=](stop_atom) {  // local: SIGTERM. The coordinator moves our leases at once.
      self->send(self->state.coord, cl_bye_atom::value, self->state.node_name);
      self->quit(caf::exit_reason::user_shutdown);
    },
  };
}

std::string default_name() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0)
    std::snprintf(host, sizeof host, "node");
  return fmt::format("{}-{}", host, ::getpid());
}

} // namespace

namespace {

// run_node's work on a running actor system; run_node bounds the system's teardown after it.
expected<void, node_error> run_node_in(caf::actor_system& sys, net::io_runtime& io, const node_options& opts) {
  auto name = opts.name.empty() ? default_name() : opts.name;
  auto stopping = [&] { return opts.stop && opts.stop->load(); };
  bool ever_joined = false;
  auto deadline = std::chrono::steady_clock::now();
  for (;;) {
    auto gate = sys.middleman().remote_actor(opts.host, opts.port);
    if (!gate) {
      auto why = fmt::format("cannot reach the coordinator at {}:{}: {}", opts.host, opts.port, sys.render(gate.error()));
      if (!ever_joined)
        return unexpected{node_error{1, why}};
      if (stopping())
        return {};
      if (std::chrono::steady_clock::now() > deadline)
        return unexpected{node_error{1, fmt::format("lost the coordinator and could not rejoin within {} s: {}",
                                                    opts.rejoin_s, why)}};
      std::this_thread::sleep_for(std::chrono::milliseconds(250));  // between connection attempts
      continue;
    }
    auto out = std::make_shared<node_outcome>();
    bool stop_sent = false;
    {
      caf::scoped_actor self{sys};
      auto node = sys.spawn(node_actor, opts, name, *gate, out, &io);
      self->monitor(node);
      bool down = false;
      while (!down) {
        self->receive([&](caf::down_msg&) { down = true; },
                      caf::after(std::chrono::milliseconds(100)) >> [&] {
                        if (stopping() && !stop_sent) {
                          stop_sent = true;
                          self->send(node, stop_atom::value);
                        }
                      });
      }
    }
    gate = caf::actor{};
    std::lock_guard lk{out->m};
    if (out->failed)
      return unexpected{out->error};
    if (out->bye || stop_sent || stopping())
      return {};
    ever_joined = ever_joined || out->joined;
    if (!ever_joined)
      return unexpected{node_error{1, "the coordinator went away before this node joined"}};
    deadline = std::chrono::steady_clock::now() + std::chrono::seconds(opts.rejoin_s);
  }
}

} // namespace

expected<void, node_error> run_node(const node_options& opts) {
  caf::actor_system_config sys_cfg;
  sys_cfg.add_message_types<caf::id_block::mscan>();
  sys_cfg.set("logger.verbosity", caf::atom("quiet"));
  tune_scheduler(sys_cfg);
  sys_cfg.load<caf::io::middleman>();
  net::io_runtime io{1};
  std::optional<node_error> failed;
  shutdown_watchdog watchdog{shutdown_limit, [&] {
    std::fprintf(stderr, "mailscan: node: shutdown_stuck: the actor system did not stop within %lld s; exiting "
                         "without it\n", static_cast<long long>(shutdown_limit.count() / 1000));
    exit_now(opts.on_shutdown_stuck ? opts.on_shutdown_stuck(failed) : 1);
  }};
  {
    caf::actor_system sys{sys_cfg};
    auto res = run_node_in(sys, io, opts);
    if (!res)
      failed = res.error();
    watchdog.arm();  // only the system's teardown is left
  }
  watchdog.disarm();
  if (failed)
    return unexpected{*failed};
  return {};
}

} // namespace mscan::actors
