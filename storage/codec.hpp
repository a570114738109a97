#pragma once
// Byte-level encodings of the storage layer.
//  - Keys use fixed-width BIG-ENDIAN integers (byte order = numeric order) and strings
//    prefixed with a big-endian u32 length (see keys.hpp).
//  - Values use a compact versioned encoding: a leading value-version byte, then LEB128
//    varints (zigzag for signed) and varint-length-prefixed strings. Decoders reject unknown
//    versions, truncation and trailing bytes as corruption.
#include <cstdint>
#include <string>
#include <string_view>

#include "common/expected.hpp"
#include "storage/types.hpp"

namespace mscan::storage::codec {

// ---- primitives: writing -------------------------------------------------------------
void put_u8(std::string& out, std::uint8_t v);
void put_be32(std::string& out, std::uint32_t v);
void put_be64(std::string& out, std::uint64_t v);
void put_varint(std::string& out, std::uint64_t v);
void put_zigzag(std::string& out, std::int64_t v);
void put_string(std::string& out, std::string_view s);     // varint length + bytes
void put_lp_string(std::string& out, std::string_view s);  // be32 length + bytes (keys)

// Maps int64 onto uint64 so that unsigned order equals signed order (sign bit flipped).
constexpr std::uint64_t order_preserving(std::int64_t v) noexcept {
  return static_cast<std::uint64_t>(v) ^ (std::uint64_t{1} << 63);
}
constexpr std::int64_t from_order_preserving(std::uint64_t v) noexcept {
  return static_cast<std::int64_t>(v ^ (std::uint64_t{1} << 63));
}

// ---- primitives: reading (sticky failure: once a read fails, ok() stays false) -----------
class reader {
 public:
  explicit reader(std::string_view in) noexcept : in_(in) {}
  bool ok() const noexcept { return ok_; }
  bool at_end() const noexcept { return in_.empty(); }
  std::size_t remaining() const noexcept { return in_.size(); }

  std::uint8_t u8() noexcept;
  std::uint32_t be32() noexcept;
  std::uint64_t be64() noexcept;
  std::uint64_t varint() noexcept;
  std::uint32_t varint32() noexcept;  // fails if the value does not fit 32 bits
  std::int64_t zigzag() noexcept;
  std::string_view string() noexcept;     // varint length + bytes
  std::string_view lp_string() noexcept;  // be32 length + bytes
  // A collection count; fails when it cannot possibly fit in the remaining bytes (every
  // element takes at least min_element_bytes), so corrupt input never triggers huge allocations.
  std::size_t count(std::size_t min_element_bytes = 1) noexcept;

 private:
  std::string_view take(std::size_t n) noexcept;
  std::string_view in_;
  bool ok_ = true;
};

// ---- values ------------------------------------------------------------------------
inline constexpr std::uint8_t message_value_version = 1;
inline constexpr std::uint8_t checkpoint_value_version = 1;
inline constexpr std::uint8_t notification_value_version = 1;
inline constexpr std::uint8_t outbox_value_version = 1;
inline constexpr std::uint8_t mailbox_state_value_version = 3;  // 2: + credential_hash, notified; 3: + slow
inline constexpr std::uint8_t rule_stat_value_version = 1;

// The record's key is not part of the value (it is the RocksDB key); decode gets it back.
std::string encode(const message_record& r);
expected<message_record, error> decode_message(std::string_view key, std::string_view value);

std::string encode(const folder_checkpoint& cp);
expected<folder_checkpoint, error> decode_checkpoint(std::string_view value);

// pop3_uidls value: version, varint uid.
inline constexpr std::uint8_t uid_value_version = 1;
std::string encode_uid(std::uint32_t uid);
expected<std::uint32_t, error> decode_uid(std::string_view value);

// The user is the RocksDB key; the value holds the rest.
std::string encode(const mailbox_state& s);
expected<mailbox_state, error> decode_mailbox_state(std::string_view user, std::string_view value);
// at, user and kind live in the key; the value holds the rest.
std::string encode(const notification_record& n);
expected<notification_record, error> decode_notification(std::int64_t at, std::string_view user,
                                                         std::string_view kind, std::string_view value);

// The rule name is the RocksDB key; the value holds the counters.
std::string encode(const rule_stat& s);
expected<rule_stat, error> decode_rule_stat(std::string_view name, std::string_view value);
// The Message-ID is the key; the value holds the rest.
std::string encode(const outbox_record& o);
expected<outbox_record, error> decode_outbox(std::string_view message_id, std::string_view value);

}  // namespace mscan::storage::codec
