#include "storage/store.hpp"

#include <catch2/catch.hpp>
#include <rocksdb/db.h>

#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "storage/codec.hpp"
#include "storage/column_families.hpp"
#include "storage/keys.hpp"
#include "temp_dir.hpp"

using namespace mscan::storage;
using mscan::storage::test::temp_dir;

namespace {

std::unique_ptr<store> open_ok(const std::filesystem::path& dir, const open_options& o = {}) {
  auto s = store::open(dir, o);
  if (!s) FAIL("open failed: " << s.error().message);
  return std::move(*s);
}

message_record msg(std::string id, std::int64_t date, std::string user, std::string folder,
                   std::uint32_t uid) {
  message_record m;
  m.message_id = "<" + id + ">";
  m.key = message_key(m.message_id, date, 100, "bob@acme.example", "s " + id);
  m.subject = "s " + id;
  m.from = "bob@acme.example";
  m.date = date;
  m.size = 100;
  m.sightings = {{user, folder, 7, uid}};
  m.users = {user};
  return m;
}

std::vector<std::string> ids(const std::vector<message_record>& v) {
  std::vector<std::string> out;
  for (const auto& m : v) out.push_back(m.message_id);
  return out;
}

// Writes one raw value, as another build (or a damaged disk) would have.
void put_raw(const std::filesystem::path& dir, column_family family, const std::string& key,
             const std::string& value) {
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  for (auto n : column_family_names) descs.emplace_back(std::string(n), rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> hs;
  rocksdb::DB* raw = nullptr;
  REQUIRE(rocksdb::DB::Open(rocksdb::DBOptions(), dir.string(), descs, &hs, &raw).ok());
  CHECK(raw->Put(rocksdb::WriteOptions(), hs[index_of(family)], key, value).ok());
  for (auto* h : hs) raw->DestroyColumnFamilyHandle(h);
  CHECK(raw->Close().ok());
  delete raw;
}

// Writes the format version straight into meta, as another build would have.
void set_format_version(const std::filesystem::path& dir, std::uint32_t v) {
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  for (auto n : column_family_names) descs.emplace_back(std::string(n), rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> hs;
  rocksdb::DB* raw = nullptr;
  REQUIRE(rocksdb::DB::Open(rocksdb::DBOptions(), dir.string(), descs, &hs, &raw).ok());
  std::string val;
  codec::put_be32(val, v);
  auto meta = hs[index_of(column_family::meta)];
  CHECK(raw->Put(rocksdb::WriteOptions(), meta, std::string(keys::meta_format_version), val).ok());
  for (auto* h : hs) raw->DestroyColumnFamilyHandle(h);
  CHECK(raw->Close().ok());
  delete raw;
}

}  // namespace

TEST_CASE("a new database starts empty at the current format", "[unit][storage][store]") {
  temp_dir t;
  auto db = open_ok(t.db());
  CHECK(db->format_version() == current_format_version);
  CHECK(db->message_count() == 0);
  CHECK(db->query_messages({}).empty());
  CHECK(db->mailbox_states().empty());
  CHECK_FALSE(db->checkpoint("alice", "INBOX"));
  CHECK_FALSE(db->find_by_message_id("<nope@x>"));
}

TEST_CASE("a nested data directory is created", "[unit][storage][store]") {
  temp_dir t;
  auto db = open_ok(t.path() / "a" / "b" / "data");
  CHECK(std::filesystem::exists(t.path() / "a" / "b" / "data" / "CURRENT"));
}

TEST_CASE("an unusable path is an error, not a crash", "[unit][storage][store]") {
  temp_dir t;
  { std::ofstream(t.path() / "file") << "x"; }
  auto r = store::open(t.path() / "file" / "db");
  REQUIRE_FALSE(r);
  CHECK(r.error().kind == error::code::io_error);
  CHECK(r.error().message.find("file") != std::string::npos);
}

TEST_CASE("missing database is not created when not asked to", "[unit][storage][store]") {
  temp_dir t;
  open_options o;
  o.create_if_missing = false;
  auto r = store::open(t.db(), o);
  REQUIRE_FALSE(r);
  CHECK(r.error().kind == error::code::not_found);
  o = {};
  o.read_only = true;
  auto r2 = store::open(t.db(), o);
  REQUIRE_FALSE(r2);
  CHECK(r2.error().kind == error::code::not_found);
  CHECK_FALSE(std::filesystem::exists(t.db() / "CURRENT"));
}

TEST_CASE("upsert merges the same message from two mailboxes into one record",
          "[unit][storage][store]") {
  temp_dir t;
  auto db = open_ok(t.db());
  auto a = msg("m1@acme.example", 1700000000, "alice", "INBOX", 10);
  a.contacts = {"bob@acme.example"};
  a.reasons = {{"contact", "bob@acme.example", "From: bob@acme.example"}};
  auto b = msg("m1@acme.example", 1700000000, "bob", "Sent", 3);
  b.accounts = {"Acme Ltd"};
  b.reasons = {{"account", "Acme Ltd", "domain acme.example"}};
  REQUIRE(a.key == b.key);
  const std::vector<message_record> batch = {a, b};
  const std::vector<checkpoint_update> cps = {{"alice", "INBOX", {7, 10, 0}}};

  auto r = db->write(batch, cps);
  REQUIRE(r);
  CHECK(r->new_messages == 1);
  CHECK(r->new_sightings == 2);
  CHECK(r->updated == 1);  // b merged into the record a created in the same batch
  CHECK(r->unchanged == 0);
  CHECK(db->message_count() == 1);

  auto all = db->query_messages({});
  REQUIRE(all.size() == 1);
  const auto& m = all[0];
  CHECK(m.sightings.size() == 2);
  CHECK(m.users == std::vector<std::string>{"alice", "bob"});
  CHECK(m.contacts == std::vector<std::string>{"bob@acme.example"});
  CHECK(m.accounts == std::vector<std::string>{"Acme Ltd"});
  CHECK(m.reasons.size() == 2);
  CHECK(db->mailbox_state_of("alice")->messages_tracked == 1);
  CHECK(db->mailbox_state_of("bob")->messages_tracked == 1);

  SECTION("replaying the batch changes nothing and bumps no counter") {
    auto again = db->write(batch, cps);
    REQUIRE(again);
    CHECK(again->new_messages == 0);
    CHECK(again->new_sightings == 0);
    CHECK(again->updated == 0);
    CHECK(again->unchanged == 2);
    CHECK(db->message_count() == 1);
    CHECK(db->mailbox_state_of("alice")->messages_tracked == 1);
    CHECK(db->mailbox_state_of("bob")->messages_tracked == 1);
    CHECK(db->query_messages({}) == all);
  }
  SECTION("a second copy in a folder is a second sighting; a new UIDVALIDITY supersedes, an old one is stale") {
    auto copy = msg("m1@acme.example", 1700000000, "alice", "INBOX", 11);
    auto r2 = db->write(std::vector{copy}, {});
    REQUIRE(r2);
    CHECK(r2->new_sightings == 1);
    CHECK(r2->updated == 1);
    CHECK(r2->per_record == std::vector<record_outcome>{{false, 1}});
    CHECK(db->find_by_message_id("<m1@acme.example>")->sightings.size() == 3);
    auto rescanned = copy;
    rescanned.sightings = {{"alice", "INBOX", 8, 1}};  // the folder was recreated
    REQUIRE(db->write(std::vector{rescanned}, {}));
    auto rec = db->find_by_message_id("<m1@acme.example>");
    REQUIRE(rec);
    REQUIRE(rec->sightings.size() == 2);  // bob's, and alice's under UIDVALIDITY 8 only
    CHECK(rec->sightings[1].uidvalidity == 8);
    auto stale = copy;
    stale.sightings = {{"alice", "INBOX", 7, 12}};
    auto r3 = db->write(std::vector{stale}, {});
    REQUIRE(r3);
    CHECK(r3->unchanged == 1);
    CHECK(db->find_by_message_id("<m1@acme.example>")->sightings.size() == 2);
    CHECK(db->mailbox_state_of("alice")->messages_tracked == 1);
  }
  SECTION("a third user in a later batch is counted once for that user") {
    auto c = msg("m1@acme.example", 1700000000, "carol", "INBOX", 1);
    REQUIRE(db->write(std::vector{c}, {}));
    CHECK(db->message_count() == 1);
    CHECK(db->mailbox_state_of("carol")->messages_tracked == 1);
    CHECK(db->mailbox_state_of("alice")->messages_tracked == 1);
    CHECK(ids(db->query_messages({.user = "carol"})) == std::vector<std::string>{"<m1@acme.example>"});
  }
}

TEST_CASE("checkpoints persist across reopen", "[unit][storage][store]") {
  temp_dir t;
  {
    auto db = open_ok(t.db());
    const std::vector<checkpoint_update> cps = {{"alice", "INBOX", {7, 42, 99}},
                                                {"alice", "Sent Items", {8, 3, 0}},
                                                {"al", "INBOX", {1, 1, 1}}};
    REQUIRE(db->write({}, cps));
    const std::vector<checkpoint_update> newer = {{"alice", "INBOX", {7, 50, 120}}};
    REQUIRE(db->write({}, newer));
  }
  auto db = open_ok(t.db());
  auto cp = db->checkpoint("alice", "INBOX");
  REQUIRE(cp);
  CHECK(*cp == folder_checkpoint{7, 50, 120});
  auto all = db->checkpoints("alice");
  REQUIRE(all.size() == 2);
  CHECK(all.at("Sent Items") == folder_checkpoint{8, 3, 0});
  CHECK(db->checkpoints("al").size() == 1);
  CHECK(db->checkpoints("alic").empty());
  CHECK_FALSE(db->checkpoint("alice", "Drafts"));
}

TEST_CASE("queries filter by link and return newest first", "[unit][storage][store]") {
  temp_dir t;
  auto db = open_ok(t.db());
  auto m1 = msg("1@x", 1000, "alice", "INBOX", 1);
  m1.contacts = {"Bob@Acme.example"};
  m1.accounts = {"Acme Ltd"};
  auto m2 = msg("2@x", 3000, "alice", "INBOX", 2);
  m2.contacts = {"carol@beta.example"};
  m2.accounts = {"Beta"};
  m2.items = {"OPP-1042"};
  auto m3 = msg("3@x", -50, "bob", "INBOX", 3);
  m3.contacts = {"bob@acme.example"};
  m3.accounts = {"Acme Ltd"};
  m3.items = {"OPP-1042"};
  auto m4 = msg("4@x", 2000, "bob", "Archive", 4);
  m4.accounts = {"Acme Ltd"};
  REQUIRE(db->write(std::vector{m1, m2, m3, m4}, {}));

  using v = std::vector<std::string>;
  CHECK(ids(db->query_messages({})) == v{"<2@x>", "<4@x>", "<1@x>", "<3@x>"});
  CHECK(ids(db->query_messages({.user = "alice"})) == v{"<2@x>", "<1@x>"});
  CHECK(ids(db->query_messages({.user = "bob"})) == v{"<4@x>", "<3@x>"});
  CHECK(ids(db->query_messages({.contact = "BOB@acme.example"})) == v{"<1@x>", "<3@x>"});
  CHECK(ids(db->query_messages({.account = "Acme Ltd"})) == v{"<4@x>", "<1@x>", "<3@x>"});
  CHECK(ids(db->query_messages({.item = "OPP-1042"})) == v{"<2@x>", "<3@x>"});
  CHECK(ids(db->query_messages({.user = "bob", .account = "Acme Ltd"})) == v{"<4@x>", "<3@x>"});
  CHECK(ids(db->query_messages({.user = "alice", .item = "OPP-1042"})) == v{"<2@x>"});
  CHECK(ids(db->query_messages({.user = "carol"})).empty());
  CHECK(ids(db->query_messages({.account = "Acme"})).empty());
  CHECK(ids(db->query_messages({.account = "Acme Ltd", .limit = 2})) == v{"<4@x>", "<1@x>"});
  CHECK(ids(db->query_messages({.limit = 1})) == v{"<2@x>"});

  auto found = db->find_by_message_id("3@X");
  REQUIRE(found);
  CHECK(found->date == -50);
  CHECK(found->items == v{"OPP-1042"});
}

TEST_CASE("a date learnt later moves the index entries", "[unit][storage][store]") {
  temp_dir t;
  auto db = open_ok(t.db());
  auto undated = msg("d@x", 0, "alice", "INBOX", 1);
  auto dated = msg("d@x", 5000, "alice", "INBOX", 1);
  auto other = msg("o@x", 100, "alice", "INBOX", 2);
  REQUIRE(db->write(std::vector{undated, other}, {}));
  CHECK(ids(db->query_messages({.user = "alice"})) == std::vector<std::string>{"<o@x>", "<d@x>"});
  dated.contacts = {"new@contact.example"};
  dated.sightings.push_back({"bob", "INBOX", 3, 4});
  REQUIRE(db->write(std::vector{dated}, {}));
  CHECK(ids(db->query_messages({.user = "alice"})) == std::vector<std::string>{"<d@x>", "<o@x>"});
  CHECK(ids(db->query_messages({.user = "bob"})) == std::vector<std::string>{"<d@x>"});
  auto by_contact = db->query_messages({.contact = "new@contact.example"});
  REQUIRE(by_contact.size() == 1);
  CHECK(by_contact[0].date == 5000);
  CHECK(db->mailbox_state_of("bob")->messages_tracked == 1);
}

TEST_CASE("a message seen in many mailboxes stays one record with every sighting",
          "[unit][storage][store]") {
  temp_dir t;
  open_options o;
  o.sync_writes = false;  // the point is the merge, not the fsync
  auto db = open_ok(t.db(), o);
  constexpr int users = 400;
  for (int i = 0; i < users; ++i) {
    auto m = msg("all-hands@corp.example", 1700000000, "u" + std::to_string(i), "INBOX", 5);
    auto r = db->write(std::vector{m}, {});
    REQUIRE(r);
    CHECK(r->new_sightings == 1);
  }
  CHECK(db->message_count() == 1);
  auto rec = db->find_by_message_id("<all-hands@corp.example>");
  REQUIRE(rec);
  CHECK(rec->sightings.size() == users);
  CHECK(rec->users.size() == users);
  CHECK(db->mailbox_state_of("u0")->messages_tracked == 1);
  CHECK(db->mailbox_state_of("u399")->messages_tracked == 1);
  CHECK(ids(db->query_messages({.user = "u123"})) ==
        std::vector<std::string>{"<all-hands@corp.example>"});
  CHECK(db->mailbox_states().size() == users);
}

TEST_CASE("messages without Message-ID are keyed by fingerprint", "[unit][storage][store]") {
  temp_dir t;
  auto db = open_ok(t.db());
  message_record a;
  a.key = message_key("", 1234, 55, "x@y.example", "hello");
  a.date = 1234;
  a.size = 55;
  a.sightings = {{"alice", "INBOX", 1, 1}};
  auto b = a;
  b.sightings = {{"alice", "Archive", 2, 9}};
  auto r = db->write(std::vector{a, b}, {});
  REQUIRE(r);
  CHECK(r->new_messages == 1);
  CHECK(db->message_count() == 1);
  auto rec = db->find_by_key(a.key);
  REQUIRE(rec);
  CHECK(rec->sightings.size() == 2);
  CHECK(db->mailbox_state_of("alice")->messages_tracked == 1);
}

TEST_CASE("invalid input is refused whole", "[unit][storage][store]") {
  temp_dir t;
  auto db = open_ok(t.db());
  auto good = msg("g@x", 1, "alice", "INBOX", 1);
  message_record keyless;
  auto r = db->write(std::vector{good, keyless}, {});
  REQUIRE_FALSE(r);
  CHECK(r.error().kind == error::code::invalid_argument);
  const std::vector<checkpoint_update> bad_cp = {{"", "INBOX", {}}};
  auto r2 = db->write(std::vector{good}, bad_cp);
  REQUIRE_FALSE(r2);
  CHECK(r2.error().kind == error::code::invalid_argument);
  CHECK(db->message_count() == 0);
  CHECK(db->query_messages({}).empty());
  CHECK_FALSE(db->put_mailbox_state({}));
}

TEST_CASE("mailbox state keeps the tracked count owned by write()", "[unit][storage][store]") {
  temp_dir t;
  {
    auto db = open_ok(t.db());
    REQUIRE(db->write(std::vector{msg("1@x", 1, "bob", "INBOX", 1), msg("2@x", 2, "bob", "INBOX", 2)},
                      {}));
    mailbox_state s;
    s.user = "bob";
    s.state = "error";
    s.last_scanned = 1700000000;
    s.consecutive_failures = 3;
    s.last_error_reason = "timeout";
    s.last_error_detail = "no greeting within 30 s";
    s.messages_tracked = 999;  // ignored
    REQUIRE(db->put_mailbox_state(s));
    mailbox_state a;
    a.user = "alice";
    REQUIRE(db->put_mailbox_state(a));
  }
  auto db = open_ok(t.db());
  auto bob = db->mailbox_state_of("bob");
  REQUIRE(bob);
  CHECK(bob->state == "error");
  CHECK(bob->consecutive_failures == 3);
  CHECK(bob->last_error_reason == "timeout");
  CHECK(bob->messages_tracked == 2);
  auto all = db->mailbox_states();
  REQUIRE(all.size() == 2);
  CHECK(all[0].user == "alice");
  CHECK(all[0].last_scanned == 0);
  CHECK(all[1].user == "bob");
  CHECK_FALSE(db->mailbox_state_of("carol"));
}

TEST_CASE("a newer or unknown older format is refused", "[unit][storage][store]") {
  temp_dir t;
  { open_ok(t.db()); }
  SECTION("newer") {
    set_format_version(t.db(), current_format_version + 1);
    auto r = store::open(t.db());
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == error::code::version_mismatch);
    CHECK(r.error().message.find("newer") != std::string::npos);
    open_options ro;
    ro.read_only = true;
    auto r2 = store::open(t.db(), ro);
    REQUIRE_FALSE(r2);
    CHECK(r2.error().kind == error::code::version_mismatch);
  }
  SECTION("older without a migration path") {
    set_format_version(t.db(), 0);
    auto r = store::open(t.db());
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == error::code::version_mismatch);
    CHECK(r.error().message.find("migration") != std::string::npos);
  }
}

