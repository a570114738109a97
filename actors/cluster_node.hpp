#pragma once
// A cluster node (`mailscan node --join HOST:PORT`, docs/cluster.md): joins the coordinator
// (protocol version, then an HMAC answer to its challenge with the secret from the variable
// the coordinator names), loads the coordinator's config file, and scans the mailboxes it is
// leased: mailbox actors and matchers run here, their batches, checkpoint and state requests
// go to the coordinator's gate. When the coordinator is lost the node stops scanning and
// tries to rejoin (a coordinator restart) for `rejoin_s`.
// Kept free of CAF types so the CLI does not compile CAF headers.
#include "common/expected.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace mscan::actors {

struct node_error {
  int code = 1;  // 2: refused (version, secret) or unusable config; 1: coordinator unreachable/lost
  std::string message;
};

struct node_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::string name;                   // empty: <hostname>-<pid>
  std::uint32_t protocol_version = 0;  // 0: this build's; tests fake a mismatch with another
  std::uint32_t rejoin_s = 30;
  const std::atomic<bool>* stop = nullptr;  // SIGTERM/SIGINT: orderly shutdown
  std::function<void(const std::string& name, const std::string& config_file)> on_joined;
  // Called, from a watchdog thread, when tearing the actor system down takes longer than
  // shutdown_limit after the node is done (shutdown_watchdog.hpp), with run_node's final
  // outcome; returns the exit code the process then ends with. Unset: 1.
  std::function<int(const std::optional<node_error>& failed)> on_shutdown_stuck;
};


// Returns once the coordinator said goodbye or `stop` was set (success), or with the error.
expected<void, node_error> run_node(const node_options& opts);

} // namespace mscan::actors
