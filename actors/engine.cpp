#include "actors/engine.hpp"

#include "actors/matcher_actor.hpp"
#include "actors/messages.hpp"
#include "actors/scheduler_actor.hpp"
#include "actors/writer_actor.hpp"

#include <fmt/format.h>

#include <thread>

namespace mscan::actors {

using namespace mscan::atoms;

expected<engine_report, std::string> run_engine(const core::config& cfg, const engine_options& opts) {
  std::error_code ec;
  std::filesystem::create_directories(cfg.engine.data_dir, ec);
  auto opened = storage::store::open(cfg.engine.data_dir);
  if (!opened)
    return unexpected{fmt::format("cannot open the store in {}: {}", cfg.engine.data_dir.string(),
                                  opened.error().message)};
  std::shared_ptr<storage::store> db = std::move(opened.value());

  caf::actor_system_config sys_cfg;
  sys_cfg.add_message_types<caf::id_block::mscan>();
  sys_cfg.set("logger.verbosity", caf::atom("quiet"));
  engine_report report;
  // The io runtime outlives the actor system: actors own connections, and connections only
  // hold weak references to actors, so the system can shut down first.
  net::io_runtime io{1};
  {
    caf::actor_system sys{sys_cfg};
    auto writer = sys.spawn<caf::detached>(writer_actor, db);
    auto dir = std::make_shared<const core::directory>(cfg);
    matcher_settings ms{dir, {}};
    ms.parse.strip_subaddress = cfg.engine.strip_subaddress;
    auto n = cfg.engine.matchers ? cfg.engine.matchers : std::max(1u, std::thread::hardware_concurrency());
    std::vector<caf::actor> matchers;
    for (unsigned i = 0; i < n; ++i)
      matchers.push_back(sys.spawn(matcher_actor, ms, writer));
    auto log = std::make_shared<core::event_log>(cfg.engine);
    log->write(core::log_level::info, "run_started", "", "", "",
               fmt::format("mailboxes={} once={}", cfg.mailboxes.size(), opts.once));
    scheduler_settings ss{cfg, &io, writer, matchers, opts.once, log};
    auto sched = sys.spawn(scheduler_actor, std::move(ss));
    {
      caf::scoped_actor self{sys};
      self->send(sched, run_atom::value);
      bool done = false, stop_sent = false;
      while (!done) {
        self->receive(
          [&](run_summary& s) {
            for (auto& r : s.results)
              report.passes.push_back({r.user, r.ok, r.reason, r.detail, r.fetched, r.new_messages, r.new_sightings});
            done = true;
          },
          [&](caf::error&) { done = true; },
          caf::after(std::chrono::milliseconds(100)) >> [&] {
            if (opts.stop && opts.stop->load() && !stop_sent) {
              stop_sent = true;
              self->send(sched, stop_atom::value);
            }
          });
      }
      // Flush: every batch sent to the writer was acknowledged before the passes finished;
      // a final synchronous round trip makes sure the last state writes are applied too.
      self->request(writer, caf::infinite, state_atom::value, std::string{}).receive(
        [](storage::mailbox_state&) {}, [](caf::error&) {});
      for (auto& m : matchers)
        self->send_exit(m, caf::exit_reason::user_shutdown);
      self->send_exit(sched, caf::exit_reason::user_shutdown);
      self->send_exit(writer, caf::exit_reason::user_shutdown);
    }
    matchers.clear();
    writer = nullptr;
    sched = nullptr;
  }
  report.messages_in_store = db->message_count();
  return report;
}

} // namespace mscan::actors