TEST_CASE("read-only open queries while the writer keeps the database open",
          "[unit][storage][store]") {
  temp_dir t;
  auto writer = open_ok(t.db());
  auto m = msg("ro@x", 10, "alice", "INBOX", 1);
  m.contacts = {"bob@acme.example"};
  const std::vector<checkpoint_update> cps = {{"alice", "INBOX", {7, 1, 0}}};
  REQUIRE(writer->write(std::vector{m}, cps));

  open_options o;
  o.read_only = true;
  auto reader = open_ok(t.db(), o);
  CHECK(reader->read_only());
  CHECK(ids(reader->query_messages({.contact = "bob@acme.example"})) ==
        std::vector<std::string>{"<ro@x>"});
  CHECK(reader->message_count() == 1);
  CHECK(reader->checkpoint("alice", "INBOX")->last_uid == 1);
  auto w = reader->write(std::vector{msg("no@x", 1, "alice", "INBOX", 2)}, {});
  REQUIRE_FALSE(w);
  CHECK(w.error().kind == error::code::invalid_argument);

  // The writer is unaffected by the reader.
  REQUIRE(writer->write(std::vector{msg("after@x", 20, "alice", "INBOX", 2)}, {}));
  CHECK(writer->message_count() == 2);
}

TEST_CASE("a second read-write open of the same database fails cleanly", "[unit][storage][store]") {
  temp_dir t;
  auto first = open_ok(t.db());
  auto second = store::open(t.db());
  REQUIRE_FALSE(second);
  CHECK(second.error().kind == error::code::io_error);
  CHECK_FALSE(second.error().message.empty());
}

