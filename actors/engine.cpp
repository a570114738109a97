#include "actors/engine.hpp"

#include "actors/cluster_coordinator.hpp"
#include "actors/health_actor.hpp"
#include "actors/matcher_actor.hpp"
#include "actors/messages.hpp"
#include "actors/scheduler_actor.hpp"
#include "actors/shutdown_watchdog.hpp"
#include "actors/token_actor.hpp"
#include "core/oauth_token.hpp"
#include "core/rules.hpp"
#include "actors/writer_actor.hpp"

#include <fmt/format.h>

#include <thread>

namespace mscan::actors {

using namespace mscan::atoms;

namespace {

pass_result to_pass(const scan_result& r) {
  pass_result p{.user = r.user,
                .ok = r.ok,
                .reason = r.reason,
                .detail = r.detail,
                .fetched = r.fetched,
                .new_messages = r.new_messages,
                .new_sightings = r.new_sightings,
                .capabilities = r.capabilities,
                .folders = {}};
  for (std::size_t i = 0; i < r.folder_names.size() && i < r.folder_counts.size(); ++i)
    p.folders.push_back({r.folder_names[i], r.folder_counts[i]});
  for (std::size_t i = 0; i + 1 < r.server_id.size(); i += 2)
    p.server_id.emplace_back(r.server_id[i], r.server_id[i + 1]);
  return p;
}

} // namespace

void tune_scheduler(caf::actor_system_config& sys_cfg) {
  // CAF starts max(cores, 4) workers, and an idle worker polls with 50 us sleeps 500 times
  // before it blocks. On a 2-core machine shared with the mail server both only burn CPU
  // (measured: ~10% of the engine's CPU in nanosleep and context switches): one worker per
  // core but one, since the network thread and the detached writer are busy as well (2 cores:
  // one worker took 12-17% less CPU per message than two, which mostly woke each other), and
  // idle workers block at once (woken by the next message sent to them).
  const auto cores = std::max(1u, std::thread::hardware_concurrency());
  sys_cfg.set("scheduler.max-threads", static_cast<size_t>(std::max(1u, cores - 1)));
  sys_cfg.set("work-stealing.moderate-poll-attempts", size_t{0});
}

expected<engine_report, std::string> run_engine(const core::config& cfg, const engine_options& opts) {
  const bool probe = opts.mode == engine_mode::probe;
  // Before anything starts: a missing or wrong secrets key is a start-up error.
  auto oauth = core::resolve_oauth_secrets(cfg);
  if (!oauth)
    return unexpected{fmt::format("config: {}", oauth.error())};
  std::shared_ptr<storage::store> db;
  if (!probe) {
    std::error_code ec;
    std::filesystem::create_directories(cfg.engine.data_dir, ec);
    auto opened = storage::store::open(cfg.engine.data_dir);
    if (!opened)
      return unexpected{fmt::format("cannot open the store in {}: {}", cfg.engine.data_dir.string(),
                                    opened.error().message)};
    db = std::move(opened.value());
  }

  caf::actor_system_config sys_cfg;
  sys_cfg.add_message_types<caf::id_block::mscan>();
  sys_cfg.set("logger.verbosity", caf::atom("quiet"));
  tune_scheduler(sys_cfg);
  if (opts.cluster)
    opts.cluster->configure(sys_cfg);
  engine_report report;
  // The io runtime outlives the actor system: actors own connections, and connections only
  // hold weak references to actors, so the system can shut down first.
  net::io_runtime io{cfg.engine.io_threads};
  auto log = std::make_shared<core::event_log>(cfg.engine);
  shutdown_watchdog watchdog{shutdown_limit, [&] {
    log->write(core::log_level::error, "shutdown_stuck", "", "", "",
               fmt::format("the actor system did not stop within {} s; exiting without it (every "
                           "acknowledged batch is durable)", shutdown_limit.count() / 1000));
    if (db)
      report.messages_in_store = db->message_count();
    exit_now(opts.on_shutdown_stuck ? opts.on_shutdown_stuck(report) : 1);
  }};
  {
    caf::actor_system sys{sys_cfg};
    // Destroyed right before the system: from here on only teardown is left.
    struct arm_on_exit {
      shutdown_watchdog& w;
      ~arm_on_exit() { w.arm(); }
    } arm{watchdog};
    caf::actor writer;
    caf::actor health;
    std::vector<caf::actor> matchers;
    // One copy of the config for the health actor, the scheduler's entries and the mailbox
    // actors (memory per mailbox: no copy each).
    auto shared_cfg = std::make_shared<const core::config>(cfg);
    if (!probe) {
      health = sys.spawn<caf::detached>(health_actor, db, shared_cfg, log);
      writer = sys.spawn<caf::detached>(writer_actor, db,
                                        writer_settings{cfg.engine.data_dir, cfg.engine.min_free_disk_mb << 20,
                                                        cfg.engine.write_delay_ms, opts.metrics,
                                                        std::chrono::milliseconds(cfg.engine.commit_interval_ms)});
      auto ms = matcher_settings_for(cfg);
      if (!ms)
        return unexpected{ms.error()};
      auto n = cfg.engine.matchers ? cfg.engine.matchers : std::max(1u, std::thread::hardware_concurrency());
      if (opts.cluster)
        n = 0;  // the nodes match
      for (unsigned i = 0; i < n; ++i)
        matchers.push_back(sys.spawn(matcher_actor, *ms, writer));
    }
    // Which fetch path the mailboxes take (core::text_needed_by): the first reason is enough
    // to tell an operator why text is downloaded.
    std::size_t text_path = 0;
    std::string text_why;
    for (auto& m : cfg.mailboxes)
      if (auto why = core::text_needed_by(cfg.engine, cfg.rules, m.user); why && ++text_path == 1)
        text_why = fmt::format(" ({})", *why);
    log->write(core::log_level::info, probe ? "diagnose_started" : "run_started", "", "", "",
               fmt::format("mailboxes={} once={} header_path={} text_path={}{}", cfg.mailboxes.size(), opts.once,
                           cfg.mailboxes.size() - text_path, text_path, text_why));
    // One token actor per credential in use, shared by all of its mailboxes.
    std::map<std::string, caf::actor> token_sources;
    for (auto& c : cfg.oauth_credentials) {
      auto secret = oauth->client_secrets.find(c.name);
      if (secret == oauth->client_secrets.end())
        continue;  // no mailbox uses it
      token_actor_settings ts{c, oauth->key, log};
      ts.cfg.client_secret = secret->second;
      token_sources.emplace(c.name, spawn_token_actor(sys, std::move(ts)));
    }
    {
      caf::scoped_actor self{sys};
      core::config sched_cfg;  // the mailboxes come from shared_cfg; the directory stays in the matchers
      sched_cfg.engine = cfg.engine;
      sched_cfg.rules = cfg.rules;
      // Progress messages only for a caller that shows them (diagnose): each one wakes this
      // thread, once per mailbox.
      scheduler_settings ss{std::move(sched_cfg), &io, writer, matchers, opts.once, log, probe,
                            opts.on_progress ? caf::actor{self} : caf::actor{}, health,
                            probe ? nullptr : opts.metrics};
      ss.mailbox_source = shared_cfg;
      ss.token_sources = token_sources;
      if (!probe)
        for (auto& st : db->mailbox_states())
          if (st.slow || st.consecutive_failures > 0)
            ss.stored.push_back({std::move(st.user), st.slow, st.consecutive_failures});
      if (opts.cluster) {
        if (auto err = opts.cluster->start(sys, writer, health, log, ss); !err.empty()) {
          self->send_exit(writer, caf::exit_reason::user_shutdown);
          self->send_exit(health, caf::exit_reason::user_shutdown);
          return unexpected{err};
        }
      }
      auto sched = sys.spawn(scheduler_actor, std::move(ss));
      self->send(sched, run_atom::value);
      if (!probe) {
        if (opts.metrics) {
          opts.metrics->set_limits(cfg.engine.max_connections, cfg.engine.max_connections_per_host);
          opts.metrics->set_ready(true);
        }
        if (opts.on_store)
          opts.on_store(db);
      }
      bool done = false, stop_sent = false;
      while (!done) {
        self->receive(
          [&](run_summary& s) {
            for (auto& r : s.results)
              report.passes.push_back(to_pass(r));
            done = true;
          },
          [&](progress_atom, scan_result& r, std::size_t n, std::size_t total) {
            if (opts.on_progress)
              opts.on_progress(to_pass(r), n, total);
          },
          [&](caf::error&) { done = true; },
          caf::after(std::chrono::milliseconds(100)) >> [&] {
            if (opts.stop && opts.stop->load() && !stop_sent) {
              stop_sent = true;
              log->write(core::log_level::info, "shutdown_requested", "", "", "", "");
              self->send(sched, stop_atom::value);
            }
            if (opts.reload && opts.reload->exchange(false)) {
              // A broken new config changes nothing: the running one stays in force.
              auto next = core::load_config(cfg.file);
              if (!next) {
                log->write(core::log_level::error, "config_reload_failed", "", "", "", next.error().message);
                return;
              }
              log->set_levels(next->engine.info_logging, next->engine.warning_logging);
              if (opts.metrics && !probe)
                opts.metrics->set_limits(next->engine.max_connections, next->engine.max_connections_per_host);
              if (!matchers.empty()) {
                // A new directory, references and rules for the matchers: built here, swapped in
                // from their next batch — scanning does not stop.
                auto linker = core::build_linker(*next, std::make_shared<const core::directory>(*next));
                if (!linker) {
                  log->write(core::log_level::error, "config_reload_failed", "", "", "", linker.error().message);
                  return;
                }
                for (auto& m : matchers)
                  self->send(m, reload_atom::value, *linker);
              }
              if (opts.on_reload)
                opts.on_reload(*next);
              self->send(sched, reload_atom::value, std::make_shared<const core::config>(std::move(next.value())));
            }
          });
      }
      if (!probe) {
        if (opts.metrics)
          opts.metrics->set_ready(false);
        if (opts.on_store)
          opts.on_store(nullptr);
      }
      if (opts.cluster)
        opts.cluster->finish(self);
      if (writer) {
        // Every batch was acknowledged before the passes finished; one more round trip makes
        // sure the last mailbox-state writes are applied too.
        self->request(writer, caf::infinite, state_atom::value, std::string{}).receive(
          [](storage::mailbox_state&) {}, [](caf::error&) {});
        self->send_exit(writer, caf::exit_reason::user_shutdown);
      }
      if (health) {
        // The last passes' states and notifications are applied before the store closes.
        self->request(health, caf::infinite, flush_atom::value).receive([](bool) {}, [](caf::error&) {});
        self->send_exit(health, caf::exit_reason::user_shutdown);
      }
      for (auto& m : matchers)
        self->send_exit(m, caf::exit_reason::user_shutdown);
      for (auto& [name, t] : token_sources)
        self->send_exit(t, caf::exit_reason::user_shutdown);
      self->send_exit(sched, caf::exit_reason::user_shutdown);
    }
    token_sources.clear();
    matchers.clear();
    writer = nullptr;
    health = nullptr;
  }
  watchdog.disarm();
  if (db)
    report.messages_in_store = db->message_count();
  return report;
}

} // namespace mscan::actors
