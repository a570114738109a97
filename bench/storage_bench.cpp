// Micro benchmark of the storage layer: records/s of store::write() at batch sizes 1, 100 and
// 1000 (sync WAL per batch, as in production), next to raw RocksDB WriteBatch puts of values
// of the same size in the same run, plus the replay case (every record unchanged) and a query.
//
// fsync latency on a shared VM disk swings by 10x between seconds, so store and raw runs
// alternate and each figure is the median of --rounds runs.
//
//   storage_bench [--records N] [--rounds R] [--no-sync]
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "storage/codec.hpp"
#include "storage/store.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
namespace st = mscan::storage;

struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "mscan-storage-bench-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      std::perror("mkdtemp");
      std::exit(1);
    }
    path = pattern;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// A header-path record as the writer would hand it in: one sighting, a few links.
st::message_record make_record(std::size_t i) {
  st::message_record m;
  m.message_id = "<" + std::to_string(i) + ".1700000000@mail.acme.example>";
  m.date = 1700000000 + static_cast<std::int64_t>(i);
  m.size = 13000 + i % 1000;
  m.from = "bob" + std::to_string(i % 50) + "@acme.example";
  m.subject = "Re: quote for the Q4 order, revision " + std::to_string(i);
  m.to = {"sim" + std::to_string(i % 1000) + "@corp.example"};
  m.cc = {"carol@corp.example"};
  m.key = st::message_key(m.message_id, m.date, m.size, m.from, m.subject);
  const auto user = "sim" + std::to_string(i % 1000);
  m.sightings = {{user, "INBOX", 1, static_cast<std::uint32_t>(i + 1)}};
  m.users = {user};
  m.contacts = {m.from};
  m.accounts = {"Acme Ltd"};
  m.reasons = {{"contact", m.from, "From: " + m.from}, {"account", "Acme Ltd", "domain acme.example"}};
  return m;
}

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

double bench_store(const std::vector<st::message_record>& recs, std::size_t batch, bool sync,
                   double* replay_rate, double* query_ms) {
  temp_dir dir;
  st::open_options o;
  o.sync_writes = sync;
  auto db = st::store::open(dir.path / "db", o);
  if (!db) {
    std::fprintf(stderr, "open: %s\n", db.error().message.c_str());
    std::exit(1);
  }
  auto run = [&] {
    auto t0 = clock_type::now();
    for (std::size_t i = 0; i < recs.size(); i += batch) {
      auto n = std::min(batch, recs.size() - i);
      std::vector<st::checkpoint_update> cps = {
          {recs[i].users[0], "INBOX", {1, static_cast<std::uint32_t>(i + n), 0}}};
      auto r = (*db)->write(std::span(recs).subspan(i, n), cps);
      if (!r) {
        std::fprintf(stderr, "write: %s\n", r.error().message.c_str());
        std::exit(1);
      }
    }
    return static_cast<double>(recs.size()) / seconds_since(t0);
  };
  const double rate = run();
  if (replay_rate) *replay_rate = run();
  if (query_ms) {
    auto t0 = clock_type::now();
    auto found = (*db)->query_messages({.user = "sim7", .limit = 50});
    *query_ms = seconds_since(t0) * 1000.0;
    if (found.empty()) std::fprintf(stderr, "query found nothing\n");
  }
  return rate;
}

double bench_raw(const std::vector<st::message_record>& recs, std::size_t batch, bool sync) {
  temp_dir dir;
  rocksdb::Options o;
  o.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  if (!rocksdb::DB::Open(o, (dir.path / "raw").string(), &raw).ok()) {
    std::fprintf(stderr, "raw open failed\n");
    std::exit(1);
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  // Same keys and values as the store writes for the record itself; no reads, no indexes.
  std::vector<std::pair<std::string, std::string>> kv;
  kv.reserve(recs.size());
  for (const auto& r : recs) kv.emplace_back(r.key, st::codec::encode(r));
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  auto t0 = clock_type::now();
  for (std::size_t i = 0; i < kv.size(); i += batch) {
    rocksdb::WriteBatch b;
    for (std::size_t j = i; j < std::min(kv.size(), i + batch); ++j) b.Put(kv[j].first, kv[j].second);
    if (!db->Write(wo, &b).ok()) {
      std::fprintf(stderr, "raw write failed\n");
      std::exit(1);
    }
  }
  const double rate = static_cast<double>(kv.size()) / seconds_since(t0);
  db->Close();
  return rate;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t records = 20000;
  bool sync = true;
  int rounds = 3;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--records") == 0 && i + 1 < argc)
      records = std::strtoul(argv[++i], nullptr, 10);
    else if (std::strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
      rounds = std::max(1, std::atoi(argv[++i]));
    else if (std::strcmp(argv[i], "--no-sync") == 0)
      sync = false;
    else {
      std::fprintf(stderr, "usage: storage_bench [--records N] [--rounds R] [--no-sync]\n");
      return 2;
    }
  }
  std::vector<st::message_record> recs;
  recs.reserve(records);
  for (std::size_t i = 0; i < records; ++i) recs.push_back(make_record(i));
  if (records == 0) return 2;
  std::printf("records=%zu sync=%s value_bytes~%zu rounds=%d (medians)\n", records,
              sync ? "yes" : "no", st::codec::encode(recs[0]).size(), rounds);
  std::printf("%-6s %14s %14s %16s %10s\n", "batch", "store rec/s", "raw put rec/s",
              "store replay/s", "query ms");
  for (std::size_t batch : {std::size_t{1}, std::size_t{100}, std::size_t{1000}}) {
    // A sync per record is slow: measure batch 1 on a slice so the run stays short.
    std::vector<st::message_record> slice(
        recs.begin(), recs.begin() + static_cast<std::ptrdiff_t>(
                                         batch == 1 ? std::min<std::size_t>(records, 2000) : records));
    std::vector<double> s, r, replay, query;
    for (int round = 0; round < rounds; ++round) {
      double rp = 0, q = 0;
      s.push_back(bench_store(slice, batch, sync, &rp, &q));
      replay.push_back(rp);
      query.push_back(q);
      r.push_back(bench_raw(slice, batch, sync));
    }
    auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    std::printf("%-6zu %14.0f %14.0f %16.0f %10.2f\n", batch, median(s), median(r),
                median(replay), median(query));
  }
  return 0;
}