TEST_CASE("a caller-chosen key is still found by Message-ID", "[unit][storage][store]") {
  temp_dir t;
  auto db = open_ok(t.db());
  auto m = msg("custom@x", 5, "alice", "INBOX", 1);
  m.key = "tenant-7/custom@x";
  REQUIRE(db->write(std::vector{m}, {}));
  auto found = db->find_by_message_id("custom@X");
  REQUIRE(found);
  CHECK(found->key == "tenant-7/custom@x");
  auto plain = msg("plain@x", 6, "alice", "INBOX", 2);
  REQUIRE(db->write(std::vector{plain}, {}));
  REQUIRE(db->find_by_message_id("<plain@x>"));
  CHECK(db->find_by_message_id("<plain@x>")->key == "<plain@x>");
}

// Runs in a child process started by the next test (hidden from ctest by the "[.]" tag).
TEST_CASE("read-only child process", "[.][storage_ro_child]") {
  const char* dir = std::getenv("MSCAN_STORAGE_RO_DIR");
  REQUIRE(dir != nullptr);
  open_options o;
  o.read_only = true;
  auto reader = open_ok(dir, o);
  CHECK(reader->message_count() == 1);
  CHECK(ids(reader->query_messages({.contact = "bob@acme.example"})) ==
        std::vector<std::string>{"<proc@x>"});
  CHECK(reader->mailbox_state_of("alice")->messages_tracked == 1);
}

