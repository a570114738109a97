#include "storage/store.hpp"

#include <fmt/format.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/memtablerep.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <shared_mutex>
#include <set>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "storage/codec.hpp"
#include "storage/column_families.hpp"
#include "storage/keys.hpp"

namespace mscan::storage {

namespace {

using cf = column_family;

error make_error(error::code c, std::string msg) { return error{c, std::move(msg)}; }

// RocksDB Status -> our classification. Order matters: NoSpace is a sub-code of IOError.
error from_status(const rocksdb::Status& s, std::string_view context) {
  error::code c = error::code::io_error;
  if (s.IsNoSpace())
    c = error::code::no_space;
  else if (s.IsCorruption())
    c = error::code::corruption;
  else if (s.IsNotFound())
    c = error::code::not_found;
  else if (s.IsInvalidArgument() || s.IsNotSupported())
    c = error::code::invalid_argument;
  return make_error(c, fmt::format("{}: {}", context, s.ToString()));
}

error from_exception(const std::exception& e, std::string_view context) {
  return make_error(error::code::io_error, fmt::format("{}: {}", context, e.what()));
}

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool starts_with(const rocksdb::Slice& s, std::string_view prefix) {
  return s.size() >= prefix.size() && std::string_view(s.data(), prefix.size()) == prefix;
}

std::string_view view(const rocksdb::Slice& s) { return {s.data(), s.size()}; }

template <class T>
bool add_unique(std::vector<T>& v, const T& x) {
  if (std::find(v.begin(), v.end(), x) != v.end()) return false;
  v.push_back(x);
  return true;
}

template <class T>
bool add_all(std::vector<T>& v, const std::vector<T>& xs) {
  bool changed = false;
  for (const auto& x : xs) changed |= add_unique(v, x);
  return changed;
}

template <class T>
bool distinct(const std::vector<T>& v) {
  for (std::size_t i = 1; i < v.size(); ++i)
    if (std::find(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v[i]) != v.begin() + static_cast<std::ptrdiff_t>(i))
      return false;
  return true;
}

// Whether merging `in` into an empty record gives `in` itself (see merge_into): one sighting,
// its user the only user, no list with a repeated entry. What the matcher makes of one
// fetched message is; store::write then writes it as it is instead of building a copy.
bool merges_to_itself(const message_record& in) {
  return in.sightings.size() == 1 && in.users.size() == 1 && in.users.front() == in.sightings.front().user &&
         distinct(in.to) && distinct(in.cc) && distinct(in.contacts) && distinct(in.accounts) &&
         distinct(in.items) && distinct(in.tickets) && distinct(in.attachments) && distinct(in.reasons) &&
         distinct(in.warnings);
}

bool fill(std::string& dst, const std::string& src) {
  if (!dst.empty() || src.empty()) return false;
  dst = src;
  return true;
}

struct merge_delta {
  std::size_t sightings_added = 0;
  bool changed = false;
};

// Merges an incoming record into the current one (see store::write for the rules).
// Scalars keep the first non-empty value: the same key means the same message.
merge_delta merge_into(message_record& cur, const message_record& in) {
  merge_delta d;
  d.changed |= fill(cur.message_id, in.message_id);
  d.changed |= fill(cur.subject, in.subject);
  d.changed |= fill(cur.from, in.from);
  if (cur.date == 0 && in.date != 0) {
    cur.date = in.date;
    d.changed = true;
  }
  if (cur.size == 0 && in.size != 0) {
    cur.size = in.size;
    d.changed = true;
  }
  d.changed |= add_all(cur.to, in.to);
  d.changed |= add_all(cur.cc, in.cc);
  // A sighting is one copy on a server: (user, folder, uidvalidity, uid). Two copies of a
  // message in one folder are two sightings. A newer UIDVALIDITY of a folder supersedes the
  // copies seen under the older one (their UIDs no longer exist); an older one is stale.
  for (const auto& s : in.sightings) {
    bool stale = false, present = false;
    for (const auto& x : cur.sightings) {
      if (x.user != s.user || x.folder != s.folder)
        continue;
      stale |= x.uidvalidity > s.uidvalidity;
      present |= x.uidvalidity == s.uidvalidity && x.uid == s.uid;
    }
    if (!stale && !present) {
      std::erase_if(cur.sightings, [&](const sighting& x) {
        return x.user == s.user && x.folder == s.folder && x.uidvalidity < s.uidvalidity;
      });
      cur.sightings.push_back(s);
      ++d.sightings_added;
    }
    d.changed |= add_unique(cur.users, s.user);
  }
  d.changed |= d.sightings_added > 0;
  d.changed |= add_all(cur.users, in.users);
  d.changed |= add_all(cur.contacts, in.contacts);
  d.changed |= add_all(cur.accounts, in.accounts);
  d.changed |= add_all(cur.items, in.items);
  d.changed |= add_all(cur.tickets, in.tickets);
  d.changed |= add_all(cur.attachments, in.attachments);
  d.changed |= add_all(cur.reasons, in.reasons);
  d.changed |= add_all(cur.warnings, in.warnings);
  return d;
}

// The link-index entries a record owns: (column family, encoded key).
std::set<std::pair<cf, std::string>> index_entries(const message_record& r) {
  std::set<std::pair<cf, std::string>> out;
  for (const auto& u : r.users) out.emplace(cf::index_user, keys::index(u, r.date, r.key));
  for (const auto& c : r.contacts)
    out.emplace(cf::index_contact, keys::index(ascii_lower(c), r.date, r.key));
  for (const auto& a : r.accounts) out.emplace(cf::index_account, keys::index(a, r.date, r.key));
  for (const auto& i : r.items) out.emplace(cf::index_item, keys::index(i, r.date, r.key));
  return out;
}

std::string be32_value(std::uint32_t v) {
  std::string s;
  codec::put_be32(s, v);
  return s;
}

std::string be64_value(std::uint64_t v) {
  std::string s;
  codec::put_be64(s, v);
  return s;
}

// ---- format migrations ----------------------------------------------------------------
// A migration moves the database from format `from` to `from + 1` by adding to `batch`; the
// store appends the new format_version to the same batch, so an upgrade step is atomic.
// Empty today (format 1 is the first); keep entries sorted by `from`.
using migration_fn = expected<void, error> (*)(rocksdb::DB&,
                                               const std::vector<rocksdb::ColumnFamilyHandle*>&,
                                               rocksdb::WriteBatch&);
struct migration {
  std::uint32_t from;
  std::string_view what;
  migration_fn run;
};
const std::vector<migration>& migrations() {
  static const std::vector<migration> table{};
  return table;
}

// Index entries for targets[from..] (the links a merge appended).
void put_index_tail(rocksdb::WriteBatch& batch, rocksdb::ColumnFamilyHandle* family,
                    const std::vector<std::string>& targets, std::size_t from,
                    const message_record& r, bool lower) {
  for (std::size_t i = from; i < targets.size(); ++i)
    batch.Put(family, keys::index(lower ? ascii_lower(targets[i]) : targets[i], r.date, r.key),
              rocksdb::Slice());
}

}  // namespace

struct store::impl {
  // Declared first so it outlives the database that uses it.
  std::shared_ptr<rocksdb::Env> env;
  std::shared_ptr<const rocksdb::FilterPolicy> bloom;
  std::filesystem::path dir;
  open_options opts;
  rocksdb::WriteOptions write_options;
  // Readers hold db_mu shared; recover() swaps the database under it exclusively. Writers
  // serialise on write_mu (they read-modify-write) and only they ever call recover().
  mutable std::shared_mutex db_mu;
  std::mutex write_mu;
  std::unique_ptr<rocksdb::DB> db;                    // null after a failed recovery
  std::vector<rocksdb::ColumnFamilyHandle*> handles;  // ours, indexed by column_family
  std::vector<rocksdb::ColumnFamilyHandle*> foreign;  // families this build does not know
  bool db_read_only = false;    // what db was opened as (a failed recovery falls back to it)
  bool needs_recovery = false;  // a write failed: RocksDB may refuse writes until recovered
  std::uint32_t version = 0;

