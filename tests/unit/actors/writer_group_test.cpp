// The writer's group commit: capped (writer_settings::max_group_records), so a backlog is
// written in several commits, every batch acknowledged once, in order, and stored; and paced
// (writer_settings::commit_interval), so batches arriving right after a commit share the next.
#include "actors/writer_actor.hpp"
#include "storage/store.hpp"

#include <caf/all.hpp>
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <vector>

#include <unistd.h>

using namespace mscan;

namespace {

// A store in a temporary directory, an actor system and a writer acknowledging to `self`.
struct writer_fixture {
  std::filesystem::path dir = std::filesystem::temp_directory_path() /
                              fmt::format("mscan-writer-{}-{}", ::getpid(),
                                          std::chrono::steady_clock::now().time_since_epoch().count());
  std::shared_ptr<storage::store> store;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<caf::scoped_actor> self;
  caf::actor writer;

  explicit writer_fixture(const actors::writer_settings& ws, bool detached = false) {
    auto db = storage::store::open(dir / "db");
    REQUIRE(db);
    store = std::move(db.value());
    cfg.add_message_types<caf::id_block::mscan>();
    sys = std::make_unique<caf::actor_system>(cfg);
    self = std::make_unique<caf::scoped_actor>(*sys);
    writer = detached ? sys->spawn<caf::detached>(actors::writer_actor, store, ws)
                      : sys->spawn(actors::writer_actor, store, ws);
  }
  ~writer_fixture() {
    if (self && writer)
      (*self)->send_exit(writer, caf::exit_reason::user_shutdown);
    writer = nullptr;
    self.reset();
    sys.reset();
    store.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  // Batch `seq`: `n` messages "<m{seq}-{i}@example>" and the folder's checkpoint after them.
  void send_batch(std::uint64_t seq, int n) {
    actors::matched_batch mb;
    mb.user = "u";
    mb.seq = seq;
    mb.reply_to = caf::actor_cast<caf::actor>(*self);
    for (int i = 0; i < n; ++i) {
      storage::message_record r;
      r.message_id = fmt::format("<m{}-{}@example>", seq, i);
      r.key = "<" + storage::normalise_message_id(r.message_id) + ">";
      r.subject = "s";
      r.sightings = {{"u", "INBOX", 1, static_cast<std::uint32_t>(seq * n + i + 1)}};
      r.users = {"u"};
      mb.records.push_back(std::move(r));
    }
    mb.checkpoints = {{"u", "INBOX", {1, static_cast<std::uint32_t>((seq + 1) * n), 0}}};
    (*self)->send(writer, atoms::write_atom::value, std::move(mb));
  }
  std::vector<std::uint64_t> await_acks(std::size_t n) {
    std::vector<std::uint64_t> acked;
    for (std::size_t i = 0; i < n; ++i)
      (*self)->receive(
        [&](atoms::durable_atom, std::uint64_t seq, std::uint64_t, std::uint64_t, std::vector<actors::server_action>&) {
          acked.push_back(seq);
        },
        [&](atoms::write_failed_atom, std::uint64_t seq, std::string& reason, std::string&) {
          FAIL("batch " << seq << " failed: " << reason);
        },
        caf::after(std::chrono::seconds(10)) >> [&] { FAIL("no acknowledgement"); });
    return acked;
  }
};

} // namespace

TEST_CASE("writer: a backlog larger than max_group_records is committed in parts, every batch acknowledged once",
          "[unit][actors]") {
  actors::writer_settings ws;
  ws.max_group_records = 3;
  writer_fixture f{ws};
  constexpr int batches = 5, per_batch = 2;  // 10 records: at least 4 commits of <= 3
  for (int b = 0; b < batches; ++b)
    f.send_batch(static_cast<std::uint64_t>(b), per_batch);
  CHECK(f.await_acks(batches) == std::vector<std::uint64_t>{0, 1, 2, 3, 4});
  for (int b = 0; b < batches; ++b)
    for (int i = 0; i < per_batch; ++i)
      CHECK(f.store->find_by_message_id(fmt::format("<m{}-{}@example>", b, i)).has_value());
}

TEST_CASE("writer: commits are paced by commit_interval, batches arriving meanwhile share one commit",
          "[unit][actors]") {
  actors::writer_settings ws;
  ws.metrics = std::make_shared<actors::engine_metrics>();
  ws.commit_interval = std::chrono::milliseconds(300);
  writer_fixture f{ws};
  // An idle writer commits at once; the three batches right after wait for the interval
  // and go into one commit together: two commits (fsyncs) for four batches.
  f.send_batch(0, 1);
  CHECK(f.await_acks(1) == std::vector<std::uint64_t>{0});
  for (std::uint64_t s = 1; s <= 3; ++s)
    f.send_batch(s, 1);
  CHECK(f.await_acks(3) == std::vector<std::uint64_t>{1, 2, 3});
  const auto st = ws.metrics->snapshot();
  CHECK(st.writes == 2);
  CHECK(st.writer_pending_batches == 3);
  for (int s = 0; s <= 3; ++s)
    CHECK(f.store->find_by_message_id(fmt::format("<m{}-0@example>", s)).has_value());
}

TEST_CASE("writer: told to exit with a paced commit still due, it commits first and the system then shuts down",
          "[unit][actors]") {
  // Detached, as in the engine. Quitting at once used to drop the batch waiting for the paced
  // commit: neither written nor acknowledged.
  actors::writer_settings ws;
  ws.commit_interval = std::chrono::milliseconds(300);
  writer_fixture f{ws, true};
  f.send_batch(0, 1);
  CHECK(f.await_acks(1) == std::vector<std::uint64_t>{0});
  f.send_batch(1, 1);  // waits for the interval
  (*f.self)->send_exit(f.writer, caf::exit_reason::user_shutdown);
  CHECK(f.await_acks(1) == std::vector<std::uint64_t>{1});
  f.send_batch(2, 1);  // after the exit: the writer is gone, nothing waits for it
  f.writer = nullptr;
  const auto t0 = std::chrono::steady_clock::now();
  f.self.reset();
  f.sys.reset();
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
  CHECK(f.store->find_by_message_id("<m1-0@example>").has_value());
  CHECK_FALSE(f.store->find_by_message_id("<m2-0@example>").has_value());
}
