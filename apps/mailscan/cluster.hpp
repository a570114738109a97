#pragma once
// `mailscan coordinator` and `mailscan node` (docs/cluster.md), and what `status` adds in a
// cluster. CAF-free: the CAF side is actors/cluster_*.
#include "core/config.hpp"

#include <nlohmann/json.hpp>

#include <atomic>
#include <memory>
#include <ostream>
#include <string>

namespace mscan::actors {
struct cluster_hooks;
}

namespace mscan::apps {

// The coordinator's hooks for run_engine, from the config's [cluster] and --listen.
// Errors (one line, exit 2): no secret_env, the variable unset, a non-loopback address.
expected<std::shared_ptr<actors::cluster_hooks>, std::string> make_cluster_hooks(const core::config& cfg,
                                                                                 const std::string& listen);

struct node_command {
  std::string join;  // HOST:PORT
  std::string name;
  std::uint32_t fake_protocol_version = 0;  // hidden test flag
  std::uint32_t rejoin_s = 30;
};
int run_node_command(const node_command& c, const std::atomic<bool>* stop);

// `status`: the nodes of the cluster (<data_dir>/cluster.json) and the node each mailbox is
// assigned to. Nothing when the data directory never belonged to a coordinator.
void add_cluster_status(const core::config& cfg, nlohmann::json& status);
void print_cluster_status(std::ostream& os, const nlohmann::json& status);

} // namespace mscan::apps