  rocksdb::ColumnFamilyHandle* h(cf c) const { return handles[index_of(c)]; }

  ~impl() { close_db(); }

  expected<void, error> open_db(bool fresh, bool read_only);
  void close_db();
  expected<void, error> recover();
  // Reads meta, creates/upgrades/refuses as the format version demands.
  expected<void, error> check_format(bool fresh, bool read_only);
  std::optional<std::string> get(cf c, const std::string& key) const;
  std::optional<message_record> find_record(std::string_view key) const;
  std::uint64_t count() const;
};

void store::impl::close_db() {
  if (!db) return;
  for (auto* x : handles)
    if (x) db->DestroyColumnFamilyHandle(x);
  for (auto* x : foreign)
    if (x) db->DestroyColumnFamilyHandle(x);
  handles.clear();
  foreign.clear();
  db->Close();  // a failed close leaves nothing we could act on; RocksDB logs it
  db.reset();
}

// After a failed write RocksDB keeps refusing writes (its background-error state): a full
// disk starts its own slow recovery (Resume() says Busy meanwhile) and a failed WAL fsync is
// fatal for the instance. Resume() first; if that does not clear it, close and reopen, which
// replays whatever the WAL holds (a batch whose fsync failed may come back: that outcome was
// unknown to the caller, and replaying an upsert is harmless).
expected<void, error> store::impl::recover() {
  if (!needs_recovery) return {};
  if (db && !db_read_only && db->Resume().ok()) {
    needs_recovery = false;
    return {};
  }
  std::unique_lock lock(db_mu);
  close_db();
  if (auto r = open_db(false, opts.read_only); !r) {
    close_db();
    // Keep answering readers while writing is impossible (e.g. the disk is still full);
    // the next write tries read-write again. If even this fails readers get empty answers.
    if (!open_db(false, true)) close_db();
    return unexpected{r.error()};
  }
  needs_recovery = false;
  return {};
}

std::optional<std::string> store::impl::get(cf c, const std::string& key) const {
  std::string v;
  auto s = db->Get(rocksdb::ReadOptions(), h(c), key, &v);
  if (!s.ok()) return std::nullopt;
  return v;
}

expected<void, error> store::impl::check_format(bool fresh, bool read_only) {
  std::string v;
  auto s = db->Get(rocksdb::ReadOptions(), h(cf::meta), std::string(keys::meta_format_version), &v);
  if (s.IsNotFound()) {
    // A crash between creating the files and writing meta leaves an empty database:
    // initialise it when nothing else is there either.
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), h(cf::messages)));
    it->SeekToFirst();
    const bool empty = !it->Valid() && it->status().ok();
    if (!fresh && !empty)
      return unexpected{make_error(error::code::corruption,
                                   "not a mailscan database (no format_version in meta)")};
    if (read_only)
      return unexpected{make_error(error::code::version_mismatch,
                                   "database was never initialised; open it read-write once")};
    rocksdb::WriteBatch b;
    b.Put(h(cf::meta), std::string(keys::meta_format_version), be32_value(current_format_version));
    b.Put(h(cf::meta), std::string(keys::meta_message_count), be64_value(0));
    rocksdb::WriteOptions wo;
    wo.sync = true;
    if (auto ws = db->Write(wo, &b); !ws.ok()) return unexpected{from_status(ws, "initialise meta")};
    version = current_format_version;
    return {};
  }
  if (!s.ok()) return unexpected{from_status(s, "read format version")};
  codec::reader r(v);
  auto found = r.be32();
  if (!r.ok() || !r.at_end())
    return unexpected{make_error(error::code::corruption, "format_version in meta is malformed")};
  if (found > current_format_version)
    return unexpected{make_error(
        error::code::version_mismatch,
        fmt::format("database format version {} is newer than this build supports ({}); "
                    "use a newer mailscan",
                    found, current_format_version))};
  if (found < current_format_version && read_only)
    return unexpected{make_error(
        error::code::version_mismatch,
        fmt::format("database format version {} needs an upgrade to {}; open it read-write once",
                    found, current_format_version))};
  while (found < current_format_version) {
    const auto& table = migrations();
    auto m = std::find_if(table.begin(), table.end(),
                          [&](const migration& x) { return x.from == found; });
    if (m == table.end())
      return unexpected{make_error(
          error::code::version_mismatch,
          fmt::format("no migration from database format version {} (this build writes {})",
                      found, current_format_version))};
    rocksdb::WriteBatch b;
    if (auto r2 = m->run(*db, handles, b); !r2) return unexpected{r2.error()};
    b.Put(h(cf::meta), std::string(keys::meta_format_version), be32_value(found + 1));
    rocksdb::WriteOptions wo;
    wo.sync = true;
    if (auto ws = db->Write(wo, &b); !ws.ok())
      return unexpected{from_status(ws, fmt::format("migration {}", m->what))};
    ++found;
  }
  version = found;
  return {};
}

