// The writer's group commit is capped (writer_settings::max_group_records): a backlog is
// written in several commits, every batch acknowledged once, in order, and stored.
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

TEST_CASE("writer: a backlog larger than max_group_records is committed in parts, every batch acknowledged once",
          "[unit][actors]") {
  auto dir = std::filesystem::temp_directory_path() /
             fmt::format("mscan-writer-group-{}-{}", ::getpid(),
                         std::chrono::steady_clock::now().time_since_epoch().count());
  auto db = storage::store::open(dir / "db");
  REQUIRE(db);
  std::shared_ptr<storage::store> store{std::move(db.value())};

  caf::actor_system_config cfg;
  cfg.add_message_types<caf::id_block::mscan>();
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  actors::writer_settings ws;
  ws.max_group_records = 3;
  auto writer = sys.spawn(actors::writer_actor, store, ws);

  constexpr int batches = 5, per_batch = 2;  // 10 records: at least 4 commits of <= 3
  for (int b = 0; b < batches; ++b) {
    actors::matched_batch mb;
    mb.user = "u";
    mb.seq = static_cast<std::uint64_t>(b);
    mb.reply_to = caf::actor_cast<caf::actor>(self);
    for (int i = 0; i < per_batch; ++i) {
      storage::message_record r;
      r.message_id = fmt::format("<m{}-{}@example>", b, i);
      r.key = "<" + storage::normalise_message_id(r.message_id) + ">";
      r.subject = "s";
      r.sightings = {{"u", "INBOX", 1, static_cast<std::uint32_t>(b * per_batch + i + 1)}};
      r.users = {"u"};
      mb.records.push_back(std::move(r));
    }
    mb.checkpoints = {{"u", "INBOX", {1, static_cast<std::uint32_t>((b + 1) * per_batch), 0}}};
    self->send(writer, atoms::write_atom::value, std::move(mb));
  }
  std::vector<std::uint64_t> acked;
  for (int b = 0; b < batches; ++b)
    self->receive(
      [&](atoms::durable_atom, std::uint64_t seq, std::uint64_t, std::uint64_t, std::vector<actors::server_action>&) {
        acked.push_back(seq);
      },
      [&](atoms::write_failed_atom, std::uint64_t seq, std::string& reason, std::string&) {
        FAIL("batch " << seq << " failed: " << reason);
      },
      caf::after(std::chrono::seconds(10)) >> [&] { FAIL("no acknowledgement"); });
  CHECK(acked == std::vector<std::uint64_t>{0, 1, 2, 3, 4});
  for (int b = 0; b < batches; ++b)
    for (int i = 0; i < per_batch; ++i)
      CHECK(store->find_by_message_id(fmt::format("<m{}-{}@example>", b, i)).has_value());
  self->send_exit(writer, caf::exit_reason::user_shutdown);
  store.reset();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

TEST_CASE("writer: commits are paced by commit_interval, batches arriving meanwhile share one commit",
          "[unit][actors]") {
  auto dir = std::filesystem::temp_directory_path() /
             fmt::format("mscan-writer-pace-{}-{}", ::getpid(),
                         std::chrono::steady_clock::now().time_since_epoch().count());
  auto db = storage::store::open(dir / "db");
  REQUIRE(db);
  std::shared_ptr<storage::store> store{std::move(db.value())};
  caf::actor_system_config cfg;
  cfg.add_message_types<caf::id_block::mscan>();
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  actors::writer_settings ws;
  ws.metrics = std::make_shared<actors::engine_metrics>();
  ws.commit_interval = std::chrono::milliseconds(300);
  auto writer = sys.spawn(actors::writer_actor, store, ws);
  auto send_batch = [&](std::uint64_t seq) {
    actors::matched_batch mb;
    mb.user = "u";
    mb.seq = seq;
    mb.reply_to = caf::actor_cast<caf::actor>(self);
    storage::message_record r;
    r.message_id = fmt::format("<p{}@example>", seq);
    r.key = "<" + storage::normalise_message_id(r.message_id) + ">";
    r.sightings = {{"u", "INBOX", 1, static_cast<std::uint32_t>(seq + 1)}};
    r.users = {"u"};
    mb.records.push_back(std::move(r));
    mb.checkpoints = {{"u", "INBOX", {1, static_cast<std::uint32_t>(seq + 1), 0}}};
    self->send(writer, atoms::write_atom::value, std::move(mb));
  };
  auto await_acks = [&](std::size_t n) {
    std::vector<std::uint64_t> acked;
    for (std::size_t i = 0; i < n; ++i)
      self->receive(
        [&](atoms::durable_atom, std::uint64_t seq, std::uint64_t, std::uint64_t, std::vector<actors::server_action>&) {
          acked.push_back(seq);
        },
        [&](atoms::write_failed_atom, std::uint64_t seq, std::string& reason, std::string&) {
          FAIL("batch " << seq << " failed: " << reason);
        },
        caf::after(std::chrono::seconds(10)) >> [&] { FAIL("no acknowledgement"); });
    return acked;
  };
  // An idle writer commits at once; the three batches right after wait for the interval
  // and go into one commit together: two commits (fsyncs) for four batches.
  send_batch(0);
  CHECK(await_acks(1) == std::vector<std::uint64_t>{0});
  for (std::uint64_t s = 1; s <= 3; ++s) send_batch(s);
  CHECK(await_acks(3) == std::vector<std::uint64_t>{1, 2, 3});
  const auto st = ws.metrics->snapshot();
  CHECK(st.writes == 2);
  CHECK(st.writer_pending_batches == 3);
  self->send_exit(writer, caf::exit_reason::user_shutdown);
  store.reset();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}
