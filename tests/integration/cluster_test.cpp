// Clustering (docs/cluster.md): a coordinator and two nodes as separate processes on loopback.
// A node SIGKILLed mid-scan: its mailboxes move to the other node and resume from their last
// durable checkpoint — every message tracked exactly once, the connection bound held by the
// server's own count. Joining needs the right secret and the same protocol version.
#include "bench/simulator/simulator.hpp"
#include "tests/support/dovecot_fixture.hpp"
#include "tests/support/mailscan_cli.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;
using namespace mscan;
using namespace std::chrono_literals;

namespace {

constexpr const char* secret_env = "MSCAN_TEST_CLUSTER_SECRET";

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Every line the processes logged (the daily files under log_dir).
std::string read_logs(const fs::path& dir) {
  std::string all;
  if (fs::exists(dir / "logs"))
    for (auto& e : fs::directory_iterator(dir / "logs"))
      all += read_file(e.path());
  return all;
}

// Polls `pred` until it holds or the deadline passes (a loaded 2-core machine: generous).
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = 30s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred())
      return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

// A coordinator process (port 0: it reports the port it got) and its nodes.
struct cluster_run {
  fs::path dir, conf;
  pid_t coordinator = -1;
  std::uint16_t port = 0;
  std::map<std::string, pid_t> nodes;

  cluster_run(fs::path d, fs::path c, bool once) : dir(std::move(d)), conf(std::move(c)) {
    std::vector<std::string> args{"coordinator", "--config", conf.string(), "--listen", "127.0.0.1:0"};
    if (once)
      args.push_back("--once");
    coordinator = test::spawn_mailscan(args, dir / "coordinator.out");
    std::smatch m;
    REQUIRE(eventually([&] {
      auto out = read_file(dir / "coordinator.out");
      static const std::regex re{"listening 127\\.0\\.0\\.1:([0-9]+)"};
      if (!std::regex_search(out, m, re))
        return false;
      port = static_cast<std::uint16_t>(std::stoi(m[1]));
      return true;
    }));
  }
  std::string address() const { return fmt::format("127.0.0.1:{}", port); }
  void start_node(const std::string& name) {
    nodes[name] = test::spawn_mailscan({"node", "--join", address(), "--name", name}, dir / (name + ".out"));
  }
  nlohmann::json status() const {
    auto r = test::run_mailscan({"status", "--config", conf.string(), "--json"});
    if (r.code != 0 || r.out.empty())
      return {};
    return nlohmann::json::parse(r.out, nullptr, false);
  }
  std::size_t live_nodes() const {
    auto s = status();
    std::size_t n = 0;
    if (s.is_object() && s.contains("cluster"))
      for (auto& node : s["cluster"]["nodes"])
        n += node["state"] == "up";
    return n;
  }
  ~cluster_run() {
    for (auto& [name, pid] : nodes)
      if (pid > 0 && ::kill(pid, SIGKILL) == 0)
        test::wait_exit(pid);
    if (coordinator > 0 && ::kill(coordinator, SIGKILL) == 0)
      test::wait_exit(coordinator);
  }
};

void set_secret(const char* value) { ::setenv(secret_env, value, 1); }

// min_nodes = 2: no lease before both nodes joined, so every pass runs on its mailbox's
// owner (what `status` shows) and the test knows which node is in the middle of one.
std::string cluster_toml(std::string engine_extra) {
  return fmt::format("[engine]\ndata_dir = \"data\"\nlog_dir = \"logs\"\ndays_back = 0\n{}\n\n"
                     "[cluster]\nsecret_env = \"{}\"\nheartbeat_ms = 200\nnode_timeout_ms = 2000\nmin_nodes = 2\n\n",
                     engine_extra, secret_env);
}

