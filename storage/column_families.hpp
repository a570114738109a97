#pragma once
// Every column family of the mailscan database, declared once. The ORDER is a compatibility
// contract: handles are indexed by it and new families are only ever appended (docs/storage.md).
#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace mscan::storage {

enum class column_family : std::uint8_t {
  default_cf,     // "default": unused, RocksDB requires it
  meta,           // format version, message count
  messages,       // message key -> message_record
  message_ids,    // normalised Message-ID -> message key
  checkpoints,    // (user, folder) -> folder_checkpoint
  index_user,     // (user, inverted date, key) -> ""
  index_contact,  // (lower-cased contact, inverted date, key) -> ""
  index_account,  // (account, inverted date, key) -> ""
  index_item,     // (item ref, inverted date, key) -> ""
  mailbox_state,  // user -> mailbox_state
  // Reserved (declared so their position is fixed; nothing is written there yet).
  directory,      // CRM contacts/accounts created by rules
  tickets,        // ticket number -> ticket
  comments,       // (ticket, date, message key) -> comment text
  rule_stats,     // rule name -> counters
  notifications,  // (time, user, kind) -> notification_record
  pop3_uidls,     // (user, UIDL) -> uid: the POP3 checkpoint, one key per tracked message
  outbox,         // Message-ID -> outbox_record (outgoing mail and its send state)
};

inline constexpr std::array<std::string_view, 17> column_family_names = {
    "default",       "meta",          "messages",      "message_ids", "checkpoints",
    "index_user",    "index_contact", "index_account", "index_item",  "mailbox_state",
    "directory",     "tickets",       "comments",      "rule_stats",  "notifications",
    "pop3_uidls",
    "outbox",
};

inline constexpr std::size_t column_family_count = column_family_names.size();

constexpr std::size_t index_of(column_family cf) noexcept { return static_cast<std::size_t>(cf); }
constexpr std::string_view name_of(column_family cf) noexcept {
  return column_family_names[index_of(cf)];
}

static_assert(index_of(column_family::outbox) + 1 == column_family_count,
              "column_family enum and column_family_names must list the same families");

}  // namespace mscan::storage
