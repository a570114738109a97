#include "apps/mailscan/cluster.hpp"

#include "actors/cluster_common.hpp"
#include "actors/cluster_coordinator.hpp"
#include "actors/cluster_node.hpp"
#include "apps/mailscan/output.hpp"
#include "bench/simulator/simulator.hpp"

#include <fmt/format.h>

#include <cstdlib>
#include <iostream>
#include <optional>

namespace mscan::apps {

namespace {

std::string iso_time(std::int64_t t) { return t > 0 ? iso8601(t) : std::string{}; }

} // namespace

expected<std::shared_ptr<actors::cluster_hooks>, std::string> make_cluster_hooks(const core::config& cfg,
                                                                                 const std::string& listen) {
  auto addr = sim::parse_listen_address(listen);
  if (!addr)
    return unexpected{fmt::format("--listen {}: {}", listen, addr.error())};
  if (cfg.cluster.secret_env.empty())
    return unexpected{std::string{"config: [cluster] secret_env is required: it names the environment variable "
                                  "holding the secret nodes need to join"}};
  const char* secret = std::getenv(cfg.cluster.secret_env.c_str());
  if (!secret || !*secret)
    return unexpected{fmt::format("the cluster secret variable {} (from [cluster] secret_env) is empty or unset",
                                  cfg.cluster.secret_env)};
  actors::coordinator_settings s;
  s.host = addr->first == "localhost" ? "127.0.0.1" : addr->first;
  s.port = addr->second;
  s.secret_env = cfg.cluster.secret_env;
  s.secret = secret;
  s.heartbeat_ms = cfg.cluster.heartbeat_ms;
  s.node_timeout_ms = cfg.cluster.node_timeout_ms;
  s.min_nodes = cfg.cluster.min_nodes;
  s.config_file = cfg.file;
  s.data_dir = cfg.engine.data_dir;
  s.on_listening = [](const std::string& host, std::uint16_t port) {
    std::cout << fmt::format("listening {}:{}", host, port) << std::endl;  // tests wait for this line
  };
  return std::make_shared<actors::cluster_hooks>(std::move(s));
}

int run_node_command(const node_command& c, const std::atomic<bool>* stop) {
  auto addr = sim::parse_listen_address(c.join);
  if (!addr) {
    std::cerr << fmt::format("mailscan: node: --join {}: {}\n", c.join, addr.error());
    return 2;
  }
  actors::node_options o;
  o.host = addr->first == "localhost" ? "127.0.0.1" : addr->first;
  o.port = addr->second;
  o.name = c.name;
  o.protocol_version = c.fake_protocol_version;
  o.rejoin_s = c.rejoin_s;
  o.stop = stop;
  o.on_joined = [](const std::string& name, const std::string& file) {
    std::cout << fmt::format("joined as {} (config {})", name, file) << std::endl;
  };
  auto finish = [](const std::optional<actors::node_error>& failed) {
    if (failed) {
      std::cerr << fmt::format("mailscan: node: {}\n", failed->message);
      return failed->code;
    }
    std::cout << "node stopped\n";
    return 0;
  };
  o.on_shutdown_stuck = finish;
  auto res = actors::run_node(o);
  return finish(res ? std::nullopt : std::optional<actors::node_error>(res.error()));
}

void add_cluster_status(const core::config& cfg, nlohmann::json& status) {
  auto m = actors::cluster::read_membership(cfg.engine.data_dir);
  if (!m)
    return;
  auto live = m->coordinator_running ? m->live() : std::vector<std::string>{};
  std::map<std::string, std::vector<std::string>> by_node;
  if (status.contains("mailboxes"))
    for (auto& mb : status["mailboxes"]) {
      auto user = mb.value("user", "");
      auto owner = actors::cluster::owner_of(user, live);
      mb["node"] = owner.empty() ? nlohmann::json(nullptr) : nlohmann::json(owner);
      if (!owner.empty())
        by_node[owner].push_back(user);
    }
  nlohmann::json nodes = nlohmann::json::array();
  for (auto& n : m->nodes)
    nodes.push_back({{"name", n.name},
                     {"state", n.state},
                     {"joined", iso_time(n.joined)},
                     {"changed", iso_time(n.changed)},
                     {"detail", n.detail},
                     {"mailboxes", by_node[n.name]}});
  status["cluster"] = {{"coordinator", m->listen},
                       {"coordinator_running", m->coordinator_running},
                       {"updated", iso_time(m->updated)},
                       {"nodes", std::move(nodes)}};
}

void print_cluster_status(std::ostream& os, const nlohmann::json& status) {
  if (!status.contains("cluster"))
    return;
  auto& c = status["cluster"];
  os << fmt::format("cluster: coordinator {} ({}), updated {}\n", c["coordinator"].get<std::string>(),
                    c["coordinator_running"].get<bool>() ? "running" : "stopped", c["updated"].get<std::string>());
  for (auto& n : c["nodes"]) {
    auto& boxes = n["mailboxes"];
    std::string list;
    for (std::size_t i = 0; i < boxes.size() && i < 20; ++i)
      list += (i ? ", " : "") + boxes[i].get<std::string>();
    if (boxes.size() > 20)
      list += fmt::format(", ... ({} in all)", boxes.size());
    os << fmt::format("node {}: {}{}{}\n", n["name"].get<std::string>(), n["state"].get<std::string>(),
                      n["detail"].get<std::string>().empty() ? "" : " (" + n["detail"].get<std::string>() + ")",
                      boxes.empty() ? "" : ", mailboxes: " + list);
  }
}

} // namespace mscan::apps
