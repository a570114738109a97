// The engine-wide in-flight byte budget: accounting, room, and the wake-up of waiting mailboxes.
#include "actors/inflight_budget.hpp"

#include <caf/all.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <memory>

using namespace mscan;
using mscan::actors::inflight_budget;

TEST_CASE("inflight budget: bytes held until acknowledged or the holder is gone, waiters woken once there is room",
          "[unit][actors]") {
  caf::actor_system_config cfg;
  cfg.add_message_types<caf::id_block::mscan>();
  caf::actor_system sys{cfg};
  caf::scoped_actor waiter{sys};

  auto budget = std::make_shared<inflight_budget>(1000);
  inflight_budget::holder a{budget};
  auto b = std::make_unique<inflight_budget::holder>(budget);

  CHECK(a.has_room());          // nothing in flight
  a.take(1, 5000);              // one batch larger than the budget is allowed...
  CHECK(budget->used() == 5000);
  CHECK_FALSE(b->has_room());   // ...but nothing more until it is durable
  CHECK(b->wait(caf::actor_cast<caf::actor>(waiter)));
  a.release(1);
  CHECK(budget->used() == 0);
  bool woken = false;
  waiter->receive([&](atoms::budget_atom) { woken = true; },
                  caf::after(std::chrono::seconds(5)) >> [] {});
  CHECK(woken);

  b->take(7, 600);
  b->take(8, 600);
  CHECK(budget->used() == 1200);
  CHECK_FALSE(a.has_room());
  a.release(7);                 // not a's batch: nothing changes
  CHECK(budget->used() == 1200);
  b.reset();                    // the mailbox actor is gone: its share returns
  CHECK(budget->used() == 0);
  CHECK(a.has_room());

  inflight_budget::holder none;  // no budget (max_inflight_mb = 0 path): always room
  none.take(1, 1u << 30);
  CHECK(none.has_room());
  CHECK_FALSE(none.wait(caf::actor_cast<caf::actor>(waiter)));
}
