#pragma once
// A bound on the last step of a shutdown: destroying the CAF actor system.
//
// ~actor_system waits for every detached actor's thread, and that thread waits until the
// last strong reference to its actor is gone. Twice in CI a coordinator whose node had been
// SIGKILLed waited there for good (never reproduced locally; the reference's holder is
// unknown). By then everything is done — passes reported, every batch acknowledged, so
// durable — and only teardown is left, so a process that hangs there is worse than one that
// says so and exits: arm() before the destruction, disarm() after it; if it has not returned
// within `limit`, `on_expire` runs on the watchdog's thread (it logs and ends the process,
// exit_now).
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <mutex>
#include <thread>
#include <utility>

namespace mscan::actors {

// How long tearing the actor system down may take once the work is done (engine and node).
inline constexpr std::chrono::milliseconds shutdown_limit{30'000};

// Ends the process with `rc` at once, what was printed flushed, nothing else run (no
// destructors: the one stuck is why we are here).
[[noreturn]] inline void exit_now(int rc) {
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  std::_Exit(rc);
}

class shutdown_watchdog {
public:
  shutdown_watchdog(std::chrono::milliseconds limit, std::function<void()> on_expire)
      : limit_(limit), on_expire_(std::move(on_expire)) {}
  shutdown_watchdog(const shutdown_watchdog&) = delete;
  shutdown_watchdog& operator=(const shutdown_watchdog&) = delete;
  ~shutdown_watchdog() { disarm(); }

  void arm() {
    if (thread_.joinable())
      return;
    thread_ = std::thread([this] {
      std::unique_lock lk{m_};
      if (!cv_.wait_for(lk, limit_, [this] { return disarmed_; }))
        on_expire_();  // does not return in practice (ends the process)
    });
  }
  void disarm() {
    {
      std::lock_guard lk{m_};
      disarmed_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable())
      thread_.join();
  }

private:
  std::chrono::milliseconds limit_;
  std::function<void()> on_expire_;
  std::mutex m_;
  std::condition_variable cv_;
  bool disarmed_ = false;
  std::thread thread_;
};

} // namespace mscan::actors
