#pragma once
// The ONE module that knows every key layout (docs/storage.md has the table).
// Every key except the meta keys starts with key_format (a format-version byte), strings
// are be32-length-prefixed and integers big-endian, so byte order = the order we iterate in.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mscan::storage::keys {

inline constexpr std::uint8_t key_format = 1;

// meta CF: plain ASCII names (they are what tells the format, so they carry no prefix).
inline constexpr std::string_view meta_format_version = "format_version";  // value: be32
inline constexpr std::string_view meta_message_count = "message_count";    // value: be64
// + ticket prefix: the last ticket number allocated with that prefix (be64)
inline constexpr std::string_view meta_ticket_counter = "ticket_counter/";

// messages CF: [fmt][lp key]
std::string message(std::string_view key);
std::optional<std::string> decode_message(std::string_view k);

// message_ids CF: [fmt][lp normalised Message-ID]  -> value: message key (raw bytes)
std::string message_id(std::string_view normalised_id);

// checkpoints CF: [fmt][lp user][lp folder]
std::string checkpoint(std::string_view user, std::string_view folder);
std::string checkpoint_prefix(std::string_view user);
struct checkpoint_key {
  std::string user, folder;
};
std::optional<checkpoint_key> decode_checkpoint(std::string_view k);

// index_user / index_contact / index_account / index_item CFs:
// [fmt][lp target][be64 ~order_preserving(date)][lp key] -> ""  (newest first in a scan)
std::string index(std::string_view target, std::int64_t date, std::string_view key);
std::string index_prefix(std::string_view target);
struct index_key {
  std::string target;
  std::int64_t date = 0;
  std::string key;
};
std::optional<index_key> decode_index(std::string_view k);

// pop3_uidls CF: [fmt][lp user][lp UIDL] -> value: codec::encode_uid
std::string pop3_uidl(std::string_view user, std::string_view uidl);
std::string pop3_uidl_prefix(std::string_view user);
std::optional<std::string> decode_pop3_uidl(std::string_view k, std::string_view user);  // the UIDL

// mailbox_state CF: [fmt][lp user]
std::string mailbox_state(std::string_view user);
std::optional<std::string> decode_mailbox_state(std::string_view k);

// notifications CF: [fmt][be64 order_preserving(at)][lp user][lp kind] (oldest first)
std::string notification(std::int64_t at, std::string_view user, std::string_view kind);
struct notification_key {
  std::int64_t at = 0;
  std::string user, kind;
};
std::optional<notification_key> decode_notification(std::string_view k);

// rule_stats CF: [fmt][lp rule name]
std::string rule_stat(std::string_view name);
std::optional<std::string> decode_rule_stat(std::string_view k);
// outbox CF: [fmt][lp message_id]
std::string outbox(std::string_view message_id);
std::optional<std::string> decode_outbox(std::string_view k);

}  // namespace mscan::storage::keys