// Every Message-ID once; returns how many.
std::size_t distinct_tracked(const fs::path& conf, std::size_t& records) {
  auto j = nlohmann::json::parse(test::run_mailscan({"query", "--config", conf.string(), "messages", "--json"}).out);
  std::map<std::string, int> seen;
  for (auto& m : j.at("messages"))
    ++seen[m.at("message_id").get<std::string>()];
  for (auto& [id, n] : seen) {
    INFO(id);
    CHECK(n == 1);
  }
  records = j.at("messages").size();
  return seen.size();
}

// A node in the middle of a pass (from `status` while the cluster runs): it owns a mailbox
// of which some but less than half of the mail is durable. Empty if there is none right now.
std::string node_mid_pass(const nlohmann::json& status, std::uint64_t per_mailbox) {
  if (!status.is_object() || !status.contains("mailboxes"))
    return {};
  for (auto& m : status["mailboxes"]) {
    auto tracked = m["messages_tracked"].get<std::uint64_t>();
    if (m["node"].is_string() && tracked > 0 && tracked < per_mailbox / 2)  // margin: not about to finish
      return m["node"].get<std::string>();
  }
  return {};
}

std::string mailbox_toml(const std::string& user, std::uint16_t port, const std::string& password) {
  return fmt::format("[[mailbox]]\nuser = \"{0}\"\nhost = \"127.0.0.1\"\nport = {1}\nsecurity = \"none\"\n"
                     "username = \"{0}\"\npassword = \"{2}\"\nfolders = \"INBOX\"\n\n",
                     user, port, password);
}

// Coordinator --once + nodes n1 and n2 over DIR/mailscan.toml; one node SIGKILLed while it is
// in the middle of a pass. Checks the run still ends in order (coordinator 0, survivor 0) and
// that the kill was seen and a pass moved.
void run_killing_a_node_mid_pass(const fs::path& dir, std::uint64_t per_mailbox) {
  set_secret("cluster-test-secret");
  cluster_run c{dir, dir / "mailscan.toml", true};
  c.start_node("n1");
  c.start_node("n2");
  REQUIRE(eventually([&] { return c.live_nodes() == 2; }));
  // Part of a mailbox durable, the rest not yet fetched.
  std::string victim;
  REQUIRE(eventually([&] { return !(victim = node_mid_pass(c.status(), per_mailbox)).empty(); }));
  INFO("killed " << victim);
  ::kill(c.nodes[victim], SIGKILL);
  CHECK(test::wait_exit(c.nodes[victim]) == 128 + SIGKILL);
  c.nodes.erase(victim);

  auto code = test::wait_exit(c.coordinator);
  c.coordinator = -1;
  INFO(read_file(dir / "coordinator.out"));
  CHECK(code == 0);
  for (auto& [name, pid] : c.nodes) {
    INFO(read_file(dir / (name + ".out")));
    CHECK(test::wait_exit(pid) == 0);  // the coordinator said goodbye: orderly
    pid = -1;
  }
  auto log = read_logs(dir);
  CHECK(log.find("event=node_down") != std::string::npos);
  CHECK(log.find("event=mailbox_reassigned") != std::string::npos);  // the kill hit a pass
  // `status` after the run lists the killed node as down (newest entry first).
  auto st = nlohmann::json::parse(test::run_mailscan({"status", "--config", (dir / "mailscan.toml").string(), "--json"}).out);
  std::map<std::string, std::string> states;
  for (auto& n : st["cluster"]["nodes"])
    states.emplace(n["name"].get<std::string>(), n["state"].get<std::string>());
  CHECK(states[victim] == "down");
}

} // namespace

