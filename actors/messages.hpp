#pragma once
// Every message that crosses an actor boundary, its atoms and its type IDs, in one place.
// Types that may cross nodes (cluster) have an `inspect` so CAF can serialise them.
//
// Pipeline and credit (backpressure):
//   scheduler --lease--> mailbox --fetched_batch--> matcher --matched_batch--> writer
//        ^                  ^                                                    |
//        +---scan_done------+<------------------durable / write_failed----------+
//                   (durable carries the batch's server-side rule actions: the mailbox
//                    runs them on the still-selected folder, then writes their results)
//        <--slice? (bool)---+  fairness: after a slice (slice_batches / slice_seconds) the
//                              mailbox asks whether others wait; if so it logs out at the next
//                              batch boundary and reports scan_done with `more` (requeued).
//        <--slow? (bool)----+  slow lane: a server slower than slow_response_ms to answer;
//                              false = the host's slow lane is full: log out at once and
//                              report `more` (requeued in the slow lane).
// A mailbox holds at most `max_inflight_batches` batches between itself and the writer's
// durable acknowledgement; it resumes fetching only when credit returns, so a slow disk slows
// fetching instead of growing memory. Checkpoints ride in the batch and are written in the
// same RocksDB WriteBatch as its messages; a mailbox always uses the same matcher, so its
// batches reach the writer in order.
#include "storage/store.hpp"

#include <caf/all.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace mscan::actors {

// One message as fetched from the server (raw bytes, not yet parsed).
struct raw_message {
  std::string folder;
  std::uint32_t uidvalidity = 0;
  std::uint32_t uid = 0;
  std::uint64_t size = 0;
  std::int64_t internaldate = 0;
  std::vector<std::string> flags;
  std::string raw;
  bool truncated = false;  // a text part was cut at the fetch cap
  // Parts not downloaded (attachments): sizes as the server counts them, since `raw` holds
  // them as headers-only stubs.
  std::vector<storage::attachment_info> server_attachments;
  std::uint64_t gm_msgid = 0;  // Gmail X-GM-MSGID (one message under many labels)
};

struct fetched_batch {
  std::string user;
  std::uint64_t seq = 0;
  caf::actor reply_to;  // the mailbox actor awaiting the durable acknowledgement
  std::vector<raw_message> messages;
  std::vector<storage::checkpoint_update> checkpoints;
  std::vector<storage::uidl_update> uidls;  // POP3: the UIDL-set changes this batch covers
};

struct matched_batch {
  std::string user;
  std::uint64_t seq = 0;
  caf::actor reply_to;
  std::vector<storage::message_record> records;
  std::vector<storage::checkpoint_update> checkpoints;
  std::vector<storage::uidl_update> uidls;
};

// A server-side rule action (move / delete / mark_read) on the copy a record was fetched as.
// The writer returns them with the durable acknowledgement: they run only once the message is
// tracked, and their results come back to the writer as "action_result" reasons.
struct server_action {
  std::string key;      // message key (for recording the result)
  std::string folder;
  std::uint32_t uidvalidity = 0;
  std::uint32_t uid = 0;
  std::string action;   // "mark_read" | "delete" | "move:<folder>" (the "action" reason target)
};

// What one scan pass of one mailbox ended with.
struct scan_result {
  std::string user;
  bool ok = false;
  std::string reason;  // INTERFACE.md reason code when !ok
  std::string detail;
  std::uint64_t fetched = 0;
  std::uint64_t new_messages = 0;
  std::uint64_t new_sightings = 0;
  std::vector<std::string> capabilities;
  std::vector<std::string> folder_names;    // folders opened, in order
  std::vector<std::uint32_t> folder_counts;  // their message counts (EXISTS)
  std::uint32_t retry_after_s = 0;           // throttled: the server's suggested back-off
  std::vector<std::string> server_id;        // RFC 2971 ID answer: field, value, field, value...
  // The mailbox yielded its lease after a slice (others were waiting): not the end of the
  // pass; the scheduler requeues it at once, behind them. Counters add up over the slices.
  bool more = false;
  // throttled by a per-mailbox limit (a provider's download quota): pause this mailbox only,
  // not every mailbox on its host.
  bool throttle_mailbox_only = false;
  // The server was slower than slow_response_ms to answer in this pass (any slice of it):
  // the health actor stores the slow-lane mark (storage::mailbox_state::slow).
  bool slow = false;
  // The quickest answer of this lease, command to first bytes, in ms (-1: none): the host's
  // typical speed, against which an early slow report is judged (scheduler_actor.cpp).
  std::int64_t reply_ms = -1;
};

