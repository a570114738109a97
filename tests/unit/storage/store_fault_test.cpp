// Write failure path: a FileSystem wrapper that fails WAL/SST writes on demand (simulated
// full disk or I/O error), injected through open_options::env.
#include <catch2/catch.hpp>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "storage/store.hpp"
#include "temp_dir.hpp"

using namespace mscan::storage;
using mscan::storage::test::temp_dir;

namespace {

enum class fault { none, no_space, io_error_on_sync };

class faulty_fs;

class faulty_file : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  faulty_file(std::unique_ptr<rocksdb::FSWritableFile> f, const std::atomic<fault>& mode)
      : FSWritableFileOwnerWrapper(std::move(f)), mode_(mode) {}

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                           rocksdb::IODebugContext* dbg) override {
    if (mode_ == fault::no_space) return rocksdb::IOStatus::NoSpace("simulated full disk");
    return FSWritableFileOwnerWrapper::Append(data, o, dbg);
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                           const rocksdb::DataVerificationInfo& info,
                           rocksdb::IODebugContext* dbg) override {
    if (mode_ == fault::no_space) return rocksdb::IOStatus::NoSpace("simulated full disk");
    return FSWritableFileOwnerWrapper::Append(data, o, info, dbg);
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    if (mode_ == fault::io_error_on_sync) return rocksdb::IOStatus::IOError("simulated EIO on fsync");
    return FSWritableFileOwnerWrapper::Sync(o, dbg);
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    if (mode_ == fault::io_error_on_sync) return rocksdb::IOStatus::IOError("simulated EIO on fsync");
    return FSWritableFileOwnerWrapper::Fsync(o, dbg);
  }

 private:
  const std::atomic<fault>& mode_;
};

class faulty_fs : public rocksdb::FileSystemWrapper {
 public:
  faulty_fs() : FileSystemWrapper(rocksdb::FileSystem::Default()) {}
  const char* Name() const override { return "mscan_faulty_fs"; }

  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override {
    auto s = target()->NewWritableFile(f, o, r, dbg);
    if (s.ok()) *r = std::make_unique<faulty_file>(std::move(*r), mode);
    return s;
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext* dbg) override {
    auto s = target()->ReopenWritableFile(f, o, r, dbg);
    if (s.ok()) *r = std::make_unique<faulty_file>(std::move(*r), mode);
    return s;
  }

  std::atomic<fault> mode{fault::none};
};

message_record msg(std::string id, std::string user) {
  message_record m;
  m.message_id = "<" + id + ">";
  m.key = message_key(m.message_id, 0, 0, "", "");
  m.date = 1700000000;
  m.sightings = {{user, "INBOX", 1, 1}};
  m.contacts = {"bob@acme.example"};
  return m;
}

struct faulty_store {
  temp_dir dir;
  std::shared_ptr<faulty_fs> fs = std::make_shared<faulty_fs>();
  std::shared_ptr<rocksdb::Env> env{rocksdb::NewCompositeEnv(fs)};
  std::unique_ptr<store> db;

  faulty_store() {
    open_options o;
    o.env = env;
    auto s = store::open(dir.db(), o);
    if (!s) FAIL("open failed: " << s.error().message);
    db = std::move(*s);
  }
};

void check_nothing_applied(store& db) {
  CHECK(db.message_count() == 1);
  CHECK_FALSE(db.find_by_message_id("<lost@x>"));
  CHECK_FALSE(db.checkpoint("alice", "Lost"));
  CHECK(db.query_messages({}).size() == 1);
  CHECK(db.mailbox_state_of("alice")->messages_tracked == 1);
  CHECK_FALSE(db.mailbox_state_of("zed"));
}

}  // namespace

TEST_CASE("a full disk fails the write whole, and writes resume once space is back",
          "[unit][storage][store][fault]") {
  faulty_store f;
  REQUIRE(f.db->write(std::vector{msg("first@x", "alice")}, {}));

  const std::vector<checkpoint_update> cps = {{"alice", "Lost", {1, 2, 3}}};
  const std::vector<message_record> batch = {msg("lost@x", "zed"), msg("first@x", "zed")};

  // A failed fsync leaves the batch's fate unknown (the bytes may be in the WAL and come back
  // on recovery); a refused append leaves nothing behind.
  bool outcome_known = true;
  SECTION("no space") {
    f.fs->mode = fault::no_space;
    auto r = f.db->write(batch, cps);
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == error::code::no_space);
    check_nothing_applied(*f.db);
    // Still failing while the disk is full.
    auto again = f.db->write(batch, cps);
    REQUIRE_FALSE(again);
    CHECK((again.error().kind == error::code::no_space || again.error().kind == error::code::io_error));
    check_nothing_applied(*f.db);
  }
  SECTION("I/O error on fsync") {
    f.fs->mode = fault::io_error_on_sync;
    outcome_known = false;
    auto r = f.db->write(batch, cps);
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == error::code::io_error);
    check_nothing_applied(*f.db);
    CHECK_FALSE(f.db->put_mailbox_state(mailbox_state{.user = "zed"}));
  }

  f.fs->mode = fault::none;
  auto ok = f.db->write(batch, cps);
  if (!ok) FAIL("write after the fault cleared: " << ok.error().message);
  if (outcome_known) CHECK(ok->new_messages == 1);
  CHECK(f.db->message_count() == 2);
  CHECK(f.db->find_by_message_id("<lost@x>"));
  CHECK(f.db->checkpoint("alice", "Lost"));
  CHECK(f.db->mailbox_state_of("zed")->messages_tracked == 2);
  CHECK(f.db->put_mailbox_state(mailbox_state{.user = "zed"}));
  CHECK(f.db->query_messages({.contact = "bob@acme.example"}).size() == 2);

  // The replayed batch is idempotent, whatever the failed attempt left behind.
  auto replay = f.db->write(batch, cps);
  REQUIRE(replay);
  CHECK(replay->unchanged == 2);
  CHECK(f.db->message_count() == 2);
  CHECK(f.db->mailbox_state_of("zed")->messages_tracked == 2);
}

TEST_CASE("readers keep working while a writer fails and recovers", "[unit][storage][store][fault]") {
  faulty_store f;
  std::atomic<bool> done{false};
  std::atomic<std::size_t> reads{0};
  std::atomic<bool> order_ok{true};
  auto reader = [&] {
    while (!done) {
      auto v = f.db->query_messages({.contact = "bob@acme.example", .limit = 20});
      for (std::size_t i = 1; i < v.size(); ++i)
        if (v[i - 1].date < v[i].date) order_ok = false;
      (void)f.db->message_count();
      (void)f.db->mailbox_states();
      ++reads;
    }
  };
  std::thread r1(reader), r2(reader);
  std::size_t written = 0;
  for (int round = 0; round < 40; ++round) {
    if (round == 15) f.fs->mode = fault::no_space;
    if (round == 18) f.fs->mode = fault::none;
    auto m = msg("c" + std::to_string(round) + "@x", "user" + std::to_string(round % 3));
    m.date = 1700000000 + (round * 7919) % 1000;  // out of order on purpose
    auto r = f.db->write(std::vector{m}, {});
    if (r) ++written;
    CHECK(r.has_value() == (round < 15 || round >= 18));
  }
  done = true;
  r1.join();
  r2.join();
  CHECK(order_ok);
  CHECK(reads > 0);
  CHECK(written == 37);
  CHECK(f.db->message_count() == 37);
  CHECK(f.db->query_messages({.contact = "bob@acme.example"}).size() == 37);
}
