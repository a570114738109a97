#include "actors/cluster_common.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <fstream>
#include <stdexcept>
#include <unistd.h>

namespace mscan::actors::cluster {

namespace {

// FNV-1a then a 64-bit finaliser (splitmix): stable across builds and platforms, unlike
// std::hash, so a restarted coordinator computes the same owners.
std::uint64_t weight(std::string_view node, std::string_view user) {
  std::uint64_t h = 1469598103934665603ull;
  auto mix = [&](std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ull;
    }
  };
  mix(node);
  mix(std::string_view{"\0", 1});
  mix(user);
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

std::string hex(const unsigned char* p, std::size_t n) { return fmt::format("{:02x}", fmt::join(p, p + n, "")); }

} // namespace

std::string owner_of(std::string_view user, const std::vector<std::string>& nodes) {
  const std::string* best = nullptr;
  std::uint64_t best_w = 0;
  for (auto& n : nodes) {
    auto w = weight(n, user);
    if (!best || w > best_w || (w == best_w && n < *best)) {
      best = &n;
      best_w = w;
    }
  }
  return best ? *best : std::string{};
}

std::string join_proof(std::string_view secret, std::string_view nonce) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(nonce.data()), nonce.size(), md, &len);
  return hex(md, len);
}

std::string random_nonce() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1)
    throw std::runtime_error("no randomness for the cluster join nonce");
  return hex(b, sizeof b);
}

bool same_proof(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::vector<std::string> membership::live() const {
  std::vector<std::string> out;
  for (auto& n : nodes)
    if (n.state == "up")
      out.push_back(n.name);
  return out;
}

std::filesystem::path membership_file(const std::filesystem::path& data_dir) { return data_dir / "cluster.json"; }

bool write_membership(const std::filesystem::path& data_dir, const membership& m) {
  nlohmann::json j{{"listen", m.listen},
                   {"coordinator_pid", m.coordinator_pid},
                   {"coordinator_running", m.coordinator_running},
                   {"updated", m.updated},
                   {"nodes", nlohmann::json::array()}};
  for (auto& n : m.nodes)
    j["nodes"].push_back(
      {{"name", n.name}, {"state", n.state}, {"joined", n.joined}, {"changed", n.changed}, {"detail", n.detail}});
  auto final_path = membership_file(data_dir);
  auto tmp = final_path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump(2) << "\n";
    if (!out.flush())
      return false;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, final_path, ec);
  return !ec;
}

std::optional<membership> read_membership(const std::filesystem::path& data_dir) {
  std::ifstream in(membership_file(data_dir));
  if (!in)
    return std::nullopt;
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return std::nullopt;
  membership m;
  m.listen = j.value("listen", "");
  m.coordinator_pid = j.value("coordinator_pid", std::int64_t{0});
  m.coordinator_running = j.value("coordinator_running", false);
  m.updated = j.value("updated", std::int64_t{0});
  if (auto it = j.find("nodes"); it != j.end() && it->is_array())
    for (auto& n : *it)
      if (n.is_object())
        m.nodes.push_back({n.value("name", ""), n.value("state", ""), n.value("joined", std::int64_t{0}),
                           n.value("changed", std::int64_t{0}), n.value("detail", "")});
  return m;
}

} // namespace mscan::actors::cluster
