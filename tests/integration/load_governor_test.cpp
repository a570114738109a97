// The scheduler under a misbehaving server, against the embedded simulator: slow mailboxes
// are confined to their host's slow lane (the healthy ones keep their slots), and a host that
// answers "throttled" is paused on its own while another host scans on.
#include "bench/simulator/simulator.hpp"

#include "tests/support/mailscan_cli.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace mscan;

namespace {

struct log_line {
  std::string at;  // the line's timestamp: one format and zone, so it sorts as text
  std::string event, user, host, detail;
};

std::vector<log_line> read_log(const fs::path& dir) {
  std::vector<log_line> out;
  std::vector<fs::path> files;
  for (auto& f : fs::directory_iterator(dir))
    files.push_back(f.path());
  std::sort(files.begin(), files.end());
  for (auto& f : files) {
    std::ifstream in(f);
    for (std::string line; std::getline(in, line);) {
      log_line l;
      l.at = line.substr(0, line.find(' '));
      auto field = [&](std::string_view key) {
        auto at = line.find(fmt::format(" {}=", key));
        if (at == std::string::npos)
          return std::string{};
        at += key.size() + 2;
        return key == "detail" ? line.substr(at) : line.substr(at, line.find(' ', at) - at);
      };
      l.event = field("event");
      l.user = field("user");
      l.host = field("host");
      l.detail = field("detail");
      out.push_back(std::move(l));
    }
  }
  return out;
}

// `name` is the mailbox's user (the store's key), sim<login> its login on the simulator.
std::string mailbox_block(std::string_view name, std::size_t login, std::uint16_t port, std::string_view extra = {}) {
  return fmt::format("[[mailbox]]\nuser = \"{0}\"\nhost = \"127.0.0.1\"\nport = {1}\nsecurity = \"none\"\n"
                     "username = \"sim{2}\"\npassword = \"sim\"\nfolders = \"INBOX\"\n{3}\n\n",
                     name, port, login, extra);
}

// One `run --once` with slow_response_ms = 250 over `first`, then `then` (simulator logins
// sim<N>) on `port`, into the store in `dir`, logging into dir/`logs`: that log's lines.
std::vector<log_line> run_slow_lane(const fs::path& dir, std::uint16_t port, std::size_t connections,
                                    const std::vector<std::size_t>& first, const std::vector<std::size_t>& then,
                                    const std::string& logs) {
  std::string cfg = fmt::format("[engine]\ndata_dir = \"data\"\nlog_dir = \"{}\"\ndays_back = 30\n"
                                "info_logging = true\nmax_connections = {}\nmax_connections_per_host = {}\n"
                                "slow_response_ms = 250\n\n",
                                logs, connections, connections);
  for (auto* group : {&first, &then})
    for (auto u : *group)
      cfg += mailbox_block(fmt::format("sim{}", u), u, port);
  std::ofstream(dir / "mailscan.toml") << cfg;
  auto r = test::run_mailscan({"run", "--config", (dir / "mailscan.toml").string(), "--once"});
  INFO(r.out << r.err);
  CHECK(r.code == 0);
  return read_log(dir / logs);
}

} // namespace