extern char** environ;

TEST_CASE("read-only open in another process while the writer holds the database",
          "[unit][storage][store]") {
  temp_dir t;
  auto writer = open_ok(t.db());
  auto m = msg("proc@x", 10, "alice", "INBOX", 1);
  m.contacts = {"bob@acme.example"};
  REQUIRE(writer->write(std::vector{m}, {}));

  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  env_strings.push_back("MSCAN_STORAGE_RO_DIR=" + t.db().string());
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  std::string filter = "[storage_ro_child]";
  char* argv[] = {self.data(), filter.data(), nullptr};
  pid_t pid = 0;
  REQUIRE(::posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv, envp.data()) == 0);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // The writer carries on.
  REQUIRE(writer->write(std::vector{msg("later@x", 20, "alice", "INBOX", 2)}, {}));
}

TEST_CASE("a corrupt stored value is replaced instead of wedging the writer",
          "[unit][storage][store]") {
  temp_dir t;
  auto m = msg("bad@x", 10, "alice", "INBOX", 1);
  { open_ok(t.db()); }
  put_raw(t.db(), column_family::messages, keys::message(m.key), std::string("\x01\xff\xff", 3));
  put_raw(t.db(), column_family::mailbox_state, keys::mailbox_state("alice"), "\x09junk");
  auto db = open_ok(t.db());
  CHECK_FALSE(db->find_by_key(m.key));        // readers skip what they cannot decode
  CHECK(db->query_messages({}).empty());
  CHECK_FALSE(db->mailbox_state_of("alice"));
  auto r = db->write(std::vector{m}, {});
  if (!r) FAIL(r.error().message);
  CHECK(r->corrupt_replaced == 2);
  auto rec = db->find_by_key(m.key);
  REQUIRE(rec);
  CHECK(rec->sightings.size() == 1);
  CHECK(db->mailbox_state_of("alice")->messages_tracked == 1);
}

TEST_CASE("error codes have stable names", "[unit][storage][store]") {
  CHECK(to_string(error::code::no_space) == "no_space");
  CHECK(to_string(error::code::version_mismatch) == "version_mismatch");
  CHECK(to_string(error::code::io_error) == "io_error");
}