std::string_view to_string(error::code c) noexcept {
  switch (c) {
    case error::code::io_error: return "io_error";
    case error::code::no_space: return "no_space";
    case error::code::corruption: return "corruption";
    case error::code::version_mismatch: return "version_mismatch";
    case error::code::invalid_argument: return "invalid_argument";
    case error::code::not_found: return "not_found";
  }
  return "unknown";
}

store::store(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
store::~store() = default;

expected<void, error> store::impl::open_db(bool fresh, bool read_only) {
  rocksdb::DBOptions dbo;
  dbo.create_if_missing = opts.create_if_missing && !read_only;
  dbo.create_missing_column_families = !read_only;
  dbo.max_background_jobs = 2;
  dbo.keep_log_file_num = 4;
  dbo.allow_concurrent_memtable_write = false;  // the vector memtable needs it; one writer anyway
  if (env) dbo.env = env.get();

  std::vector<std::string> existing;
  if (!fresh) {
    auto s = rocksdb::DB::ListColumnFamilies(dbo, dir.string(), &existing);
    if (!s.ok()) return unexpected{from_status(s, fmt::format("open {}", dir.string()))};
  }

  // Point lookups (is this message new?) dominate writes: a bloom filter saves disk reads.
  if (!bloom) bloom.reset(rocksdb::NewBloomFilterPolicy(10));
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy = bloom;
  rocksdb::ColumnFamilyOptions cfo;
  cfo.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  // Index entries (a few per message, value-less) are written on every scan but read only by
  // `mailscan query` (its own process): a vector memtable appends them and sorts once at flush
  // or first read, instead of a skip-list insert each — ~1 µs per entry, the writer's largest
  // cost. Only the in-memory table changes; nothing on disk does.
  auto index_cfo = cfo;
  index_cfo.memtable_factory = std::make_shared<rocksdb::VectorRepFactory>();
  // Nearly every key a scan looks up in `messages` is not there yet: a whole-key bloom filter
  // in the memtable answers that without a skip-list search.
  auto messages_cfo = cfo;
  messages_cfo.memtable_whole_key_filtering = true;
  messages_cfo.memtable_prefix_bloom_size_ratio = 0.02;
  auto options_for = [&](std::string_view name) -> const rocksdb::ColumnFamilyOptions& {
    return name.starts_with("index_") ? index_cfo : name == "messages" ? messages_cfo : cfo;
  };

  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  for (auto name : column_family_names) {
    if (read_only && std::find(existing.begin(), existing.end(), name) == existing.end())
      return unexpected{make_error(
          error::code::version_mismatch,
          fmt::format("database has no column family '{}'; open it read-write once to upgrade",
                      name))};
    descs.emplace_back(std::string(name), options_for(name));
  }
  for (const auto& name : existing)
    if (std::find(column_family_names.begin(), column_family_names.end(), name) ==
        column_family_names.end())
      descs.emplace_back(name, cfo);  // RocksDB refuses a read-write open that omits one

  // DB::Open creates each missing family on its own, rewriting and re-parsing the OPTIONS
  // file (and the MANIFEST) every time: ~25 ms for a fresh store, the largest fixed cost of a
  // short `run --once`. The missing ones are created in one CreateColumnFamilies call instead.
  std::vector<rocksdb::ColumnFamilyDescriptor> present, missing;
  std::vector<std::size_t> present_at, missing_at;  // indices into descs
  for (std::size_t i = 0; i < descs.size(); ++i) {
    const bool have = read_only || descs[i].name == rocksdb::kDefaultColumnFamilyName ||
                      std::find(existing.begin(), existing.end(), descs[i].name) != existing.end();
    (have ? present : missing).push_back(descs[i]);
    (have ? present_at : missing_at).push_back(i);
  }
  std::vector<rocksdb::ColumnFamilyHandle*> hs(descs.size(), nullptr), opened, created;
  rocksdb::DB* raw = nullptr;
  auto s = read_only ? rocksdb::DB::OpenForReadOnly(dbo, dir.string(), present, &opened, &raw)
                          : rocksdb::DB::Open(dbo, dir.string(), present, &opened, &raw);
  if (!s.ok()) return unexpected{from_status(s, fmt::format("open {}", dir.string()))};
  db.reset(raw);
  db_read_only = read_only;
  for (std::size_t i = 0; i < opened.size(); ++i) hs[present_at[i]] = opened[i];
  if (!missing.empty()) {
    s = db->CreateColumnFamilies(missing, &created);
    for (std::size_t i = 0; i < created.size(); ++i) hs[missing_at[i]] = created[i];
  }
  handles.assign(hs.begin(), hs.begin() + column_family_count);
  foreign.assign(hs.begin() + column_family_count, hs.end());
  if (!s.ok()) return unexpected{from_status(s, fmt::format("create column families in {}", dir.string()))};
  return check_format(fresh, read_only);
}

expected<std::unique_ptr<store>, error> store::open(const std::filesystem::path& dir,
                                                    const open_options& o) try {
  auto p = std::make_unique<impl>();
  p->env = o.env;
  p->dir = dir;
  p->opts = o;
  p->write_options.sync = o.sync_writes;

  std::error_code ec;
  const bool exists = std::filesystem::exists(dir / "CURRENT", ec);
  if (!exists && (o.read_only || !o.create_if_missing))
    return unexpected{make_error(error::code::not_found,
                                 fmt::format("no database at {}", dir.string()))};
  // RocksDB creates only the last path component; data_dir may be nested and new.
  if (!exists && !std::filesystem::exists(dir, ec)) {
    std::filesystem::create_directories(dir, ec);
    if (ec)
      return unexpected{make_error(ec == std::errc::no_space_on_device ? error::code::no_space
                                                                       : error::code::io_error,
                                   fmt::format("create {}: {}", dir.string(), ec.message()))};
  }
  if (auto r = p->open_db(!exists, o.read_only); !r) return unexpected{r.error()};
  return std::unique_ptr<store>(new store(std::move(p)));
} catch (const std::exception& e) {
  return unexpected{from_exception(e, "open database")};
}

expected<write_stats, error> store::write(std::span<const message_record> messages,
                                          std::span<const checkpoint_update> checkpoints,
                                          std::span<const uidl_update> uidls) try {
  auto& d = *impl_;
  if (d.opts.read_only)
    return unexpected{make_error(error::code::invalid_argument, "store is open read-only")};
  for (const auto& m : messages)
    if (m.key.empty())
      return unexpected{make_error(error::code::invalid_argument, "message record without key")};
  for (const auto& c : checkpoints)
    if (c.user.empty() || c.folder.empty())
      return unexpected{
          make_error(error::code::invalid_argument, "checkpoint without user or folder")};
  for (const auto& u : uidls)
    if (u.user.empty() || u.uidl.empty())
      return unexpected{make_error(error::code::invalid_argument, "UIDL update without user or UIDL")};

  std::lock_guard lock(d.write_mu);
  if (auto r = d.recover(); !r) return unexpected{r.error()};

  // Current stored state of every distinct key, fetched in one MultiGet.
  // `cur` is the record as this batch leaves it; a key first seen in this batch whose
  // incoming record merges to itself is not copied: `view` points at it (into `messages`)
  // until another record of the batch merges into it.
  struct slot {
    std::optional<message_record> stored;
    std::optional<message_record> cur;
    const message_record* view = nullptr;
    const message_record* current() const { return view ? view : cur ? &*cur : nullptr; }
    const message_record* latest() const { return current() ? current() : stored ? &*stored : nullptr; }
  };
  std::unordered_map<std::string, slot> slots;
  std::vector<std::string> order;
  write_stats stats;
  for (const auto& m : messages)
    if (slots.try_emplace(m.key).second) order.push_back(m.key);
  if (!order.empty()) {
    std::vector<std::string> db_keys;
    db_keys.reserve(order.size());
    for (const auto& k : order) db_keys.push_back(keys::message(k));
    std::vector<rocksdb::Slice> key_slices(db_keys.begin(), db_keys.end());
    std::vector<rocksdb::ColumnFamilyHandle*> cfs(order.size(), d.h(cf::messages));
    std::vector<std::string> values;
    auto sts = d.db->MultiGet(rocksdb::ReadOptions(), cfs, key_slices, &values);
    for (std::size_t i = 0; i < order.size(); ++i) {
      if (sts[i].IsNotFound()) continue;
      if (!sts[i].ok()) return unexpected{from_status(sts[i], "read stored message")};
      auto rec = codec::decode_message(order[i], values[i]);
      if (!rec) {
        // Refusing would wedge the writer on this key forever: the incoming record replaces
        // it. Its old index entries stay behind, but queries re-check every record.
        ++stats.corrupt_replaced;
        continue;
      }
      slots[order[i]].stored = std::move(*rec);
    }
  }

  // Thread inheritance: a record naming a parent ("thread" reasons: In-Reply-To/References,
  // see core/matcher.hpp) gets the parent's items and tickets when the parent is tracked —
  // earlier in this batch or already stored. Done here because the writer owns the store;
  // a parent tracked only after its reply is not revisited.
  auto inherit = [&](const message_record& m) -> std::optional<message_record> {
    if (std::none_of(m.reasons.begin(), m.reasons.end(), [](auto& r) { return r.kind == "thread"; }))
      return std::nullopt;
    message_record out = m;
    for (const auto& r : m.reasons) {
      if (r.kind != "thread") continue;
      auto id = normalise_message_id(r.target);
      if (id.empty()) continue;
      std::optional<message_record> parent;
      if (auto it = slots.find("<" + id + ">"); it != slots.end() && it->second.latest())
        parent = *it->second.latest();
      else
        parent = find_by_message_id(r.target);
      if (!parent || parent->key == m.key) continue;
      auto take = [&](const std::vector<std::string>& from, std::vector<std::string>& into, const char* kind) {
        for (const auto& x : from) {
          if (std::find(into.begin(), into.end(), x) != into.end()) continue;
          into.push_back(x);
          out.reasons.push_back({kind, x, "thread: " + r.cause + " " + r.target + " is linked to it"});
        }
      };
      take(parent->items, out.items, "item");
      take(parent->tickets, out.tickets, "ticket");
    }
    return out;
  };

  // Ticket numbers: one counter per prefix in meta, read once and written with the batch.
  // Writers serialise on write_mu (and RocksDB's lock keeps other processes out), so a
  // number is never handed out twice.
  std::map<std::string, std::uint64_t> ticket_counters;
  std::string v;
  auto allocate_ticket = [&](const std::string& prefix) -> expected<std::string, error> {
    auto [it, fresh] = ticket_counters.try_emplace(prefix, 0);
    if (fresh) {
      const auto k = std::string(keys::meta_ticket_counter) + prefix;
      if (auto s = d.db->Get(rocksdb::ReadOptions(), d.h(cf::meta), k, &v); s.ok()) {
        codec::reader r(v);
        it->second = r.be64();
        if (!r.ok() || !r.at_end())
          return unexpected{make_error(error::code::corruption, "ticket counter " + prefix + " is damaged")};
      } else if (!s.IsNotFound()) {
        return unexpected{from_status(s, "read ticket counter")};
      }
    }
    return prefix + std::to_string(++it->second);
  };
  // Replaces the ticket markers of `rec` by numbers. `before` is the record as it stands (an
  // earlier record of this batch or the stored one): a marker whose "ticket" reason it
  // already has (same cause) keeps that number, so replays allocate nothing.
  auto resolve_tickets = [&](message_record& rec, const message_record* before) -> std::optional<error> {
    for (std::size_t i = 0; i < rec.reasons.size(); ++i) {
      const auto marker = rec.reasons[i].target;
      if (rec.reasons[i].kind != "ticket" || marker.empty() || marker[0] != '@') continue;
      std::string number;
      if (before)
        for (const auto& r : before->reasons)
          if (r.kind == "ticket" && r.cause == rec.reasons[i].cause && !r.target.empty() && r.target[0] != '@') {
            number = r.target;
            break;
          }
      std::string prefix;
      if (marker.starts_with(new_ticket_marker)) {
        prefix = marker.substr(new_ticket_marker.size());
      } else if (marker.starts_with(root_ticket_marker)) {
        auto rest = std::string_view(marker).substr(root_ticket_marker.size());
        auto slash = rest.find('/');
        prefix = std::string(rest.substr(0, slash));
        if (number.empty() && slash != std::string_view::npos) {
          const std::string root(rest.substr(slash + 1));
          std::optional<message_record> parent;
          if (auto it = slots.find(root); it != slots.end() && it->second.latest())
            parent = *it->second.latest();
          else
            parent = d.find_record(root);
          if (parent && !parent->tickets.empty()) number = parent->tickets.front();
        }
      } else {
        continue;  // not ours: kept as written
      }
      if (number.empty()) {
        auto n = allocate_ticket(prefix);
        if (!n) return n.error();
        number = std::move(*n);
      }
      for (auto& t : rec.tickets)
        if (t == marker) t = number;
      for (auto& r : rec.reasons)
        if (r.target == marker) r.target = number;
    }
    return std::nullopt;
  };
  // Rule hits: a rule counts once per message, when its "rule" reason first reaches the record.
  std::map<std::string, std::uint64_t> rule_hits;
  const auto now = static_cast<std::int64_t>(std::chrono::duration_cast<std::chrono::seconds>(
      std::chrono::system_clock::now().time_since_epoch()).count());

  for (const auto& m_in : messages) {
    auto& sl0 = slots[m_in.key];
    const message_record* before = sl0.latest();
    std::optional<message_record> resolved;
    if (std::any_of(m_in.tickets.begin(), m_in.tickets.end(),
                    [](const std::string& t) { return !t.empty() && t[0] == '@'; })) {
      resolved = m_in;
      if (auto e = resolve_tickets(*resolved, before)) return unexpected{*e};
    }
    const auto& m_r = resolved ? *resolved : m_in;
    std::set<std::string_view> fired;
    for (const auto& r : m_r.reasons)
      if (r.kind == "rule") fired.insert(r.target);
    for (auto name : fired)
      if (!before || std::none_of(before->reasons.begin(), before->reasons.end(), [&](const link_reason& r) {
            return r.kind == "rule" && r.target == name;
          }))
        ++rule_hits[std::string(name)];
    auto with_parents = inherit(m_r);
    const auto& m = with_parents ? *with_parents : m_r;
    auto& sl = slots[m.key];
    const bool brand_new = !sl.latest();
    merge_delta delta;
    if (brand_new && &m == &m_in && merges_to_itself(m)) {
      sl.view = &m_in;
      delta.sightings_added = m.sightings.size();
      delta.changed = true;
    } else {
      if (!sl.cur) {
        sl.cur = sl.view ? *sl.view : sl.stored ? *sl.stored : message_record{};
        sl.view = nullptr;
        sl.cur->key = m.key;
      }
      delta = merge_into(*sl.cur, m);
    }
    stats.new_sightings += delta.sightings_added;
    stats.per_record.push_back({brand_new, static_cast<std::uint32_t>(delta.sightings_added)});
    if (brand_new)
      ++stats.new_messages;
    else if (delta.changed)
      ++stats.updated;
    else
      ++stats.unchanged;
  }

  rocksdb::WriteBatch batch;
  std::map<std::string, std::uint64_t> bumps;  // user -> messages newly attached
  std::uint64_t created = 0;
  for (const auto& key : order) {
    const auto& sl = slots[key];
    if (sl.stored && *sl.stored == *sl.cur) continue;  // replay: nothing to write
    const auto& cur = *sl.current();
    batch.Put(d.h(cf::messages), keys::message(key), codec::encode(cur));
    if (!sl.stored) ++created;
    // message_ids only holds ids whose key is not simply "<id>" (keys computed otherwise):
    // for message_key()'s own keys the lookup goes straight to messages, one insert fewer.
    if (auto id = normalise_message_id(cur.message_id);
        !id.empty() && !(key.size() == id.size() + 2 && key.front() == '<' && key.back() == '>' &&
                         key.compare(1, id.size(), id) == 0) &&
        (!sl.stored || sl.stored->message_id != cur.message_id))
      batch.Put(d.h(cf::message_ids), keys::message_id(id), key);
    // merge_into() only appends to the link lists and only ever sets a date that was 0, so
    // what is new is exactly the tail past the stored lengths: O(new links), not O(links),
    // which matters for a message seen in thousands of mailboxes.
    const message_record empty;
    const message_record* before = &empty;
    if (sl.stored && sl.stored->date == cur.date) {
      before = &*sl.stored;
    } else if (sl.stored) {
      for (const auto& [c, k] : index_entries(*sl.stored)) batch.Delete(d.h(c), k);
    }
    put_index_tail(batch, d.h(cf::index_user), cur.users, before->users.size(), cur, false);
    put_index_tail(batch, d.h(cf::index_contact), cur.contacts, before->contacts.size(), cur, true);
    put_index_tail(batch, d.h(cf::index_account), cur.accounts, before->accounts.size(), cur, false);
    put_index_tail(batch, d.h(cf::index_item), cur.items, before->items.size(), cur, false);
    const auto known_users = sl.stored ? sl.stored->users.size() : 0;
    for (std::size_t i = known_users; i < cur.users.size(); ++i) ++bumps[cur.users[i]];
  }

  // Read-modify-write of counters: a failed read must fail the batch, not reset a count.
  for (const auto& [user, n] : bumps) {
    mailbox_state st;
    st.user = user;
    const auto k = keys::mailbox_state(user);
    if (auto s = d.db->Get(rocksdb::ReadOptions(), d.h(cf::mailbox_state), k, &v); s.ok()) {
      if (auto decoded = codec::decode_mailbox_state(user, v))
        st = std::move(*decoded);
      else
        ++stats.corrupt_replaced;  // start the count again rather than wedge the writer
    } else if (!s.IsNotFound()) {
      return unexpected{from_status(s, "read mailbox state")};
    }
    st.messages_tracked += n;
    batch.Put(d.h(cf::mailbox_state), k, codec::encode(st));
  }
  if (created > 0) {
    std::uint64_t count = 0;
    const std::string k(keys::meta_message_count);
    if (auto s = d.db->Get(rocksdb::ReadOptions(), d.h(cf::meta), k, &v); s.ok()) {
      codec::reader r(v);
      count = r.be64();
      if (!r.ok() || !r.at_end()) count = 0;  // damaged: restart rather than wedge
    } else if (!s.IsNotFound()) {
      return unexpected{from_status(s, "read message count")};
    }
    batch.Put(d.h(cf::meta), k, be64_value(count + created));
  }
  for (const auto& [prefix, n] : ticket_counters)
    batch.Put(d.h(cf::meta), std::string(keys::meta_ticket_counter) + prefix, be64_value(n));
  for (const auto& [name, n] : rule_hits) {
    rule_stat st;
    st.name = name;
    const auto k = keys::rule_stat(name);
    if (auto s = d.db->Get(rocksdb::ReadOptions(), d.h(cf::rule_stats), k, &v); s.ok()) {
      if (auto decoded = codec::decode_rule_stat(name, v))
        st = std::move(*decoded);
      else
        ++stats.corrupt_replaced;
    } else if (!s.IsNotFound()) {
      return unexpected{from_status(s, "read rule stats")};
    }
    st.hits += n;
    st.last_hit = now;
    batch.Put(d.h(cf::rule_stats), k, codec::encode(st));
  }
  for (const auto& c : checkpoints)
    batch.Put(d.h(cf::checkpoints), keys::checkpoint(c.user, c.folder), codec::encode(c.cp));
  for (const auto& u : uidls) {
    if (u.removed)
      batch.Delete(d.h(cf::pop3_uidls), keys::pop3_uidl(u.user, u.uidl));
    else
      batch.Put(d.h(cf::pop3_uidls), keys::pop3_uidl(u.user, u.uidl), codec::encode_uid(u.uid));
  }

  if (batch.Count() > 0) {
    if (auto s = d.db->Write(d.write_options, &batch); !s.ok()) {
      d.needs_recovery = true;
      return unexpected{from_status(s, "write batch")};
    }
  }
  return stats;
} catch (const std::exception& e) {
  return unexpected{from_exception(e, "write")};
}

std::optional<folder_checkpoint> store::checkpoint(std::string_view user,
                                                   std::string_view folder) const try {
  std::shared_lock lock(impl_->db_mu);
  if (!impl_->db) return std::nullopt;
  auto v = impl_->get(cf::checkpoints, keys::checkpoint(user, folder));
  if (!v) return std::nullopt;
  auto cp = codec::decode_checkpoint(*v);
  if (!cp) return std::nullopt;
  return *cp;
} catch (const std::exception&) {
  return std::nullopt;
}

std::map<std::string, folder_checkpoint> store::checkpoints(std::string_view user) const try {
  std::shared_lock lock(impl_->db_mu);
  if (!impl_->db) return {};
  std::map<std::string, folder_checkpoint> out;
  const auto prefix = keys::checkpoint_prefix(user);
  std::unique_ptr<rocksdb::Iterator> it(
      impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->h(cf::checkpoints)));
  for (it->Seek(prefix); it->Valid() && starts_with(it->key(), prefix); it->Next()) {
    auto k = keys::decode_checkpoint(view(it->key()));
    auto cp = codec::decode_checkpoint(view(it->value()));
    if (k && cp) out.emplace(std::move(k->folder), *cp);
  }
  return out;
} catch (const std::exception&) {
  return {};
}