TEST_CASE("scheduler: slow mailboxes share one slow-lane slot, and the healthy ones keep theirs",
          "[integration][scheduler][slow_lane]") {
  sim::sim_options so;
  so.mailboxes = 60;
  so.messages = 3;
  so.latency_ms = 5;  // the healthy ones are still waiting when the slow ones are found out
  so.faults.slow = 0.15;
  so.faults.slow_ms = 500;  // every answer from LOGIN on
  sim::simulator simulator{so};
  auto port = simulator.start();
  REQUIRE(port != 0);
  std::vector<std::size_t> slow, healthy;
  for (std::size_t u = 0; u < so.mailboxes; ++u)
    (simulator.is_slow(u) ? slow : healthy).push_back(u);
  REQUIRE(slow.size() >= 3);
  slow.resize(3);
  // The slow ones first: without the lane they would take 3 of the 4 connections at once.
  std::string cfg = "[engine]\ndata_dir = \"data\"\nlog_dir = \"logs\"\ndays_back = 30\ninfo_logging = true\n"
                    "max_connections = 4\nmax_connections_per_host = 4\nslow_response_ms = 250\n\n";
  for (auto u : slow)
    cfg += mailbox_block(fmt::format("sim{}", u), u, port);
  for (auto u : healthy)
    cfg += mailbox_block(fmt::format("sim{}", u), u, port);
  auto dir = test::unique_test_dir("slow-lane");
  std::ofstream(dir / "mailscan.toml") << cfg;
  auto r = test::run_mailscan({"run", "--config", (dir / "mailscan.toml").string(), "--once"});
  INFO(r.out << r.err);
  CHECK(r.code == 0);  // every pass finished: yielding loses nothing
  CHECK(simulator.stats().logins >= healthy.size() + slow.size() + 2);  // the two that yielded log in again

  auto lines = read_log(dir / "logs");
  std::map<std::string, std::size_t> marked, yielded;
  std::map<std::string, std::string> done_at;
  for (auto& l : lines) {
    if (l.event == "mailbox_slow")
      ++marked[l.user];
    else if (l.event == "lease_yielded" && l.detail.find("slow lane is full") != std::string::npos)
      ++yielded[l.user];
    else if (l.event == "scan_ok")
      done_at[l.user] = l.at;
  }
  // Each slow one is marked once. (A loaded machine may make a healthy one look slow too:
  // that is allowed, the assertions below do not depend on it.)
  std::size_t slow_yields = 0;
  for (auto u : slow) {
    CHECK(marked[fmt::format("sim{}", u)] == 1);
    slow_yields += yielded[fmt::format("sim{}", u)];
  }
  CHECK(slow_yields >= slow.size() - 1);  // the lane (1 of 4 connections) was taken
  REQUIRE(done_at.size() == healthy.size() + slow.size());
  // The healthy mailboxes did not wait for the slow ones: all done before the second slow
  // one (the lane serialises them; each needs several 500 ms answers).
  std::string last_healthy, slow_done;
  for (auto u : healthy)
    last_healthy = std::max(last_healthy, done_at[fmt::format("sim{}", u)]);
  std::vector<std::string> slow_times;
  for (auto u : slow)
    slow_times.push_back(done_at[fmt::format("sim{}", u)]);
  std::sort(slow_times.begin(), slow_times.end());
  CHECK(last_healthy < slow_times[1]);
}

TEST_CASE("scheduler: a host slow for everyone keeps its connections: no early slow marks",
          "[integration][scheduler][slow_lane]") {
  // Every answer takes 150 ms: past the early threshold (a quarter of slow_response_ms, at
  // least 100 ms) while 16 mailboxes queue for 2 connections, but that is this host's usual
  // speed, so nobody is marked slow and nobody yields (no re-login churn).
  sim::sim_options so;
  so.mailboxes = 16;
  so.messages = 2;
  so.latency_ms = 150;
  sim::simulator simulator{so};
  auto port = simulator.start();
  REQUIRE(port != 0);
  std::string cfg = "[engine]\ndata_dir = \"data\"\nlog_dir = \"logs\"\ndays_back = 30\ninfo_logging = true\n"
                    "max_connections = 2\nmax_connections_per_host = 2\nslow_response_ms = 400\n\n";
  for (std::size_t u = 0; u < so.mailboxes; ++u)
    cfg += mailbox_block(fmt::format("sim{}", u), u, port);
  auto dir = test::unique_test_dir("slow-everyone");
  std::ofstream(dir / "mailscan.toml") << cfg;
  auto r = test::run_mailscan({"run", "--config", (dir / "mailscan.toml").string(), "--once"});
  INFO(r.out << r.err);
  CHECK(r.code == 0);
  std::size_t marked = 0, yielded = 0, ok = 0;
  for (auto& l : read_log(dir / "logs")) {
    marked += l.event == "mailbox_slow";
    yielded += l.event == "lease_yielded";
    ok += l.event == "scan_ok";
  }
  CHECK(marked == 0);
  CHECK(yielded == 0);
  CHECK(ok == so.mailboxes);
  CHECK(simulator.stats().logins == so.mailboxes);
}