TEST_CASE("cluster: a node SIGKILLed mid-scan on the simulator: nothing lost or doubled, the bound held",
          "[integration][cluster]") {
  constexpr std::size_t mailboxes = 6, messages = 400, limit = 3;
  sim::sim_options so;
  so.mailboxes = mailboxes;
  so.messages = messages;
  so.latency_ms = 3;
  sim::simulator simulator{so};
  auto sim_port = simulator.start();
  REQUIRE(sim_port != 0);
  auto dir = test::unique_test_dir("cluster-sim-kill");
  auto text = cluster_toml(fmt::format("max_connections = {}\nmax_connections_per_host = {}\nbatch_size = 10\n"
                                       "max_inflight_batches = 1\nwrite_delay_ms = 20",
                                       limit, limit));
  for (std::size_t i = 0; i < mailboxes; ++i)
    text += mailbox_toml(fmt::format("sim{}", i), sim_port, "sim");
  std::ofstream(dir / "mailscan.toml") << text;
  run_killing_a_node_mid_pass(dir, messages);

  std::size_t records = 0;
  CHECK(distinct_tracked(dir / "mailscan.toml", records) == mailboxes * messages);
  CHECK(records == mailboxes * messages);
  auto stats = simulator.stats();
  CHECK(stats.peak_connections <= limit);
  CHECK(stats.refused == 0);
}

TEST_CASE("cluster: a node SIGKILLed mid-scan of dovecot: every message once, dovecot's limit never reached",
          "[integration][cluster][dovecot]") {
  constexpr int users = 6, per_user = 150;
  constexpr std::size_t limit = 3;
  test::dovecot_options o;
  for (int u = 0; u < users; ++u)
    o.users.push_back({fmt::format("u{}", u), fmt::format("p{}", u)});
  // Dovecot itself allows only `limit` imap sessions: one more and its master logs
  // "process_limit (3) reached" — the server's own count of concurrent connections.
  o.max_connections = limit;
  test::dovecot_fixture dc{o};
  for (int u = 0; u < users; ++u)
    for (int i = 0; i < per_user; ++i)
      dc.seed(fmt::format("u{}", u), "INBOX",
              fmt::format("From: c{2}@customer.example\r\nTo: u{0}@corp.example\r\nSubject: order {1}\r\n"
                          "Message-ID: <cluster-{0}-{1}@customer.example>\r\n\r\nbody {1}\r\n",
                          u, i, i % 7));
  auto dir = test::unique_test_dir("cluster-dovecot-kill");
  auto text = cluster_toml(fmt::format("max_connections = {}\nmax_connections_per_host = {}\nbatch_size = 10\n"
                                       "max_inflight_batches = 1\nwrite_delay_ms = 15",
                                       limit, limit));
  for (int u = 0; u < users; ++u)
    text += mailbox_toml(fmt::format("u{}", u), dc.imap_port(), fmt::format("p{}", u));
  std::ofstream(dir / "mailscan.toml") << text;
  run_killing_a_node_mid_pass(dir, per_user);

  std::size_t records = 0;
  CHECK(distinct_tracked(dir / "mailscan.toml", records) == static_cast<std::size_t>(users * per_user));
  CHECK(records == static_cast<std::size_t>(users * per_user));
  INFO(dc.log_tail(20));
  CHECK(dc.count_in_log("service(imap): process_limit") == 0);
}

