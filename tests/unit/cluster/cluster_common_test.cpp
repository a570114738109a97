// What coordinator, nodes and `status` agree on: rendezvous ownership (stable under membership
// change), the join proof, the membership file.
#include "actors/cluster_common.hpp"
#include "core/config.hpp"
#include "tests/support/mailscan_cli.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <fstream>
#include <map>

using namespace mscan::actors::cluster;

namespace {

std::map<std::string, std::string> owners(const std::vector<std::string>& nodes, int users) {
  std::map<std::string, std::string> out;
  for (int u = 0; u < users; ++u) {
    auto user = fmt::format("user{}", u);
    out[user] = owner_of(user, nodes);
  }
  return out;
}

} // namespace

TEST_CASE("rendezvous: no node, no owner, one node owns everything", "[unit][cluster]") {
  CHECK(owner_of("alice", {}).empty());
  CHECK(owner_of("alice", {"n1"}) == "n1");
  CHECK(owner_of("alice", {"n1", "n2"}) == owner_of("alice", {"n2", "n1"}));  // order does not matter
}

TEST_CASE("rendezvous: a joining node takes only what it wins, a leaving node hands over only its own",
          "[unit][cluster]") {
  constexpr int users = 2000;
  auto before = owners({"a", "b", "c"}, users);
  std::map<std::string, int> share;
  for (auto& [u, n] : before)
    ++share[n];
  for (auto& [n, count] : share) {
    INFO(n);
    CHECK(count > users / 3 * 0.8);  // balanced within 20 %
    CHECK(count < users / 3 * 1.2);
  }
  auto joined = owners({"a", "b", "c", "d"}, users);
  int moved = 0;
  for (auto& [u, n] : joined)
    if (n != before[u]) {
      CHECK(n == "d");
      ++moved;
    }
  CHECK(moved > users / 4 * 0.8);
  CHECK(moved < users / 4 * 1.2);
  auto left = owners({"a", "c"}, users);
  for (auto& [u, n] : left)
    if (before[u] != "b")
      CHECK(n == before[u]);
}

TEST_CASE("join proof: HMAC-SHA256 (RFC 4231 case 2), compared in constant time", "[unit][cluster]") {
  CHECK(join_proof("Jefe", "what do ya want for nothing?") ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  CHECK(join_proof("secret", "n1") != join_proof("secret", "n2"));
  CHECK(same_proof("abc", "abc"));
  CHECK_FALSE(same_proof("abc", "abd"));
  CHECK_FALSE(same_proof("abc", "abcd"));
  auto a = random_nonce(), b = random_nonce();
  CHECK(a.size() == 32);
  CHECK(a != b);
}

TEST_CASE("membership file: written whole, read back, live nodes are the 'up' ones", "[unit][cluster]") {
  auto dir = mscan::test::unique_test_dir("cluster-membership");
  CHECK_FALSE(read_membership(dir));
  membership m;
  m.listen = "127.0.0.1:7400";
  m.coordinator_pid = 42;
  m.coordinator_running = true;
  m.updated = 1795500000;
  m.nodes = {{"n1", "up", 1, 2, ""}, {"n2", "down", 1, 3, "no heartbeat for 5000 ms"}, {"n3", "up", 4, 4, ""}};
  REQUIRE(write_membership(dir, m));
  auto back = read_membership(dir);
  REQUIRE(back);
  CHECK(back->listen == m.listen);
  CHECK(back->coordinator_pid == 42);
  CHECK(back->coordinator_running);
  REQUIRE(back->nodes.size() == 3);
  CHECK(back->nodes[1].detail == "no heartbeat for 5000 ms");
  CHECK(back->live() == std::vector<std::string>{"n1", "n3"});
  std::ofstream(membership_file(dir)) << "{not json";
  CHECK_FALSE(read_membership(dir));  // a torn or foreign file reads as "no cluster"
}

TEST_CASE("config: [cluster] keys, defaults and clear errors", "[unit][cluster]") {
  auto ok = mscan::core::parse_config("[cluster]\nsecret_env = \"S\"\nheartbeat_ms = 250\nnode_timeout_ms = 900\n"
                                      "min_nodes = 3\n",
                                      "/tmp/c.toml");
  REQUIRE(ok);
  CHECK(ok->cluster.secret_env == "S");
  CHECK(ok->cluster.heartbeat_ms == 250);
  CHECK(ok->cluster.node_timeout_ms == 900);
  CHECK(ok->cluster.min_nodes == 3);
  auto defaults = mscan::core::parse_config("", "/tmp/c.toml");
  REQUIRE(defaults);
  CHECK(defaults->cluster.secret_env.empty());
  CHECK(defaults->cluster.heartbeat_ms == 1000);
  CHECK(defaults->cluster.node_timeout_ms == 5000);
  auto slow = mscan::core::parse_config("[cluster]\nheartbeat_ms = 2000\nnode_timeout_ms = 1000\n", "/tmp/c.toml");
  REQUIRE_FALSE(slow);
  CHECK(slow.error().message.find("node_timeout_ms") != std::string::npos);
  auto typo = mscan::core::parse_config("[cluster]\nsecret = \"inline\"\n", "/tmp/c.toml");
  REQUIRE_FALSE(typo);
  CHECK(typo.error().message.find("unknown key 'secret'") != std::string::npos);
  CHECK(typo.error().message.find("inline") == std::string::npos);  // a value is never echoed
}