TEST_CASE("scheduler: credentials that logged in before let a slow login be given up mid-way",
          "[integration][scheduler][slow_lane]") {
  // Run 1 on a fast server stores every mailbox's credentials as good. Run 2, same port, the
  // server is slow from LOGIN on (500 ms an answer): a mailbox whose login has been silent
  // past slow_response_ms is judged during the login (it cannot be a wrong password retried),
  // not only after the answer came.
  sim::sim_options so;
  so.mailboxes = 40;
  so.messages = 2;
  so.latency_ms = 5;
  sim::sim_options slow_so = so;
  slow_so.faults.slow = 0.15;
  slow_so.faults.slow_ms = 500;
  std::vector<std::size_t> slow, healthy;
  std::uint16_t port = 0;
  {
    sim::simulator probe{slow_so};  // which mailboxes the seed makes slow
    for (std::size_t u = 0; u < so.mailboxes; ++u)
      (probe.is_slow(u) ? slow : healthy).push_back(u);
  }
  REQUIRE(slow.size() >= 2);
  slow.resize(2);
  healthy.resize(std::min<std::size_t>(healthy.size(), 10));
  auto dir = test::unique_test_dir("slow-proven");
  auto run = [&](std::uint16_t p, const std::string& logs) { return run_slow_lane(dir, p, 2, healthy, slow, logs); };
  {
    sim::simulator fast{so};
    port = fast.start();
    REQUIRE(port != 0);
    auto first = run(port, "logs1");
    CHECK(std::none_of(first.begin(), first.end(), [](auto& l) { return l.event == "mailbox_slow"; }));
  }
  slow_so.port = port;
  sim::simulator slow_sim{slow_so};
  REQUIRE(slow_sim.start() == port);
  auto second = run(port, "logs2");
  std::size_t judged_in_login = 0, ok = 0;
  for (auto& l : second) {
    ok += l.event == "scan_ok";
    if (l.event != "mailbox_slow")
      continue;
    auto took = std::stoul(l.detail.substr(l.detail.find("took ") + 5));
    judged_in_login += took < 500;  // the LOGIN answer (500 ms) had not come yet
  }
  CHECK(ok == healthy.size() + slow.size());
  CHECK(judged_in_login >= 1);
}

TEST_CASE("scheduler: a mailbox stored as slow starts the next run in the lane, and a fast pass clears the mark",
          "[integration][scheduler][slow_lane]") {
  sim::sim_options so;
  so.mailboxes = 40;  // (the simulator picks the slow ones from its seed: 2 are enough)
  so.messages = 2;
  so.latency_ms = 5;
  so.faults.slow = 0.15;
  so.faults.slow_ms = 500;
  sim::simulator slow_sim{so};
  auto slow_port = slow_sim.start();
  REQUIRE(slow_port != 0);
  std::vector<std::size_t> slow, healthy;
  for (std::size_t u = 0; u < so.mailboxes; ++u)
    (slow_sim.is_slow(u) ? slow : healthy).push_back(u);
  REQUIRE(slow.size() >= 2);
  slow.resize(2);
  healthy.resize(std::min<std::size_t>(healthy.size(), 8));
  auto dir = test::unique_test_dir("slow-stored");
  // One store across the runs; each run logs into its own directory.
  auto run = [&](std::uint16_t port, const std::string& logs) { return run_slow_lane(dir, port, 4, slow, healthy, logs); };
  auto count = [](const std::vector<log_line>& lines, std::string_view event, const std::string& user) {
    return std::count_if(lines.begin(), lines.end(), [&](auto& l) { return l.event == event && l.user == user; });
  };
  auto restored = [](const std::vector<log_line>& lines) {  // some mailbox starts in the lane
    return std::any_of(lines.begin(), lines.end(), [](auto& l) {
      return l.event == "stored_state_restored" && l.detail.rfind("slow=0 ", 0) != 0;
    });
  };

  auto first = run(slow_port, "logs1");  // found out slow, as before: marked and stored
  for (auto u : slow)
    CHECK(count(first, "mailbox_slow", fmt::format("sim{}", u)) == 1);
  CHECK_FALSE(restored(first));

  // The next process knows them: in the lane from their first lease, so they never hold a
  // healthy slot (no new mark, no "slow lane is full" yield) and still finish their pass.
  auto second = run(slow_port, "logs2");
  CHECK(restored(second));
  for (auto u : slow) {
    auto user = fmt::format("sim{}", u);
    INFO(user);
    CHECK(count(second, "mailbox_slow", user) == 0);
    CHECK(count(second, "lease_yielded", user) == 0);
    CHECK(count(second, "scan_ok", user) == 1);
  }

  // The server is fast again (the same mailboxes on a simulator without the fault): one whole
  // fast pass clears the stored mark, and the run after starts with nobody in the lane.
  sim::sim_options fast = so;
  fast.faults.slow = 0;
  sim::simulator fast_sim{fast};
  auto fast_port = fast_sim.start();
  REQUIRE(fast_port != 0);
  auto third = run(fast_port, "logs3");
  CHECK(restored(third));
  for (auto u : slow)
    CHECK(count(third, "mailbox_fast_again", fmt::format("sim{}", u)) == 1);
  auto fourth = run(fast_port, "logs4");
  // (A loaded machine may make a mailbox look slow in the third run: then it is restored.)
  bool any_slow_in_third = std::any_of(third.begin(), third.end(), [](auto& l) { return l.event == "mailbox_slow"; });
  if (!any_slow_in_third)
    CHECK_FALSE(restored(fourth));
}