std::map<std::string, std::uint32_t> store::pop3_uidls(std::string_view user) const try {
  std::shared_lock lock(impl_->db_mu);
  if (!impl_->db) return {};
  std::map<std::string, std::uint32_t> out;
  const auto prefix = keys::pop3_uidl_prefix(user);
  std::unique_ptr<rocksdb::Iterator> it(
      impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->h(cf::pop3_uidls)));
  for (it->Seek(prefix); it->Valid() && starts_with(it->key(), prefix); it->Next()) {
    auto uidl = keys::decode_pop3_uidl(view(it->key()), user);
    auto uid = codec::decode_uid(view(it->value()));
    if (uidl && uid) out.emplace(std::move(*uidl), *uid);
  }
  return out;
} catch (const std::exception&) {
  return {};
}

std::optional<message_record> store::impl::find_record(std::string_view key) const {
  auto v = get(cf::messages, keys::message(key));
  if (!v) return std::nullopt;
  auto rec = codec::decode_message(key, *v);
  if (!rec) return std::nullopt;
  return std::move(*rec);
}

std::optional<message_record> store::find_by_key(std::string_view key) const try {
  std::shared_lock lock(impl_->db_mu);
  if (!impl_->db) return std::nullopt;
  return impl_->find_record(key);
} catch (const std::exception&) {
  return std::nullopt;
}

