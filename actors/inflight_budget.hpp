#pragma once
// The engine-wide bound on fetched bytes not yet durable (mailbox -> matcher -> writer).
// Per-mailbox credit (max_inflight_batches) bounds each pipeline; this bounds their sum, so
// memory stays flat however many connections run and however slow the disk is: a mailbox
// whose batches went past the budget fetches nothing more (its session stays paused) until
// the writer's acknowledgements bring the total back under it; then every waiting mailbox is
// sent budget_atom and looks again.
#include "actors/messages.hpp"

#include <caf/actor.hpp>
#include <caf/send.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

namespace mscan::actors {

class inflight_budget {
 public:
  explicit inflight_budget(std::uint64_t limit_bytes) : limit_(limit_bytes) {}
  std::uint64_t used() const {
    std::lock_guard lock{mu_};
    return used_;
  }

  // One mailbox's share: the bytes of its unacknowledged batches, released by
  // acknowledgement and, whatever happens to the pass or the actor, on destruction.
  class holder {
   public:
    explicit holder(std::shared_ptr<inflight_budget> b = nullptr) : b_(std::move(b)) {}
    holder(const holder&) = delete;
    holder& operator=(const holder&) = delete;
    ~holder() {
      for (auto& [seq, bytes] : held_)
        give_back(bytes);
    }
    void attach(std::shared_ptr<inflight_budget> b) {
      if (held_.empty())
        b_ = std::move(b);
    }
    void take(std::uint64_t seq, std::uint64_t bytes) {
      if (!b_)
        return;
      held_[seq] += bytes;
      std::lock_guard lock{b_->mu_};
      b_->used_ += bytes;
    }
    void release(std::uint64_t seq) {
      auto it = held_.find(seq);
      if (it == held_.end())
        return;
      auto bytes = it->second;
      held_.erase(it);
      give_back(bytes);
    }
    // Room to fetch more? Also while nothing at all is in flight, so a budget smaller than
    // one batch slows the engine to a batch at a time but never stalls it. (Mailboxes that
    // found room fetch their next batch at the same time: the bound is the budget plus one
    // batch per connection.)
    bool has_room() const {
      if (!b_)
        return true;
      std::lock_guard lock{b_->mu_};
      return b_->room();
    }
    // No room: `who` gets budget_atom once there is (true); false = there is room now.
    bool wait(const caf::actor& who) {
      if (!b_)
        return false;
      std::lock_guard lock{b_->mu_};
      if (b_->room())
        return false;
      b_->waiters_.push_back(who);
      return true;
    }

   private:
    void give_back(std::uint64_t bytes) {
      if (!b_)
        return;
      std::vector<caf::actor> wake;
      {
        std::lock_guard lock{b_->mu_};
        b_->used_ -= std::min(bytes, b_->used_);
        if (b_->room())
          wake.swap(b_->waiters_);
      }
      for (auto& a : wake)
        caf::anon_send(a, atoms::budget_atom::value);
    }
    std::shared_ptr<inflight_budget> b_;
    std::map<std::uint64_t, std::uint64_t> held_;
  };

 private:
  bool room() const { return limit_ == 0 || used_ < limit_ || used_ == 0; }
  mutable std::mutex mu_;
  std::uint64_t limit_;  // 0 = none
  std::uint64_t used_ = 0;
  // Mailboxes paused for room: each at most once (its own flag), so at most one per lease.
  std::vector<caf::actor> waiters_;
};

}  // namespace mscan::actors
