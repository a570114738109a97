#pragma once
// The writer: the only actor touching RocksDB. Runs detached (blocking fsyncs never stall the
// scheduler's threads). Group commit: every batch that arrived while the previous write was
// in progress goes into the next single WriteBatch (whole batches up to max_group_records;
// the rest into the one after), paced by commit_interval; each batch is acknowledged only once it is
// durable (sync WAL), or refused when the write failed (disk full, I/O error) — in which case
// nothing of it was applied and the mailbox's checkpoint did not move.
#include "actors/engine_metrics.hpp"
#include "actors/messages.hpp"

#include <memory>

namespace mscan::actors {

// Accepts: (write_atom, matched_batch)            -> sends (durable_atom, seq, new, sightings,
//                                                    server actions) to reply_to (none if null)
//                                                    or (write_failed_atom, seq, reason, detail)
//                                                    to batch.reply_to
//          (checkpoints_atom, user)               -> (storage::mailbox_state,
//                                                     std::map<folder, folder_checkpoint>)
//          (state_atom, user)                     -> storage::mailbox_state
//          (state_atom, storage::mailbox_state)   -> stores it
struct writer_settings {
  std::filesystem::path data_dir;   // checked for free space before every group commit
  std::uint64_t min_free_bytes = 0; // below this, batches are refused as disk_full
  std::uint32_t write_delay_ms = 0; // benchmark knob: a slow disk
  std::shared_ptr<engine_metrics> metrics{};  // optional: write latency, findings
  // A group commit starts at least this long after the previous one ended (batches arriving
  // meanwhile join it); 0 = as soon as the writer is free.
  std::chrono::milliseconds commit_interval{0};
  // Records per group commit (whole batches; one batch even if larger): bounds the commit's
  // transient memory when a slow disk lets batches queue up.
  std::size_t max_group_records = 1000;
};

caf::behavior writer_actor(caf::event_based_actor* self, std::shared_ptr<storage::store> db,
                           writer_settings settings);

} // namespace mscan::actors