std::optional<message_record> store::find_by_message_id(std::string_view message_id) const try {
  auto id = normalise_message_id(message_id);
  if (id.empty()) return std::nullopt;
  std::shared_lock lock(impl_->db_mu);
  if (!impl_->db) return std::nullopt;
  if (auto direct = impl_->find_record("<" + id + ">")) return direct;
  auto key = impl_->get(cf::message_ids, keys::message_id(id));
  if (!key) return std::nullopt;
  return impl_->find_record(*key);
} catch (const std::exception&) {
  return std::nullopt;
}

std::vector<message_record> store::query_messages(const message_filter& f) const try {
  std::shared_lock lock(impl_->db_mu);
  if (!impl_->db) return {};
  const auto contact = ascii_lower(f.contact);
  auto has = [](const std::vector<std::string>& v, const std::string& x) {
    return x.empty() || std::find(v.begin(), v.end(), x) != v.end();
  };
  auto matches = [&](const message_record& r) {
    if (!contact.empty() &&
        std::none_of(r.contacts.begin(), r.contacts.end(),
                     [&](const std::string& c) { return ascii_lower(c) == contact; }))
      return false;
    return has(r.users, f.user) && has(r.accounts, f.account) && has(r.items, f.item);
  };
  std::vector<message_record> out;
  const auto full = [&] { return f.limit != 0 && out.size() >= f.limit; };

  // Drive from the most selective index the filter names; check the rest on the record.
  std::optional<std::pair<cf, std::string>> driver;
  if (!f.item.empty())
    driver.emplace(cf::index_item, f.item);
  else if (!contact.empty())
    driver.emplace(cf::index_contact, contact);
  else if (!f.account.empty())
    driver.emplace(cf::index_account, f.account);
  else if (!f.user.empty())
    driver.emplace(cf::index_user, f.user);

  if (driver) {
    const auto prefix = keys::index_prefix(driver->second);
    std::unique_ptr<rocksdb::Iterator> it(
        impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->h(driver->first)));
    for (it->Seek(prefix); it->Valid() && starts_with(it->key(), prefix) && !full(); it->Next()) {
      auto k = keys::decode_index(view(it->key()));
      if (!k) continue;
      auto rec = impl_->find_record(k->key);
      if (rec && matches(*rec)) out.push_back(std::move(*rec));
    }
    return out;
  }

  // No filter: every record, ordered exactly as an index scan would order them. Only the
  // order keys are kept while scanning; the records that make the cut are read again.
  std::vector<std::pair<std::string, std::string>> order;  // (order key, message key)
  std::unique_ptr<rocksdb::Iterator> it(
      impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->h(cf::messages)));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto key = keys::decode_message(view(it->key()));
    if (!key) continue;
    auto rec = codec::decode_message(*key, view(it->value()));
    if (!rec) continue;
    order.emplace_back(keys::index("", rec->date, rec->key), std::move(*key));
  }
  const auto cut = f.limit != 0 && f.limit < order.size() ? f.limit : order.size();
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(cut), order.end());
  for (std::size_t i = 0; i < cut; ++i)
    if (auto rec = impl_->find_record(order[i].second)) out.push_back(std::move(*rec));
  return out;
} catch (const std::exception&) {
  return {};
}

