#pragma once
// What the coordinator, the nodes and the read-only CLI (`status`) agree on, without CAF:
// the protocol version, who owns a mailbox, the join proof and the membership file.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mscan::actors::cluster {

// Bumped whenever a message crossing nodes changes (a type in actors/messages.hpp, an atom's
// arguments). The join handshake uses only CAF built-in types, so any two versions can
// exchange it and a mismatch is refused with a clear error instead of a garbled message.
inline constexpr std::uint32_t protocol_version = 1;

// Rendezvous (highest random weight) hashing: the node with the highest hash(node, user)
// owns the mailbox. A node joining takes over only the mailboxes it now wins; a node leaving
// hands over only its own. Empty when `nodes` is empty.
std::string owner_of(std::string_view user, const std::vector<std::string>& nodes);

// The secret never crosses the wire: the node proves it knows it with
// hex(HMAC-SHA256(secret, nonce)) for a nonce the coordinator chose for this connection.
std::string join_proof(std::string_view secret, std::string_view nonce);
std::string random_nonce();  // 128 random bits, hex
bool same_proof(std::string_view a, std::string_view b);  // constant time

// <data_dir>/cluster.json, written by the coordinator on every membership change (temp file +
// rename), read by `mailscan status`.
struct node_record {
  std::string name;
  std::string state;  // "up", "down" (died: connection lost or heartbeat timeout), "left"
  std::int64_t joined = 0, changed = 0;  // unix seconds
  std::string detail;                    // why it is down
};
struct membership {
  std::string listen;  // HOST:PORT of the coordinator
  std::int64_t coordinator_pid = 0;
  bool coordinator_running = false;
  std::int64_t updated = 0;
  std::vector<node_record> nodes;  // live ones first; at most 64 past ones kept
  std::vector<std::string> live() const;
};
std::filesystem::path membership_file(const std::filesystem::path& data_dir);
bool write_membership(const std::filesystem::path& data_dir, const membership& m);
std::optional<membership> read_membership(const std::filesystem::path& data_dir);

} // namespace mscan::actors::cluster
