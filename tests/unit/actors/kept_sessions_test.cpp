// The scheduler's lease accounting for kept sessions, on CAF's deterministic test scheduler
// with stand-in mailboxes (scheduler_settings::spawn_mailbox): the connection bounds hold
// while sessions are kept, released and resumed, a kept slot goes to whoever waits, and
// shutdown logs every kept session out.
#include "actors/scheduler_actor.hpp"

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <catch2/catch.hpp>

#include <map>
#include <memory>

using namespace mscan;
using namespace mscan::atoms;

namespace {

// What the stand-in mailboxes did, as the mail server would see it.
struct server_view {
  std::size_t open = 0, peak = 0;      // connections
  std::map<std::string, int> logins;   // fresh connections per mailbox
  std::map<std::string, int> passes;   // passes per mailbox
  std::map<std::string, int> kept;     // passes that ended with the session kept
  std::string busy;                    // this mailbox finds new mail on every pass
};

// A mailbox that finishes every pass at once and asks to keep its session, like
// mailbox_actor does: scan_done only after the answer; unpark_atom: LOGOUT, then report.
caf::behavior stand_in(caf::event_based_actor* self, std::string user, caf::actor sched,
                       std::shared_ptr<server_view> v) {
  auto connected = std::make_shared<bool>(false);
  return {
    [=](lease_atom) {
      if (!*connected) {
        *connected = true;
        ++v->logins[user];
        v->peak = std::max(v->peak, ++v->open);
      }
      ++v->passes[user];
      std::uint64_t fetched = user == v->busy ? 5 : 0;
      self->request(sched, caf::infinite, park_atom::value, fetched).then([=](bool keep) {
        if (keep) {
          ++v->kept[user];
        } else {
          *connected = false;
          --v->open;
        }
        actors::scan_result r;
        r.user = user;
        r.ok = true;
        self->send(sched, scan_done_atom::value, r);
      });
    },
    [=](unpark_atom) {
      if (!*connected)
        return;
      *connected = false;
      --v->open;
      self->send(sched, unpark_atom::value);
    },
    [=](stop_atom) {},
  };
}

// A mailbox whose pass closes its connection at once and then waits 500 ms for the writer's
// acknowledgement, like mailbox_actor on a paced or slow disk: conn_closed_atom, then
// scan_done.
caf::behavior draining_stand_in(caf::event_based_actor* self, std::string user, caf::actor sched,
                                std::shared_ptr<server_view> v) {
  return {
    [=](lease_atom) {
      ++v->logins[user];
      v->peak = std::max(v->peak, ++v->open);
      ++v->passes[user];
      --v->open;  // LOGOUT done, the batch is with the writer
      self->send(sched, conn_closed_atom::value);
      self->delayed_send(self, std::chrono::milliseconds(500), timeout_atom::value);
    },
    [=](timeout_atom) {
      actors::scan_result r;
      r.user = user;
      r.ok = true;
      self->send(sched, scan_done_atom::value, r);
    },
    [=](stop_atom) {},
  };
}

struct fixture {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::scheduler::test_coordinator* sched = nullptr;
  std::shared_ptr<server_view> view = std::make_shared<server_view>();
  caf::actor scheduler;

  fixture(std::size_t mailboxes, std::uint32_t max_connections, std::uint32_t keep, std::string busy = {},
          bool draining = false) {
    view->busy = std::move(busy);
    cfg.set("scheduler.policy", caf::atom("testing"));
    cfg.add_message_types<caf::id_block::mscan>();
    sys = std::make_unique<caf::actor_system>(cfg);
    sched = &dynamic_cast<caf::scheduler::test_coordinator&>(sys->scheduler());
    actors::scheduler_settings s;
    s.cfg.engine.poll_interval_s = 1;
    s.cfg.engine.max_connections = max_connections;
    s.cfg.engine.max_connections_per_host = max_connections;
    s.cfg.engine.keep_sessions = keep;
    for (std::size_t i = 0; i < mailboxes; ++i) {
      core::mailbox_config m;
      m.user = "box" + std::to_string(i);
      m.host = "127.0.0.1";
      m.port = 143;
      s.cfg.mailboxes.push_back(m);
    }
    auto v = view;
    s.spawn_mailbox = [v, draining](caf::event_based_actor* self, actors::mailbox_settings ms) {
      return self->spawn<caf::monitored>(draining ? draining_stand_in : stand_in, ms.cfg->user,
                                         caf::actor_cast<caf::actor>(self), v);
    };
    scheduler = sys->spawn(actors::scheduler_actor, std::move(s));
    caf::anon_send(scheduler, run_atom::value);
    sched->run();
  }
  ~fixture() {
    caf::anon_send_exit(scheduler, caf::exit_reason::user_shutdown);
    sched->run();
    scheduler = nullptr;
  }
  actors::scheduler_state& state() {
    auto* a = caf::actor_cast<caf::abstract_actor*>(scheduler);
    return static_cast<caf::stateful_actor<actors::scheduler_state>*>(a)->state;
  }
  // Runs the engine for `ms` of simulated time in 10 ms steps.
  void run_for(int ms) {
    for (int t = 0; t < ms; t += 10) {
      sched->advance_time(std::chrono::milliseconds(10));
      sched->run();
    }
  }
};

} // namespace