inline scan_result failed_result(std::string user, std::string reason, std::string detail) {
  scan_result r;
  r.user = std::move(user);
  r.reason = std::move(reason);
  r.detail = std::move(detail);
  return r;
}

struct run_summary {
  std::vector<scan_result> results;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, raw_message& x) {
  return f(caf::meta::type_name("raw_message"), x.folder, x.uidvalidity, x.uid, x.size,
           x.internaldate, x.flags, x.raw, x.truncated, x.server_attachments, x.gm_msgid);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, fetched_batch& x) {
  return f(caf::meta::type_name("fetched_batch"), x.user, x.seq, x.reply_to, x.messages, x.checkpoints,
           x.uidls);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, matched_batch& x) {
  return f(caf::meta::type_name("matched_batch"), x.user, x.seq, x.reply_to, x.records, x.checkpoints,
           x.uidls);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, server_action& x) {
  return f(caf::meta::type_name("server_action"), x.key, x.folder, x.uidvalidity, x.uid, x.action);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, scan_result& x) {
  return f(caf::meta::type_name("scan_result"), x.user, x.ok, x.reason, x.detail, x.fetched,
           x.new_messages, x.new_sightings, x.capabilities, x.folder_names, x.folder_counts,
           x.retry_after_s, x.server_id, x.more, x.throttle_mailbox_only, x.slow, x.reply_ms);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, run_summary& x) {
  return f(caf::meta::type_name("run_summary"), x.results);
}

} // namespace mscan::actors

namespace mscan::storage {
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sighting& x) {
  return f(caf::meta::type_name("sighting"), x.user, x.folder, x.uidvalidity, x.uid);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, attachment_info& x) {
  return f(caf::meta::type_name("attachment_info"), x.name, x.type, x.size);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, link_reason& x) {
  return f(caf::meta::type_name("link_reason"), x.kind, x.target, x.cause);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, message_record& x) {
  return f(caf::meta::type_name("message_record"), x.key, x.message_id, x.subject, x.from, x.to,
           x.cc, x.date, x.size, x.sightings, x.users, x.contacts, x.accounts, x.items, x.tickets,
           x.attachments, x.reasons, x.warnings);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, folder_checkpoint& x) {
  return f(caf::meta::type_name("folder_checkpoint"), x.uidvalidity, x.last_uid, x.highest_modseq);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, checkpoint_update& x) {
  return f(caf::meta::type_name("checkpoint_update"), x.user, x.folder, x.cp);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, uidl_update& x) {
  return f(caf::meta::type_name("uidl_update"), x.user, x.uidl, x.uid, x.removed);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, mailbox_state& x) {
  return f(caf::meta::type_name("mailbox_state"), x.user, x.state, x.last_scanned,
           x.consecutive_failures, x.last_error_reason, x.last_error_detail, x.messages_tracked);
}
} // namespace mscan::storage