expected<void, error> store::put_mailbox_state(const mailbox_state& s) try {
  auto& d = *impl_;
  if (d.opts.read_only)
    return unexpected{make_error(error::code::invalid_argument, "store is open read-only")};
  if (s.user.empty())
    return unexpected{make_error(error::code::invalid_argument, "mailbox state without user")};
  std::lock_guard lock(d.write_mu);
  if (auto r = d.recover(); !r) return unexpected{r.error()};
  auto next = s;
  next.messages_tracked = 0;
  const auto k = keys::mailbox_state(s.user);
  std::string v;
  if (auto st = d.db->Get(rocksdb::ReadOptions(), d.h(cf::mailbox_state), k, &v); st.ok()) {
    // A damaged value is replaced (count restarts) rather than blocking every status update.
    if (auto old = codec::decode_mailbox_state(s.user, v))
      next.messages_tracked = old->messages_tracked;
  } else if (!st.IsNotFound()) {
    return unexpected{from_status(st, "read mailbox state")};
  }
  // Not fsynced on its own: one sync per mailbox per poll was the writer's largest cost at
  // 10,000+ mailboxes. The record reaches the WAL file at once (another process sees it, a
  // crash of this one keeps it) and is synced with the next group commit; only a power loss
  // before that can lose it, and it is status (last scan, failures, slow mark), rewritten by
  // the next pass — never a message or a checkpoint.
  auto wo = d.write_options;
  wo.sync = false;
  auto st = d.db->Put(wo, d.h(cf::mailbox_state), k, codec::encode(next));
  if (!st.ok()) {
    d.needs_recovery = true;
    return unexpected{from_status(st, "write mailbox state")};
  }
  return {};
} catch (const std::exception& e) {
  return unexpected{from_exception(e, "put mailbox state")};
}

