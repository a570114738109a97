// shutdown_watchdog: the bound on tearing the actor system down (engine.cpp, `run`).
#include "actors/shutdown_watchdog.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <thread>

using namespace std::chrono_literals;

TEST_CASE("shutdown watchdog: fires once armed past its limit, never when disarmed in time or not armed",
          "[unit][actors]") {
  std::atomic<int> fired{0};
  {
    mscan::actors::shutdown_watchdog w{50ms, [&] { ++fired; }};
    w.arm();
    std::this_thread::sleep_for(300ms);  // a teardown that hangs
  }
  CHECK(fired == 1);
  {
    mscan::actors::shutdown_watchdog w{10s, [&] { ++fired; }};
    w.arm();
    const auto t0 = std::chrono::steady_clock::now();
    w.disarm();  // a teardown that returned: no wait for the limit
    CHECK(std::chrono::steady_clock::now() - t0 < 2s);
  }
  { mscan::actors::shutdown_watchdog w{1ms, [&] { ++fired; }}; }  // an early error return
  CHECK(fired == 1);
}
