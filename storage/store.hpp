#pragma once
// The mailscan database: one RocksDB instance with the column families of
// column_families.hpp. RocksDB types stay behind a pimpl so users of this header (the writer
// actor, the CLI) do not compile RocksDB headers.
//
// Thread-safety: all const members may run concurrently with each other and with write();
// write() and put_mailbox_state() serialise on an internal mutex (they read-modify-write).
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/expected.hpp"
#include "storage/types.hpp"

namespace mscan::storage {

// Format of the whole database (meta CF "format_version"). Bump it together with an entry in
// the migration table in store.cpp.
inline constexpr std::uint32_t current_format_version = 1;

class store {
 public:
  static expected<std::unique_ptr<store>, error> open(const std::filesystem::path& dir,
                                                      const open_options& = {});
  ~store();
  store(const store&) = delete;
  store& operator=(const store&) = delete;

  // One atomic WriteBatch: upsert messages (existing key => merge: union of sightings
  // (one per user+folder, the greater (uidvalidity, uid) wins), users (sighting users
  // included), contacts, accounts, items, tickets, reasons, attachments, warnings — never a
  // second record), bump per-user messages_tracked for each user newly attached to a message,
  // maintain the link indexes, count rule hits (rule_stats), allocate ticket numbers for
  // new_ticket_marker / root_ticket_marker, and set the checkpoints. On error nothing is applied.
  // Records with an empty key refuse the whole batch (invalid_argument).
  // POP3: `uidls` (added or removed UIDLs) join the same batch, so the UIDL set (the POP3
  // checkpoint) never runs ahead of the messages either.
  expected<write_stats, error> write(std::span<const message_record> messages,
                                     std::span<const checkpoint_update> checkpoints,
                                     std::span<const uidl_update> uidls = {});

  std::optional<folder_checkpoint> checkpoint(std::string_view user, std::string_view folder) const;
  std::map<std::string, folder_checkpoint> checkpoints(std::string_view user) const;  // by folder
  std::map<std::string, std::uint32_t> pop3_uidls(std::string_view user) const;  // UIDL -> uid

  // Newest first (date descending; ties by key length, then key bytes); limit 0 = all.
  std::vector<message_record> query_messages(const message_filter& f) const;
  std::optional<message_record> find_by_message_id(std::string_view message_id) const;
  std::optional<message_record> find_by_key(std::string_view key) const;

  // Stores everything but messages_tracked, which write() owns (the stored count is kept).
  expected<void, error> put_mailbox_state(const mailbox_state& s);
  std::optional<mailbox_state> mailbox_state_of(std::string_view user) const;
  std::vector<mailbox_state> mailbox_states() const;  // ordered by user

  // Operator notifications (notifications CF). put: one durable write; notifications():
  // newest first, limit 0 = all; undecodable entries are skipped.
  expected<void, error> put_notification(const notification_record& n);
  std::vector<notification_record> notifications(std::size_t limit = 0) const;

  // Per-rule hit counters (rule_stats CF, maintained by write()), ordered by name.
  std::vector<rule_stat> rule_stats() const;
  // Outgoing mail (outbox CF, docs/storage.md). put_outbox: one durable (synced) write that
  // replaces the entry with the same Message-ID. outbox(): every entry, oldest created
  // first; undecodable entries are skipped.
  expected<void, error> put_outbox(const outbox_record& o);
  std::optional<outbox_record> outbox_entry(std::string_view message_id) const;
  std::vector<outbox_record> outbox() const;

  std::uint64_t message_count() const;
  std::uint32_t format_version() const;
  bool read_only() const;

 private:
  struct impl;
  explicit store(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

}  // namespace mscan::storage