std::optional<mailbox_state> store::mailbox_state_of(std::string_view user) const try {
  std::shared_lock lock(impl_->db_mu);
  if (!impl_->db) return std::nullopt;
  auto v = impl_->get(cf::mailbox_state, keys::mailbox_state(user));
  if (!v) return std::nullopt;
  auto s = codec::decode_mailbox_state(user, *v);
  if (!s) return std::nullopt;
  return std::move(*s);
} catch (const std::exception&) {
  return std::nullopt;
}

std::vector<mailbox_state> store::mailbox_states() const try {
  std::shared_lock lock(impl_->db_mu);
  if (!impl_->db) return {};
  std::vector<mailbox_state> out;
  std::unique_ptr<rocksdb::Iterator> it(
      impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->h(cf::mailbox_state)));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto user = keys::decode_mailbox_state(view(it->key()));
    if (!user) continue;
    auto s = codec::decode_mailbox_state(*user, view(it->value()));
    if (s) out.push_back(std::move(*s));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.user < b.user; });
  return out;
} catch (const std::exception&) {
  return {};
}

expected<void, error> store::put_notification(const notification_record& n) try {
  auto& d = *impl_;
  if (d.opts.read_only)
    return unexpected{make_error(error::code::invalid_argument, "store is open read-only")};
  if (n.user.empty() || n.kind.empty())
    return unexpected{make_error(error::code::invalid_argument, "notification without user or kind")};
  std::lock_guard lock(d.write_mu);
  if (auto r = d.recover(); !r) return unexpected{r.error()};
  auto st = d.db->Put(d.write_options, d.h(cf::notifications), keys::notification(n.at, n.user, n.kind),
                      codec::encode(n));
  if (!st.ok()) {
    d.needs_recovery = true;
    return unexpected{from_status(st, "write notification")};
  }
  return {};
} catch (const std::exception& e) {
  return unexpected{from_exception(e, "put notification")};
}

