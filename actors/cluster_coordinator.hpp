#pragma once
// The coordinator side of a cluster (docs/cluster.md). `mailscan coordinator` is `mailscan
// run` with these hooks: this process keeps the store, the writer, the health actor and the
// scheduler — so every connection lease of the cluster is granted here and the global and
// per-host bounds hold for the cluster exactly — while the mailboxes are scanned and matched
// on the nodes that join.
//
//   Every handshake answer has one shape, (atom kind, string, string | uint32), kind = refused
//   or the next step, so that a node of any version can read it.
//   node                         coordinator (published on --listen, loopback)
//   hello(version, name) ------> version != ours: refused(why)
//        <------------------------ challenge(secret_env, nonce)
//   join(name, proof, node) ---> wrong proof: refused(why); else monitor(node)
//        <------------------------ welcome(config file, heartbeat_ms)
//   beat(name) every heartbeat_ms ------------> (no beat for node_timeout_ms: node is dead)
//        <------------------------ lease(user)     from the mailbox's stand-in (below)
//   scan_done(result) ---------> stand-in ---> scheduler
//   batches, checkpoints, state -> this actor (the gate: members only) -> writer / health
//
// Per mailbox the scheduler spawns a stand-in (cluster_mailbox_proxy) instead of a mailbox
// actor: it holds the lease and passes it to the node that owns the mailbox now (rendezvous
// hashing over the live nodes). When that node dies (CAF down message: connection lost; or
// heartbeat timeout) the stand-in passes the same lease to the new owner, which starts from
// the last durable checkpoint: batches of the dead node that were not durable were never
// acknowledged, and batches that became durable are absorbed by the sighting identity.
#include "actors/cluster_common.hpp"
#include "actors/scheduler_actor.hpp"

#include <caf/io/all.hpp>

#include <functional>
#include <memory>

namespace mscan::actors {

struct coordinator_settings {
  std::string host = "127.0.0.1";  // loopback only (the CLI refuses anything else)
  std::uint16_t port = 0;          // 0: any free port (reported through on_listening)
  std::string secret_env;          // named to nodes so they know where to look
  std::string secret;              // never sent: nodes answer a challenge with an HMAC
  std::uint32_t heartbeat_ms = 1000;
  std::uint32_t node_timeout_ms = 5000;
  std::uint32_t min_nodes = 1;  // before this many joined, leases wait
  std::filesystem::path config_file;  // nodes load the same file (same path, same machine
                                      // or shared file system)
  std::filesystem::path data_dir;     // cluster.json goes here
  std::function<void(const std::string& host, std::uint16_t port)> on_listening;
};

struct cluster_hooks {
  explicit cluster_hooks(coordinator_settings s) : settings(std::move(s)) {}
  void configure(caf::actor_system_config& cfg);
  // Publishes the coordinator and makes the scheduler spawn stand-ins. Non-empty = error.
  std::string start(caf::actor_system& sys, caf::actor writer, caf::actor health,
                    std::shared_ptr<core::event_log> log, scheduler_settings& ss);
  // After the last pass: everything the nodes sent before is forwarded, the nodes are told to
  // shut down, the port is closed and the membership file says so.
  void finish(caf::scoped_actor& self);

  coordinator_settings settings;

 private:
  caf::actor coordinator_;
  caf::actor_system* sys_ = nullptr;
};

} // namespace mscan::actors
