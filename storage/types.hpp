#pragma once
// Value types of the storage layer: what the writer actor hands in and what the CLI's
// query/status commands read back. No RocksDB here (only a forward declaration for the
// test hook in open_options), so every layer may include this header cheaply.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace rocksdb {
class Env;
}

namespace mscan::storage {

// Every member has a default initializer so callers can use designated initializers
// (`message_filter{.user = "alice"}`) without g++'s -Wmissing-field-initializers.

struct error {
  enum class code { io_error, no_space, corruption, version_mismatch, invalid_argument, not_found };
  code kind = code::io_error;
  std::string message{};
};

// Stable text for logs and the CLI ("io_error", "no_space", ...).
std::string_view to_string(error::code c) noexcept;

// One place (user's folder) where a message was seen.
struct sighting {
  std::string user{}, folder{};
  std::uint32_t uidvalidity = 0, uid = 0;
  friend bool operator==(const sighting&, const sighting&) = default;
};

struct attachment_info {
  std::string name{}, type{};
  std::uint64_t size = 0;
  friend bool operator==(const attachment_info&, const attachment_info&) = default;
};

struct link_reason {
  std::string kind{};    // "contact" | "account" | "item" | "ticket" | "user"
  std::string target{};  // e.g. "bob@acme.example", "Acme Ltd", "OPP-1042"
  std::string cause{};   // e.g. "From: bob@acme.example", "domain acme.example"
  friend bool operator==(const link_reason&, const link_reason&) = default;
};

struct message_record {
  std::string key{};  // stable message key (caller computes; see message_key())
  std::string message_id{}, subject{}, from{};
  std::vector<std::string> to{}, cc{};
  std::int64_t date = 0;  // unix seconds UTC
  std::uint64_t size = 0;
  std::vector<sighting> sightings{};
  std::vector<std::string> users{}, contacts{}, accounts{}, items{}, tickets{};
  std::vector<attachment_info> attachments{};
  std::vector<link_reason> reasons{};
  std::vector<std::string> warnings{};
  friend bool operator==(const message_record&, const message_record&) = default;
};

// Message-ID as stored in the message_ids index: whitespace (folding) removed, one pair of
// enclosing angle brackets removed, the domain part (after the last '@') lower-cased.
// Returns "" when nothing is left.
std::string normalise_message_id(std::string_view message_id);

// Stable key: "<" + normalise_message_id() + ">" when a Message-ID is present, else
// "fp:" + 32 hex digits of a fingerprint of (date, size, lower-cased trimmed from, trimmed
// subject). Same message in several mailboxes/folders = same key. The two forms cannot
// collide (an id key always starts with '<').
std::string message_key(std::string_view message_id, std::int64_t date, std::uint64_t size,
                        std::string_view from, std::string_view subject);

struct folder_checkpoint {
  std::uint32_t uidvalidity = 0, last_uid = 0;
  std::uint64_t highest_modseq = 0;
  friend bool operator==(const folder_checkpoint&, const folder_checkpoint&) = default;
};

struct checkpoint_update {
  std::string user{}, folder{};
  folder_checkpoint cp{};
};

// One change to a POP3 mailbox's UIDL set (pop3_uidls CF): tracked now, or gone from the
// server (removed).
struct uidl_update {
  std::string user{}, uidl{};
  std::uint32_t uid = 0;
  bool removed = false;
};

struct mailbox_state {
  std::string user{};
  std::string state = "ok";  // ok|error|credentials_changed|disabled
  std::int64_t last_scanned = 0;  // unix seconds, 0 = never
  std::uint32_t consecutive_failures = 0;
  std::string last_error_reason{}, last_error_detail{};  // empty = none
  // Owned by store::write() (bumped once per message newly attached to the user);
  // put_mailbox_state() ignores the value passed in and keeps the stored count.
  std::uint64_t messages_tracked = 0;
  // Value version 2 (core/mailbox_health.hpp owns their meaning): "salt$sha256" of the
  // credentials that last logged in (or, in credentials_changed, that were refused) — never
  // the secret; and whether the current failure episode has already been notified.
  std::string credential_hash{};
  bool notified = false;
  // Value version 3: the server was slow to answer in a recent pass (the scheduler's slow
  // lane, actors/scheduler_actor.hpp): a new process leases it in the lane from the start.
  // Set by a pass with a slow answer, cleared by a whole ok pass without one.
  bool slow = false;
  friend bool operator==(const mailbox_state&, const mailbox_state&) = default;
};

// One operator notification (core/mailbox_health.hpp decides when; core/notifier.hpp
// delivers). Keyed by (at, user, kind): a second one for the same user and kind within the
// same second replaces the first.
struct notification_record {
  std::int64_t at = 0;  // unix seconds
  std::string user{};
  std::string kind{};   // "failing" | "recovered" | "credentials_changed"
  std::string reason{}, detail{}, next_step{};
  std::uint32_t consecutive_failures = 0;
  std::string delivery{};  // e.g. "webhook: delivered", "webhook: failed: timeout", "" = none
  friend bool operator==(const notification_record&, const notification_record&) = default;
};

// Per scanner rule (rule_stats CF): how many tracked messages it fired on (counted once per
// message, in the WriteBatch that attached the rule to the message) and when it last did.
struct rule_stat {
  std::string name{};
  std::uint64_t hits = 0;
  std::int64_t last_hit = 0;  // unix seconds of the write, 0 = never
  friend bool operator==(const rule_stat&, const rule_stat&) = default;
};

// Ticket numbers are allocated by store::write() (a counter per prefix, in the same
// WriteBatch): the matcher writes one of these markers as the ticket number and the store
// replaces it everywhere in the record (tickets, reasons). A replayed record gets the number
// it got the first time (found by the same "ticket" reason cause in the stored record).
//   new_ticket_marker + prefix                      a new ticket ("TT" -> "TT1", "TT2", ...)
//   root_ticket_marker + prefix + "/" + root key    the ticket of the thread's root message,
//                                                   a new one when the root has none
inline constexpr std::string_view new_ticket_marker = "@new/";
inline constexpr std::string_view root_ticket_marker = "@root/";

// One outgoing e-mail (outbox CF, keyed by its Message-ID). The message bytes are final when
// queued, so a resend after a crash is byte-for-byte the same message with the same
// Message-ID (receivers and mail clients see a duplicate of one message, never two messages).
//   queued --(a send starts)--> sending --250 to end of data--> sent
//     ^                            |
//     +---- transient failure -----+ (attempts < max, next_attempt = now + back-off)
//                                  +---- permanent failure or attempts exhausted --> failed
// An entry found in `sending` (the process died mid-send) is sent again: at-least-once.
struct outbox_record {
  std::string message_id{};  // "<...@...>": the key
  std::string kind{};        // "ticket_comment" | "notification"
  std::string ticket{};      // ticket number (ticket_comment)
  std::string comment{};     // the comment text (ticket_comment; the ticket shows it)
  std::string subject{};     // decoded subject (the ticket's comment record shows it)
  std::string from{};
  std::vector<std::string> to{};
  std::string data{};        // the whole RFC 5322 message, CRLF line ends
  std::string state = "queued";  // queued | sending | sent | failed
  std::uint32_t attempts = 0;
  std::int64_t created = 0, next_attempt = 0, sent_at = 0;  // unix seconds
  std::string last_error_reason{}, last_error_detail{};     // of the last failed attempt
  std::string server_reply{};  // the server's 250 to the end of data
  friend bool operator==(const outbox_record&, const outbox_record&) = default;
};

// Empty fields do not filter; all non-empty fields must match (contact: ASCII case-insensitive).
// limit 0 = no limit.
struct message_filter {
  std::string user{}, contact{}, account{}, item{};
  std::size_t limit = 0;
};

// Per write(): new_messages = records created; new_sightings = (user, folder) sightings
// added or moved to a newer uidvalidity/uid (those of new records included); updated =
// existing records that changed; unchanged = incoming records that changed nothing
// (a replayed batch counts every record here). corrupt_replaced = stored values that could
// not be decoded and were replaced instead of failing the batch (worth a log line).
struct record_outcome {
  bool new_message = false;
  std::uint32_t new_sightings = 0;
  bool operator==(const record_outcome&) const = default;
};

struct write_stats {
  std::size_t new_messages = 0, new_sightings = 0, unchanged = 0;
  std::size_t updated = 0;
  // One entry per input record, in input order: lets a group commit of many batches tell
  // each batch what it added.
  std::vector<record_outcome> per_record = {};
  std::size_t corrupt_replaced = 0;
};

struct open_options {
  bool create_if_missing = true;
  bool read_only = false;   // OpenForReadOnly: works while another handle/process writes
  bool sync_writes = true;  // sync = WAL fsync before ack
  // Test hook (fault injection): RocksDB environment to use instead of the default one.
  std::shared_ptr<rocksdb::Env> env{};
};

}  // namespace mscan::storage