std::vector<notification_record> store::notifications(std::size_t limit) const try {
  std::shared_lock lock(impl_->db_mu);
  if (!impl_->db) return {};
  std::vector<notification_record> out;
  std::unique_ptr<rocksdb::Iterator> it(
      impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->h(cf::notifications)));
  for (it->SeekToLast(); it->Valid() && (limit == 0 || out.size() < limit); it->Prev()) {
    auto k = keys::decode_notification(view(it->key()));
    if (!k) continue;
    auto n = codec::decode_notification(k->at, k->user, k->kind, view(it->value()));
    if (n) out.push_back(std::move(*n));
  }
  return out;
} catch (const std::exception&) {
  return {};
}

std::vector<rule_stat> store::rule_stats() const try {
  std::shared_lock lock(impl_->db_mu);
  if (!impl_->db) return {};
  std::vector<rule_stat> out;
  std::unique_ptr<rocksdb::Iterator> it(
      impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->h(cf::rule_stats)));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto name = keys::decode_rule_stat(view(it->key()));
    if (!name) continue;
    if (auto s = codec::decode_rule_stat(*name, view(it->value()))) out.push_back(std::move(*s));
  }
  return out;
} catch (const std::exception&) {
  return {};
}

expected<void, error> store::put_outbox(const outbox_record& o) try {
  auto& d = *impl_;
  if (d.opts.read_only)
    return unexpected{make_error(error::code::invalid_argument, "store is open read-only")};
  if (o.message_id.empty())
    return unexpected{make_error(error::code::invalid_argument, "outbox entry without Message-ID")};
  std::lock_guard lock(d.write_mu);
  if (auto r = d.recover(); !r) return unexpected{r.error()};
  auto st = d.db->Put(d.write_options, d.h(cf::outbox), keys::outbox(o.message_id), codec::encode(o));
  if (!st.ok()) {
    d.needs_recovery = true;
    return unexpected{from_status(st, "write outbox entry")};
  }
  return {};
} catch (const std::exception& e) {
  return unexpected{from_exception(e, "put outbox entry")};
}

std::optional<outbox_record> store::outbox_entry(std::string_view message_id) const try {
  std::shared_lock lock(impl_->db_mu);
  if (!impl_->db) return std::nullopt;
  auto v = impl_->get(cf::outbox, keys::outbox(message_id));
  if (!v) return std::nullopt;
  auto o = codec::decode_outbox(message_id, *v);
  if (!o) return std::nullopt;
  return std::move(*o);
} catch (const std::exception&) {
  return std::nullopt;
}

std::vector<outbox_record> store::outbox() const try {
  std::shared_lock lock(impl_->db_mu);
  if (!impl_->db) return {};
  std::vector<outbox_record> out;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->h(cf::outbox)));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto id = keys::decode_outbox(view(it->key()));
    if (!id) continue;
    auto o = codec::decode_outbox(*id, view(it->value()));
    if (o) out.push_back(std::move(*o));
  }
  std::stable_sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.created < b.created; });
  return out;
} catch (const std::exception&) {
  return {};
}

std::uint64_t store::impl::count() const {
  auto v = get(cf::meta, std::string(keys::meta_message_count));
  if (!v) return 0;
  codec::reader r(*v);
  auto n = r.be64();
  return r.ok() ? n : 0;
}

std::uint64_t store::message_count() const try {
  std::shared_lock lock(impl_->db_mu);
  if (!impl_->db) return 0;
  return impl_->count();
} catch (const std::exception&) {
  return 0;
}

std::uint32_t store::format_version() const { return impl_->version; }
bool store::read_only() const { return impl_->opts.read_only; }

}  // namespace mscan::storage