CAF_BEGIN_TYPE_ID_BLOCK(mscan, caf::first_custom_type_id)
  CAF_ADD_TYPE_ID(mscan, (mscan::actors::raw_message))
  CAF_ADD_TYPE_ID(mscan, (mscan::actors::fetched_batch))
  CAF_ADD_TYPE_ID(mscan, (mscan::actors::matched_batch))
  CAF_ADD_TYPE_ID(mscan, (mscan::actors::scan_result))
  CAF_ADD_TYPE_ID(mscan, (mscan::actors::run_summary))
  CAF_ADD_TYPE_ID(mscan, (mscan::storage::message_record))
  CAF_ADD_TYPE_ID(mscan, (mscan::storage::checkpoint_update))
  CAF_ADD_TYPE_ID(mscan, (mscan::storage::folder_checkpoint))
  CAF_ADD_TYPE_ID(mscan, (mscan::storage::mailbox_state))
  CAF_ADD_TYPE_ID(mscan, (std::map<std::string, mscan::storage::folder_checkpoint>))

  CAF_ADD_ATOM(mscan, mscan::atoms, run_atom, "run")
  CAF_ADD_ATOM(mscan, mscan::atoms, stop_atom, "stop")
  CAF_ADD_ATOM(mscan, mscan::atoms, due_atom, "due")
  CAF_ADD_ATOM(mscan, mscan::atoms, lease_atom, "lease")
  CAF_ADD_ATOM(mscan, mscan::atoms, scan_done_atom, "scandone")
  CAF_ADD_ATOM(mscan, mscan::atoms, match_atom, "match")
  CAF_ADD_ATOM(mscan, mscan::atoms, write_atom, "write")
  CAF_ADD_ATOM(mscan, mscan::atoms, flush_atom, "flush")
  CAF_ADD_ATOM(mscan, mscan::atoms, durable_atom, "durable")
  CAF_ADD_ATOM(mscan, mscan::atoms, write_failed_atom, "writefail")
  CAF_ADD_ATOM(mscan, mscan::atoms, checkpoints_atom, "cps")
  CAF_ADD_ATOM(mscan, mscan::atoms, state_atom, "state")
  CAF_ADD_ATOM(mscan, mscan::atoms, net_data_atom, "netdata")
  CAF_ADD_ATOM(mscan, mscan::atoms, net_up_atom, "netup")
  CAF_ADD_ATOM(mscan, mscan::atoms, net_tls_atom, "nettls")
  CAF_ADD_ATOM(mscan, mscan::atoms, net_fail_atom, "netfail")
  // The connection saw no traffic for a tick (net::endpoint_options::quiet_ms).
  CAF_ADD_ATOM(mscan, mscan::atoms, net_quiet_atom, "netquiet")
  CAF_ADD_ATOM(mscan, mscan::atoms, timeout_atom, "timeout")
  CAF_ADD_ATOM(mscan, mscan::atoms, progress_atom, "progress")
  CAF_ADD_ATOM(mscan, mscan::atoms, grant_atom, "grant")
  CAF_ADD_ATOM(mscan, mscan::atoms, reload_atom, "reload")
  CAF_ADD_TYPE_ID(mscan, (mscan::actors::server_action))
  CAF_ADD_TYPE_ID(mscan, (std::vector<mscan::actors::server_action>))
  CAF_ADD_TYPE_ID(mscan, (mscan::storage::uidl_update))
  CAF_ADD_TYPE_ID(mscan, (std::map<std::string, std::uint32_t>))
  CAF_ADD_ATOM(mscan, mscan::atoms, uidls_atom, "uidls")
  CAF_ADD_TYPE_ID(mscan, (std::vector<std::uint32_t>))
  CAF_ADD_ATOM(mscan, mscan::atoms, slice_atom, "slice")
  CAF_ADD_ATOM(mscan, mscan::atoms, token_atom, "token")
  // Cluster (actors/cluster_*.hpp, docs/cluster.md). The join handshake (hello, challenge,
  // join, welcome, refused) carries only CAF built-in types, so that nodes of any protocol
  // version can exchange it and be refused cleanly.
  CAF_ADD_ATOM(mscan, mscan::atoms, cl_hello_atom, "clhello")
  CAF_ADD_ATOM(mscan, mscan::atoms, cl_challenge_atom, "clchallng")
  CAF_ADD_ATOM(mscan, mscan::atoms, cl_join_atom, "cljoin")
  CAF_ADD_ATOM(mscan, mscan::atoms, cl_welcome_atom, "clwelcome")
  CAF_ADD_ATOM(mscan, mscan::atoms, cl_refused_atom, "clrefused")
  CAF_ADD_ATOM(mscan, mscan::atoms, cl_beat_atom, "clbeat")
  CAF_ADD_ATOM(mscan, mscan::atoms, cl_owner_atom, "clowner")
  CAF_ADD_ATOM(mscan, mscan::atoms, cl_node_up_atom, "clnodeup")
  CAF_ADD_ATOM(mscan, mscan::atoms, cl_node_down_atom, "clnodedown")
  CAF_ADD_ATOM(mscan, mscan::atoms, cl_bye_atom, "clbye")
  // Kept sessions (docs/imap.md): mailbox -> scheduler (park_atom, new_messages) -> bool;
  // unpark_atom both ways (log out your kept session / my kept session is gone);
  // wake_atom: IDLE saw new mail; idle_atom: the 29-minute IDLE refresh timer.
  CAF_ADD_ATOM(mscan, mscan::atoms, park_atom, "park")
  CAF_ADD_ATOM(mscan, mscan::atoms, unpark_atom, "unpark")
  CAF_ADD_ATOM(mscan, mscan::atoms, wake_atom, "wake")
  CAF_ADD_ATOM(mscan, mscan::atoms, idle_atom, "idlerefr")
  CAF_ADD_ATOM(mscan, mscan::atoms, slow_atom, "slow")
  // The engine-wide in-flight byte budget has room again (actors/inflight_budget.hpp).
  CAF_ADD_ATOM(mscan, mscan::atoms, budget_atom, "budget")
  // mailbox -> scheduler: the pass's connection is closed, only acknowledgements are awaited:
  // its connection slot is free (the pass itself ends with scan_done_atom).
  CAF_ADD_ATOM(mscan, mscan::atoms, conn_closed_atom, "connclosd")
CAF_END_TYPE_ID_BLOCK(mscan)