TEST_CASE("scheduler: a host answering LIMIT is paused on its own, and the other host scans on",
          "[integration][scheduler][governor]") {
  sim::sim_options a;
  a.mailboxes = 20;
  a.messages = 3;
  sim::simulator fine{a};
  sim::sim_options b = a;
  b.faults.throttle = 1.0;
  b.faults.throttle_s = 3;
  b.faults.throttle_answer = "NO [LIMIT] Too many concurrent connections, retry after 3 seconds";
  sim::simulator throttling{b};
  auto port_a = fine.start();
  auto port_b = throttling.start();
  REQUIRE(port_a != 0);
  REQUIRE(port_b != 0);
  std::string cfg = "[engine]\ndata_dir = \"data\"\nlog_dir = \"logs\"\ndays_back = 30\ninfo_logging = true\n"
                    "max_connections = 8\nmax_connections_per_host = 4\n\n";
  // Interleaved, so both hosts have mailboxes due from the start; throttle_backoff_s = 0:
  // the server's hint alone sets the pause.
  for (std::size_t u = 0; u < 20; ++u)
    cfg += mailbox_block(fmt::format("b{}", u), u, port_b, "throttle_backoff_s = 0") +
           mailbox_block(fmt::format("a{}", u), u, port_a);
  auto dir = test::unique_test_dir("governor");
  std::ofstream(dir / "mailscan.toml") << cfg;
  auto r = test::run_mailscan({"run", "--config", (dir / "mailscan.toml").string(), "--once"});
  INFO(r.out << r.err);
  CHECK(r.code == 3);  // the mailboxes throttled in flight failed this pass
  // Only the logins in flight when the first refusal came back were refused: the host's
  // other mailboxes waited out the pause instead of hammering it.
  auto tb = throttling.stats();
  CHECK(tb.throttled_logins >= 1);
  CHECK(tb.throttled_logins <= 4);
  CHECK(tb.logins + tb.throttled_logins == 20);
  CHECK(fine.stats().logins == 20);
  CHECK(fine.stats().throttled_logins == 0);

  auto lines = read_log(dir / "logs");
  auto key_b = fmt::format("127.0.0.1:{}", port_b);
  std::size_t paused = 0;
  std::string last_a, first_b;
  for (auto& l : lines) {
    if (l.event == "host_throttled") {
      ++paused;
      CHECK(l.host == key_b);
    } else if (l.event == "scan_ok" && l.user.rfind("a", 0) == 0) {
      last_a = std::max(last_a, l.at);
    } else if (l.event == "scan_ok" && l.user.rfind("b", 0) == 0 && first_b.empty()) {
      first_b = l.at;
    }
  }
  CHECK(paused == tb.throttled_logins);
  // Host A did not wait for B's pause: all of A was scanned before B's first scan after it.
  REQUIRE(!first_b.empty());
  CHECK(last_a < first_b);
}
