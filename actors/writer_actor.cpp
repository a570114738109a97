#include "actors/writer_actor.hpp"

#include <fmt/format.h>

#include <sys/statvfs.h>

#include <algorithm>
#include <optional>
#include <span>
#include <thread>
#include <utility>

namespace mscan::actors {

using namespace mscan::atoms;

namespace {

std::string_view reason_of(const storage::error& e) {
  switch (e.kind) {
    case storage::error::code::no_space: return "disk_full";
    case storage::error::code::corruption: return "storage_corruption";
    default: return "storage_error";
  }
}

// RocksDB's WAL writer does not survive ENOSPC gracefully (Debian's build even asserts),
// so the writer refuses a commit itself while the file system is below the reserve.
std::optional<storage::error> check_free_space(const writer_settings& s) {
  if (s.min_free_bytes == 0)
    return std::nullopt;
  struct statvfs vfs {};
  if (::statvfs(s.data_dir.c_str(), &vfs) != 0)
    return std::nullopt;
  auto free_bytes = static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  if (free_bytes >= s.min_free_bytes)
    return std::nullopt;
  return storage::error{storage::error::code::no_space,
                        fmt::format("{} has {} KiB free, below the reserve of {} KiB (min_free_disk_mb)",
                                    s.data_dir.string(), free_bytes / 1024, s.min_free_bytes / 1024)};
}

// The server-side actions the rules asked for on this copy ("action" reasons of
// core::link_message), in a fixed order: flags first, then the move (only the first: a copy
// cannot go to two folders), then delete.
void collect_actions(const storage::message_record& r, std::vector<server_action>& out) {
  if (r.sightings.empty())
    return;
  const auto& s = r.sightings.front();
  std::vector<std::string> kinds;
  bool moved = false;
  for (auto want : {"mark_read", "move:", "delete"})
    for (auto& reason : r.reasons) {
      if (reason.kind != "action" || !reason.target.starts_with(want))
        continue;
      if (std::string_view{want} == "move:" && std::exchange(moved, true))
        continue;
      if (std::find(kinds.begin(), kinds.end(), reason.target) != kinds.end())
        continue;
      kinds.push_back(reason.target);
      out.push_back({r.key, s.folder, s.uidvalidity, s.uid, reason.target});
    }
}

} // namespace

caf::behavior writer_actor(caf::event_based_actor* self, std::shared_ptr<storage::store> db,
                           writer_settings settings) {
  // Batches waiting for the next group commit; bounded by the mailboxes' credit.
  auto pending = std::make_shared<std::vector<matched_batch>>();
  auto flush_scheduled = std::make_shared<bool>(false);
  // Each commit fsyncs the WAL, the writer's largest CPU cost. Unpaced, how many batches a
  // commit gathers depends on how busy the writer happens to be: at 10,000 simulator
  // mailboxes a change of timing (the lease's state read answered sooner) made commits 2x as many
  // (~1 batch each) and the run 20% more CPU. Pacing starts a commit at least
  // commit_interval after the previous one ended; an idle writer commits at once.
  auto last_commit = std::make_shared<std::chrono::steady_clock::time_point>();
  // Told to exit (shutdown) with batches still waiting for a paced commit: commit them first,
  // then quit, so a batch the writer accepted is always written and acknowledged.
  auto exiting = std::make_shared<std::optional<caf::error>>();
  self->set_exit_handler([=](caf::exit_msg& m) {
    if (pending->empty())
      self->quit(std::move(m.reason));
    else
      *exiting = std::move(m.reason);
  });
  auto quit_if_done = [=] {
    if (*exiting && pending->empty())
      self->quit(std::move(**exiting));
  };
  auto state_of = [db](const std::string& user) {
    auto s = db->mailbox_state_of(user);
    if (s)
      return std::move(*s);
    storage::mailbox_state fresh;
    fresh.user = user;
    return fresh;
  };
  return {
    [=](write_atom, matched_batch& b) {
      pending->push_back(std::move(b));
      if (!*flush_scheduled) {
        *flush_scheduled = true;
        self->send(self, flush_atom::value);
      }
    },
    [=](flush_atom) {
      *flush_scheduled = false;
      if (pending->empty())
        return quit_if_done();
      if (auto due = *last_commit + settings.commit_interval, now = std::chrono::steady_clock::now(); now < due) {
        *flush_scheduled = true;
        self->delayed_send(self, std::chrono::ceil<std::chrono::microseconds>(due - now), flush_atom::value);
        return;
      }
      // A slow disk lets every mailbox's credit pile up here (up to mailboxes x
      // max_inflight_batches batches): merging all of it into one commit made the commit's
      // transient copies (decoded stored records, encoded values, the WriteBatch, memtable
      // arena blocks) scale with the backlog — the +9 MiB peak RSS of a slowed writer. A commit
      // takes whole batches up to max_group_records; the rest waits for the next one, which
      // still syncs the WAL once per many batches.
      std::size_t take = 0, group_records = 0;
      while (take < pending->size() &&
             (take == 0 || group_records + (*pending)[take].records.size() <= settings.max_group_records))
        group_records += (*pending)[take++].records.size();
      const std::span<matched_batch> group{pending->data(), take};
      std::vector<storage::message_record> records;
      std::vector<storage::checkpoint_update> checkpoints;
      std::vector<storage::uidl_update> uidls;
      records.reserve(group_records);
      for (auto& b : group) {
        std::move(b.records.begin(), b.records.end(), std::back_inserter(records));
        std::move(b.checkpoints.begin(), b.checkpoints.end(), std::back_inserter(checkpoints));
        std::move(b.uidls.begin(), b.uidls.end(), std::back_inserter(uidls));
      }
      if (settings.write_delay_ms)
        std::this_thread::sleep_for(std::chrono::milliseconds(settings.write_delay_ms));
      const auto started = std::chrono::steady_clock::now();
      auto low = check_free_space(settings);
      auto res = low ? expected<storage::write_stats, storage::error>{unexpected{*low}}
                     : db->write(records, checkpoints, uidls);
      if (auto& m = settings.metrics) {
        m->write_done(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(),
                      group.size(), res.has_value());
        if (res) {
          // Only messages this write created: a replayed batch must not count its findings twice.
          const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                             std::chrono::system_clock::now().time_since_epoch()).count();
          std::vector<message_finding> found;
          for (std::size_t i = 0; i < records.size() && i < res->per_record.size(); ++i)
            if (res->per_record[i].new_message)
              for (auto& f : findings_of(records[i], now))
                found.push_back(std::move(f));
          m->found(std::move(found));
        }
      }
      std::size_t pos = 0;
      for (auto& b : group) {
        if (res) {
          // Tell each batch what *it* added (a group commit mixes many mailboxes' batches).
          std::uint64_t new_messages = 0, new_sightings = 0;
          std::vector<server_action> actions;
          for (std::size_t i = 0; i < b.records.size() && pos < res->per_record.size(); ++i, ++pos) {
            new_messages += res->per_record[pos].new_message ? 1 : 0;
            new_sightings += res->per_record[pos].new_sightings;
            collect_actions(records[pos], actions);
          }
          if (b.reply_to)
            self->send(b.reply_to, durable_atom::value, b.seq, new_messages, new_sightings, std::move(actions));
        } else if (b.reply_to)
          self->send(b.reply_to, write_failed_atom::value, b.seq, std::string{reason_of(res.error())},
                     res.error().message);
      }
      *last_commit = std::chrono::steady_clock::now();
      pending->erase(pending->begin(), pending->begin() + static_cast<std::ptrdiff_t>(take));
      if (!pending->empty() && !*flush_scheduled) {
        *flush_scheduled = true;
        self->send(self, flush_atom::value);
      }
      quit_if_done();
    },
    // What a pass starts from, in one round trip (each one woke this thread and the mailbox's).
    [=](checkpoints_atom, const std::string& user) { return std::make_tuple(state_of(user), db->checkpoints(user)); },
    [=](uidls_atom, const std::string& user) { return db->pop3_uidls(user); },
    [=](state_atom, const std::string& user) { return state_of(user); },
    [=](state_atom, const storage::mailbox_state& s) {
      auto res = db->put_mailbox_state(s);
      (void)res;  // best effort: a failed state write shows up in the next scan's write error
    },
  };
}

} // namespace mscan::actors