TEST_CASE("kept sessions: within the budget every mailbox logs in once and is polled on its session",
          "[unit][kept]") {
  fixture f{3, 4, 3};
  f.run_for(5500);
  for (auto& user : {"box0", "box1", "box2"}) {
    INFO(user);
    CHECK(f.view->logins[user] == 1);
    CHECK(f.view->passes[user] >= 4);
    CHECK(f.view->kept[user] == f.view->passes[user]);
  }
  CHECK(f.view->peak == 3);
  CHECK(f.state().in_use == f.view->open);
  // Shutdown: every kept session logs out and the lease count returns to zero.
  caf::anon_send(f.scheduler, stop_atom::value);
  f.run_for(100);
  CHECK(f.view->open == 0);
  CHECK(f.state().in_use == 0);
  CHECK(f.state().kept.empty());
}

TEST_CASE("kept sessions: one connection for two mailboxes — the kept one yields, both are polled every interval",
          "[unit][kept]") {
  fixture f{2, 1, 1};
  f.run_for(6000);
  CHECK(f.view->peak == 1);  // the bound held throughout
  CHECK(f.view->passes["box0"] >= 5);
  CHECK(f.view->passes["box1"] >= 5);
  CHECK(f.state().in_use <= 1);
  CHECK(f.state().in_use == f.view->open);
  CHECK(f.state().releasing == 0);
}

TEST_CASE("kept sessions: more mailboxes than keep_sessions — never more kept than allowed, bounds hold",
          "[unit][kept]") {
  fixture f{6, 4, 2};
  for (int step = 0; step < 60; ++step) {
    f.run_for(100);
    REQUIRE(f.state().kept.size() <= 2);
    REQUIRE(f.view->open <= 4);
    REQUIRE(f.state().in_use == f.view->open + 0);  // every open connection holds a lease
  }
  for (int i = 0; i < 6; ++i)
    CHECK(f.view->passes["box" + std::to_string(i)] >= 4);
}

TEST_CASE("kept sessions: keep_sessions = 0 keeps nothing (a fresh login every poll)", "[unit][kept]") {
  fixture f{2, 4, 0};
  f.run_for(3500);
  CHECK(f.view->logins["box0"] == f.view->passes["box0"]);
  CHECK(f.view->kept.empty());
  CHECK(f.state().in_use == 0);
}

TEST_CASE("kept sessions: when keep_sessions is full the busiest mailbox is the one kept", "[unit][kept]") {
  fixture f{3, 4, 1, "box2"};
  f.run_for(4000);
  REQUIRE(f.state().kept.size() == 1);
  CHECK(f.state().mailboxes[f.state().kept.front()].cfg->user == "box2");
  // box2 took the place once and kept it: one login, every later pass on its session.
  CHECK(f.view->logins["box2"] == 1);
  CHECK(f.view->passes["box2"] - f.view->kept["box2"] == 0);
  CHECK(f.view->logins["box0"] + f.view->logins["box1"] >= 4);  // the quiet ones log in each time
  CHECK(f.view->peak <= 4);
}

TEST_CASE("leases: a pass that only waits for the writer gives its connection slot back at once", "[unit][kept]") {
  fixture f{3, 1, 0, {}, true};
  // One connection; the start-up spread makes box1 due ~1/3 s in, while box0 still waits
  // 500 ms for its acknowledgement: box1 is leased anyway (the slot came back when box0's
  // connection closed), and never two connections at once.
  f.run_for(450);
  CHECK(f.view->passes["box0"] == 1);
  CHECK(f.view->passes["box1"] == 1);
  CHECK(f.state().draining == 2);
  CHECK(f.state().in_use == 0);
  f.run_for(3000);
  for (auto& user : {"box0", "box1", "box2"})
    CHECK(f.view->passes[user] >= 2);
  CHECK(f.view->peak == 1);
  // A stop waits for the draining passes; then nothing is left in use or draining.
  caf::anon_send(f.scheduler, stop_atom::value);
  f.run_for(1000);
  CHECK(f.state().draining == 0);
  CHECK(f.state().in_use == 0);
}
