// mailscan_sim_serve: the simulator on its own, for manual runs with real IMAP clients before
// (and besides) `mailscan simulate`. Same options and behaviour as that command.
#include <fmt/format.h>
#include <string>

#include "bench/simulator/simulator.hpp"

int main(int argc, char** argv) {
  mscan::sim::sim_options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    try {
      if (k == "--listen") {
        auto l = mscan::sim::parse_listen_address(v);
        if (!l) {
          fmt::print(stderr, "mailscan: simulate: {}\n", l.error());
          return 2;
        }
        o.host = l->first;
        o.port = l->second;
      } else if (k == "--mailboxes") o.mailboxes = std::stoul(v);
      else if (k == "--messages") o.messages = std::stoul(v);
      else if (k == "--seed") o.seed = std::stoull(v);
      else if (k == "--latency-ms") o.latency_ms = std::stoi(v);
      else if (k == "--max-connections") o.max_connections = std::stoul(v);
      else if (k == "--message-bytes") o.message_bytes = std::stoul(v);
      else if (k == "--report") o.report_file = v;
      else if (k == "--eml-dir") o.eml_dir = v;
      else if (k == "--wrong-password") o.faults.wrong_password = std::stod(v);
      else if (k == "--disconnect-mid-fetch") o.faults.disconnect_mid_fetch = std::stod(v);
      else if (k == "--slow") o.faults.slow = std::stod(v);
      else if (k == "--uidvalidity-reset") o.faults.uidvalidity_reset = std::stod(v);
      else if (k == "--throttle") o.faults.throttle = std::stod(v);
      else if (k == "--throttle-s") o.faults.throttle_s = std::stoi(v);
      else throw std::invalid_argument(k);
    } catch (const std::exception&) {
      fmt::print(stderr, "mailscan: simulate: bad option {} {}\n", k, v);
      return 2;
    }
  }
  return mscan::sim::run_simulate_command(o);
}