TEST_CASE("cluster: a wrong secret and another protocol version are refused, clearly, on both sides",
          "[integration][cluster]") {
  auto dir = test::unique_test_dir("cluster-refuse");
  // One mailbox keeps the coordinator running; never leased (min_nodes = 2, one node at most).
  std::ofstream(dir / "mailscan.toml") << cluster_toml("poll_interval_s = 3600") << mailbox_toml("idle", 1, "x");
  set_secret("the-right-secret");
  cluster_run c{dir, dir / "mailscan.toml", false};

  set_secret("a-wrong-secret");
  auto wrong = test::run_mailscan({"node", "--join", c.address(), "--name", "intruder"});
  set_secret("the-right-secret");
  CHECK(wrong.code == 2);
  CHECK(wrong.err.find("wrong cluster secret") != std::string::npos);
  CHECK(wrong.err.find("the-right-secret") == std::string::npos);
  CHECK(wrong.err.find("a-wrong-secret") == std::string::npos);

  auto old = test::run_mailscan({"node", "--join", c.address(), "--name", "old", "--fake-protocol-version", "999"});
  CHECK(old.code == 2);
  CHECK(old.err.find("incompatible cluster protocol version") != std::string::npos);
  CHECK(old.err.find("999") != std::string::npos);

  ::unsetenv(secret_env);
  auto unset = test::run_mailscan({"node", "--join", c.address(), "--name", "nosecret"});
  set_secret("the-right-secret");
  CHECK(unset.code == 2);
  CHECK(unset.err.find(secret_env) != std::string::npos);

  // The coordinator's side: each refusal is an error line naming the node and why.
  CHECK(eventually([&] {
    auto log = read_logs(dir);
    return log.find("event=node_refused user=- host=intruder") != std::string::npos &&
           log.find("event=node_refused user=- host=old") != std::string::npos;
  }, 10s));
  auto log = read_logs(dir);
  CHECK(log.find("the-right-secret") == std::string::npos);
  CHECK(log.find("a-wrong-secret") == std::string::npos);
  CHECK(c.live_nodes() == 0);

  // The right secret joins; SIGTERM ends the node in order (exit 0).
  c.start_node("good");
  CHECK(eventually([&] { return c.live_nodes() == 1; }));
  ::kill(c.nodes["good"], SIGTERM);
  CHECK(test::wait_exit(c.nodes["good"]) == 0);
  c.nodes.erase("good");
  CHECK(eventually([&] {
    auto st = c.status();
    return st.is_object() && st.contains("cluster") && !st["cluster"]["nodes"].empty() &&
           st["cluster"]["nodes"][0]["name"] == "good" && st["cluster"]["nodes"][0]["state"] == "left";
  }, 10s));
}

TEST_CASE("cluster: a hung node (SIGSTOP) is declared dead by its missing heartbeat, its passes move, "
          "woken up it joins again",
          "[integration][cluster]") {
  constexpr std::size_t mailboxes = 4, messages = 300;
  sim::sim_options so;
  so.mailboxes = mailboxes;
  so.messages = messages;
  so.latency_ms = 3;
  sim::simulator simulator{so};
  auto sim_port = simulator.start();
  REQUIRE(sim_port != 0);
  auto dir = test::unique_test_dir("cluster-hung");
  auto text = cluster_toml("max_connections = 4\nbatch_size = 10\nmax_inflight_batches = 1\nwrite_delay_ms = 20");
  for (std::size_t i = 0; i < mailboxes; ++i)
    text += mailbox_toml(fmt::format("sim{}", i), sim_port, "sim");
  std::ofstream(dir / "mailscan.toml") << text;
  set_secret("cluster-test-secret");
  cluster_run c{dir, dir / "mailscan.toml", true};
  c.start_node("n1");
  c.start_node("n2");
  REQUIRE(eventually([&] { return c.live_nodes() == 2; }));
  std::string victim;
  REQUIRE(eventually([&] { return !(victim = node_mid_pass(c.status(), messages)).empty(); }));
  INFO("stopped " << victim);
  ::kill(c.nodes[victim], SIGSTOP);
  // node_timeout_ms = 2000: declared dead by the heartbeat check, not by a lost connection.
  CHECK(eventually([&] { return read_logs(dir).find("no heartbeat for 2000 ms") != std::string::npos; }, 20s));
  ::kill(c.nodes[victim], SIGCONT);
  CHECK(eventually([&] { return read_logs(dir).find("event=node_dropped") != std::string::npos; }, 20s));

  auto code = test::wait_exit(c.coordinator);
  c.coordinator = -1;
  INFO(read_file(dir / "coordinator.out"));
  CHECK(code == 0);
  for (auto& [name, pid] : c.nodes) {
    CHECK(test::wait_exit(pid) == 0);
    pid = -1;
  }
  auto out = read_file(dir / (victim + ".out"));
  INFO(out);
  CHECK(out.find("joined as") != out.rfind("joined as"));  // joined twice
  std::size_t records = 0;
  CHECK(distinct_tracked(dir / "mailscan.toml", records) == mailboxes * messages);
  CHECK(records == mailboxes * messages);
}
