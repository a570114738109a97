#include "actors/mailbox_actor.hpp"

#include "actors/engine_metrics.hpp"
#include "actors/inflight_budget.hpp"
#include "common/text.hpp"

#include "core/mailbox_health.hpp"
#include "protocols/imap/deflate_stream.hpp"
#include "protocols/imap/scan_session.hpp"
#include "protocols/pop3/scan_session.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

namespace mscan::actors {

using namespace mscan::atoms;

namespace {


// The protocol half of a pass behind one face: the POP3 session speaks the IMAP session's
// event vocabulary, so everything below (pipeline, credit, checkpoints, timeouts) serves both.
struct protocol_session {
  virtual ~protocol_session() = default;
  virtual void on_bytes(std::string_view bytes) = 0;
  virtual void on_tls_established() = 0;
  virtual void on_eof() = 0;
  virtual void resume() = 0;
  virtual std::optional<imap::session_output> poll() = 0;
  virtual bool awaiting_resume() const = 0;
  virtual bool authenticating() const = 0;
  virtual const std::vector<std::string>& capabilities() const = 0;
  virtual void mark_seen(std::vector<std::uint32_t> uids) = 0;
  // IMAP: a rule's server-side action on messages of the selected folder.
  virtual void queue_action(imap::action_request req) = 0;
  // IMAP: server bytes that followed the COMPRESS OK in the same read (already deflated).
  virtual std::string take_compressed_rest() = 0;
  // IMAP: fairness, LOGOUT at the next batch boundary (POP3 passes are not sliced).
  virtual void finish_early() = 0;
  virtual bool ended_early() const = 0;
  // POP3: the UIDL-set changes the batch being sent covers (they ride in it).
  virtual std::vector<storage::uidl_update> take_uidl_updates(const std::string& user) = 0;
  // POP3: durably tracked messages a rule wants deleted; every batch of the pass is durable.
  virtual void dele(const std::vector<std::uint32_t>& uids) = 0;
  virtual void all_acked() = 0;
  // IMAP kept sessions (scan_session: park, repoll, park_idle, end_parked, stop_idle).
  virtual void repoll() = 0;
  virtual bool park_idle() = 0;
  virtual void end_parked() = 0;
  virtual bool idling() const = 0;
  virtual bool parked() const = 0;
  virtual void stop_idle(imap::idle_stop how) = 0;
};

template <class Session>
struct session_adapter final : protocol_session {
  Session s;
  template <class Options>
  explicit session_adapter(Options o) : s(std::move(o)) {}
  void on_bytes(std::string_view bytes) override { s.on_bytes(bytes); }
  void on_tls_established() override { s.on_tls_established(); }
  void on_eof() override { s.on_eof(); }
  void resume() override { s.resume(); }
  std::optional<imap::session_output> poll() override { return s.poll(); }
  bool awaiting_resume() const override { return s.awaiting_resume(); }
  bool authenticating() const override { return s.authenticating(); }
  const std::vector<std::string>& capabilities() const override { return s.capabilities(); }
  void mark_seen(std::vector<std::uint32_t> uids) override {
    if constexpr (std::is_same_v<Session, imap::scan_session>)
      s.mark_seen(std::move(uids));
  }
  void queue_action(imap::action_request req) override {
    if constexpr (std::is_same_v<Session, imap::scan_session>)
      s.queue_action(std::move(req));
  }
  void finish_early() override {
    if constexpr (std::is_same_v<Session, imap::scan_session>)
      s.finish_early();
  }
  bool ended_early() const override {
    if constexpr (std::is_same_v<Session, imap::scan_session>)
      return s.ended_early();
    return false;
  }
  std::string take_compressed_rest() override {
    if constexpr (std::is_same_v<Session, imap::scan_session>)
      return s.take_compressed_rest();
    return {};
  }
  void dele(const std::vector<std::uint32_t>& uids) override {
    if constexpr (std::is_same_v<Session, pop3::scan_session>)
      s.dele(uids);
  }
  void all_acked() override {
    if constexpr (std::is_same_v<Session, pop3::scan_session>)
      s.all_acked();
  }
  void repoll() override {
    if constexpr (std::is_same_v<Session, imap::scan_session>)
      s.repoll();
  }
  bool park_idle() override {
    if constexpr (std::is_same_v<Session, imap::scan_session>)
      return s.park_idle();
    return false;
  }
  void end_parked() override {
    if constexpr (std::is_same_v<Session, imap::scan_session>)
      s.end_parked();
  }
  bool idling() const override {
    if constexpr (std::is_same_v<Session, imap::scan_session>)
      return s.idling();
    return false;
  }
  bool parked() const override {
    if constexpr (std::is_same_v<Session, imap::scan_session>)
      return s.parked();
    return false;
  }
  void stop_idle(imap::idle_stop how) override {
    if constexpr (std::is_same_v<Session, imap::scan_session>)
      s.stop_idle(how);
  }
  std::vector<storage::uidl_update> take_uidl_updates(const std::string& user) override {
    std::vector<storage::uidl_update> out;
    if constexpr (std::is_same_v<Session, pop3::scan_session>)
      for (auto& c : s.take_uidl_changes())
        out.push_back({user, std::move(c.uidl), c.uid, c.removed});
    return out;
  }
};

// The session of one connection, shared by its mailbox actor and the io thread. Server bytes
// go into it on the io thread, which also carries out at once what the session answers on the
// wire (the next command, STARTTLS, COMPRESS): a login, a folder open or a search step costs no
// hop to the actor and back. Only what the actor decides on (messages, batch and folder ends,
// the end of the pass, failures, idle activity) is queued for it, and the actor is woken once
// per burst (net_data_atom). The actor's own calls (resume, actions, IDLE, ...) go through the
// same object. Every access holds `m_`; nothing called under it calls back.
//
// The reply clock lives here too (the slow lane, see sync_reply_clock): the io thread sees
// the commands go out and the answers come in. Answers are judged by the actor: the io thread
// keeps what it needs (the quickest answer, the login's wait, a silence long enough to judge)
// and wakes it when a judgement is due.
class session_driver {
 public:
  using clock = std::chrono::steady_clock;
  explicit session_driver(std::unique_ptr<protocol_session> s) : s_(std::move(s)) {}

  // The connection this session talks on (weak: the connection's callbacks hold this object).
  // `judge_after`: a silence at least this long is judged by the actor (0 = never);
  // `credentials_proven`: see sync_reply_clock.
  void attach(std::weak_ptr<net::connection> conn, std::chrono::milliseconds judge_after,
              bool credentials_proven) {
    std::lock_guard lock(m_);
    conn_ = std::move(conn);
    deflate_.reset();  // a new connection starts uncompressed
    judge_after_ = judge_after;
    credentials_proven_ = credentials_proven;
    last_activity_ = clock::now();
    reply_start();  // the greeting is an answer too
  }
  // The session is over for this object's owner: later bytes and calls change nothing.
  void detach() {
    std::lock_guard lock(m_);
    s_.reset();
    events_.clear();
  }
  // LOGOUT sent: bytes from now on are not fed to the session (the close is awaited).
  void set_closing() {
    std::lock_guard lock(m_);
    closing_ = true;
  }

  // io thread: server bytes. True when the actor must be woken (it is not already).
  bool feed(std::string_view bytes) {
    std::lock_guard lock(m_);
    if (!s_ || closing_ || !error_.empty())
      return false;
    const auto now = clock::now();
    last_activity_ = now;
    answered(now);
    try {
      receive(bytes);
      drain();
    } catch (const std::exception& e) {
      // Not on this thread: an exception would end the io thread for every connection.
      // The pass fails with it instead (the actor's pump reads error_).
      error_ = std::string("session failed: ") + e.what();
    }
    if (auth_wait_.count() > 0 && s_ && !s_->authenticating()) {
      // The login is over: its wait is judged now if it was accepted. A refusal (the pass
      // fails in this very burst) is delayed on purpose by servers: not slowness.
      const auto wait = std::exchange(auth_wait_, std::chrono::milliseconds{0});
      const bool refused = std::any_of(events_.begin(), events_.end(), [](const imap::session_output& e) {
        return std::holds_alternative<imap::scan_failed>(e);
      });
      if (!refused)
        pending_judge_ = std::max(pending_judge_, wait);
    }
    const bool due = urgent_ || !error_.empty() || pending_judge_.count() > 0;
    return due && !std::exchange(posted_, true);
  }
  // Actor, on net_data_atom (it takes the whole queue next): from now on new bytes wake it again.
  void woken() {
    std::lock_guard lock(m_);
    posted_ = urgent_ = false;
  }
  // Actor: the next output for it (the io thread's queue first, in order), or nothing.
  std::optional<imap::session_output> poll() {
    std::lock_guard lock(m_);
    if (!events_.empty()) {
      auto out = std::move(events_.front());
      events_.pop_front();
      return out;
    }
    while (s_) {
      auto out = s_->poll();
      if (!out || !transport(*out))
        return out;
    }
    return std::nullopt;
  }

  // Actor: what the io thread gathered for the reply clock since the last call.
  struct clock_report {
    std::int64_t quickest_ms = -1;                 // quickest answer to a command (-1: none)
    std::chrono::milliseconds judge{0};            // the longest silence to judge (0: none)
    bool answered = false;                         // an answer came (a new silence since)
  };
  clock_report take_clock() {
    std::lock_guard lock(m_);
    clock_report r{std::exchange(quickest_ms_, -1), std::exchange(pending_judge_, std::chrono::milliseconds{0}),
                   std::exchange(answered_, false)};
    return r;
  }
  // Actor: the silence so far (for the periodic check), and the last byte's time.
  std::chrono::milliseconds waited(clock::time_point now) {
    std::lock_guard lock(m_);
    return std::chrono::duration_cast<std::chrono::milliseconds>(now - reply_wait_since_);
  }
  clock::time_point last_activity() {
    std::lock_guard lock(m_);
    return last_activity_;
  }
  // Actor: a kept connection is used again: the server's turn (and the command timeout's
  // clock) starts now. (Commands are pipelined, so an answer does not mean nothing is
  // outstanding: the clock measures the silence since the last bytes either way, and is not
  // consulted while the session waits for this side: awaiting_resume.)
  void touch() {
    std::lock_guard lock(m_);
    last_activity_ = clock::now();
    reply_start();
  }
  void active() {
    std::lock_guard lock(m_);
    last_activity_ = clock::now();
  }
  // Actor: a corrupt COMPRESS stream or a session that threw on the io thread (the pass
  // fails with it), once.
  std::string take_error() {
    std::lock_guard lock(m_);
    return std::exchange(error_, {});
  }

  // The session's face, for the actor (a dropped session answers as an empty one).
 private:
  template <class F>
  auto locked(F&& f) {
    std::lock_guard lock(m_);
    using R = decltype(f(*s_));
    if constexpr (std::is_void_v<R>) {
      if (s_)
        f(*s_);
    } else {
      return s_ ? f(*s_) : R{};
    }
  }

 public:
  void on_tls_established() { locked([](auto& s) { s.on_tls_established(); }); }
  void on_eof() { locked([](auto& s) { s.on_eof(); }); }
  void resume() { locked([](auto& s) { s.resume(); }); }
  bool awaiting_resume() { return locked([](auto& s) { return s.awaiting_resume(); }); }
  bool authenticating() { return locked([](auto& s) { return s.authenticating(); }); }
  std::vector<std::string> capabilities() {
    return locked([](auto& s) { return s.capabilities(); });
  }
  void mark_seen(std::vector<std::uint32_t> uids) { locked([&](auto& s) { s.mark_seen(std::move(uids)); }); }
  void queue_action(imap::action_request req) { locked([&](auto& s) { s.queue_action(std::move(req)); }); }
  void finish_early() { locked([](auto& s) { s.finish_early(); }); }
  bool ended_early() { return locked([](auto& s) { return s.ended_early(); }); }
  std::vector<storage::uidl_update> take_uidl_updates(const std::string& user) {
    return locked([&](auto& s) { return s.take_uidl_updates(user); });
  }
  void dele(const std::vector<std::uint32_t>& uids) { locked([&](auto& s) { s.dele(uids); }); }
  void all_acked() { locked([](auto& s) { s.all_acked(); }); }
  void repoll() { locked([](auto& s) { s.repoll(); }); }
  bool park_idle() { return locked([](auto& s) { return s.park_idle(); }); }
  void end_parked() { locked([](auto& s) { s.end_parked(); }); }
  bool idling() { return locked([](auto& s) { return s.idling(); }); }
  bool parked() { return locked([](auto& s) { return s.parked(); }); }
  void stop_idle(imap::idle_stop how) { locked([&](auto& s) { s.stop_idle(how); }); }

 private:

  void reply_start() {
    reply_wait_since_ = clock::now();
    awaiting_answer_ = true;
  }
  // Bytes arrived: the silence since the last command or answer ends (sync_reply_clock).
  void answered(clock::time_point now) {
    const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(now - reply_wait_since_);
    reply_wait_since_ = now;
    answered_ = true;
    if (std::exchange(awaiting_answer_, false) && (quickest_ms_ < 0 || waited.count() < quickest_ms_))
      quickest_ms_ = waited.count();
    if (s_ && s_->authenticating() && !credentials_proven_) {
      auth_wait_ = std::max(auth_wait_, waited);
      return;
    }
    if (judge_after_.count() > 0 && waited >= judge_after_)
      pending_judge_ = std::max(pending_judge_, waited);
  }
  // Server bytes into the session, inflated first once COMPRESS is on.
  void receive(std::string_view bytes) {
    if (!deflate_) {
      s_->on_bytes(bytes);
      return;
    }
    if (!deflate_->inflate(bytes, [&](std::string_view plain) {
          if (s_)
            s_->on_bytes(plain);
        }) &&
        error_.empty())
      error_ = deflate_->error().empty() ? std::string{"corrupt COMPRESS stream"} : deflate_->error();
  }
  // Carries out a wire-level output; false for one the actor decides on.
  bool transport(imap::session_output& out) {
    if (auto* w = std::get_if<imap::write_bytes>(&out)) {
      if (auto c = conn_.lock())
        c->write(deflate_ ? deflate_->deflate(w->data) : std::move(w->data));
      reply_start();
      return true;
    }
    if (std::holds_alternative<imap::start_compress>(out)) {
      deflate_ = std::make_unique<imap::deflate_stream>();
      if (auto rest = s_->take_compressed_rest(); !rest.empty())
        receive(rest);
      return true;
    }
    if (std::holds_alternative<imap::start_tls>(out)) {
      if (auto c = conn_.lock())
        c->start_tls();
      return true;
    }
    return false;
  }
  // io thread: everything the session has to say. The end of the pass (or a failure, or a
  // parked session) stops it: what follows waits for the actor's decision.
  void drain() {
    while (s_) {
      auto out = s_->poll();
      if (!out)
        return;
      if (transport(*out))
        continue;
      const bool stop = std::holds_alternative<imap::scan_complete>(*out) ||
                        std::holds_alternative<imap::scan_failed>(*out) ||
                        std::holds_alternative<imap::session_parked>(*out);
      // What only adds to the pass's record (a message of the batch, the server's ID, a
      // folder's counts, a warning) waits for the next event the actor has to act on (a batch
      // or folder end, the end of the pass, an action's result, IDLE news): one wake-up per
      // batch, none for the ID's answer. Every pass ends with one of those, or with a
      // connection failure, whose handling takes the queue first.
      urgent_ = urgent_ || stop || std::holds_alternative<imap::batch_complete>(*out) ||
                std::holds_alternative<imap::folder_complete>(*out) ||
                std::holds_alternative<imap::action_done>(*out) || std::holds_alternative<imap::idle_activity>(*out);
      events_.push_back(std::move(*out));
      if (stop)
        return;
    }
  }

  std::mutex m_;
  std::unique_ptr<protocol_session> s_;
  std::unique_ptr<imap::deflate_stream> deflate_;  // COMPRESS=DEFLATE negotiated on this connection
  std::weak_ptr<net::connection> conn_;
  std::deque<imap::session_output> events_;        // for the actor, in the session's order
  bool posted_ = false;                             // a net_data_atom is on its way
  bool urgent_ = false;                             // events_ holds one the actor acts on
  bool closing_ = false;
  std::string error_;
  // Reply clock.
  clock::time_point last_activity_{};
  clock::time_point reply_wait_since_{};
  bool awaiting_answer_ = false;
  bool answered_ = false;
  bool credentials_proven_ = false;
  std::chrono::milliseconds judge_after_{0};
  std::int64_t quickest_ms_ = -1;
  std::chrono::milliseconds auth_wait_{0};
  std::chrono::milliseconds pending_judge_{0};
};

struct mailbox_state {
  mailbox_settings s;
  caf::actor scheduler;
  std::shared_ptr<session_driver> session;  // dropped with drop_session()
  std::shared_ptr<net::connection> conn;
  std::uint64_t generation = 0;  // one per pass: stale timers of an old pass are ignored
  std::uint64_t conn_gen = 0;    // the pass that opened the connection: stale network events
  // Kept sessions (docs/imap.md): `parked` while the scheduler lets this mailbox keep its
  // logged-in connection between passes; `park_pending` while it is asked (the pass's
  // scan_done waits for the answer, so the lease is never counted twice or lost);
  // `woken`: IDLE reported activity and the scheduler was asked for a pass.
  bool parked = false;
  bool park_pending = false;
  bool woken = false;
  bool reused = false;  // this pass runs on a kept connection (no LOGIN)
  std::uint64_t next_seq = 0;
  std::size_t inflight = 0;
  inflight_budget::holder budget;  // this mailbox's share of the engine-wide in-flight bytes
  bool waiting_budget = false;      // paused for room in it (budget_atom wakes)
  std::vector<raw_message> batch;
  bool server_done = false;  // the IMAP part of the pass is over (complete or failed)
  // LOGOUT sent: waiting for the server to close its side, so that the lease (and with it
  // the server's connection slot) is returned only once the server has let go of it.
  bool closing = false;
  std::chrono::steady_clock::time_point closing_since;
  bool running = false;
  std::optional<scan_result> failure;
  // scan = unread: the UIDs of the batch in flight, marked \Seen once it is durable.
  std::map<std::uint64_t, std::vector<std::uint32_t>> seen_after_ack;
  // Rule actions queued in the session (by action id): the messages each acts on.
  std::map<std::uint64_t, std::vector<server_action>> actions_queued;
  std::uint64_t next_action_id = 1;
  std::uint64_t actions_ok = 0, actions_failed = 0;  // messages, this pass (in the scan_ok line)
  // The batch whose acknowledgement the session waits for (scan = unread, rule actions): an
  // earlier folder's checkpoint-only batch acknowledged meanwhile must not resume it.
  std::optional<std::uint64_t> resume_on_ack;
  scan_result result;
  // Fairness slicing (see messages.hpp): batches and start of this lease's slice; `asking`
  // while the scheduler is asked whether others wait; `yielding` once it said so.
  std::uint32_t slice_batches = 0;
  std::chrono::steady_clock::time_point slice_start;
  bool asking = false;
  bool yielding = false;
  bool continuing = false;  // the last lease was yielded: this one goes on with the same pass
  bool slot_released = false;  // conn_closed_atom sent for this pass
  bool ticking = false;        // this pass's timeout_atom loop runs (started by a quiet spell)
  // Slow lane (the reply clock itself is in the session_driver): whether this lease already
  // asked the scheduler for a slot.
  std::chrono::steady_clock::time_point leased_at{};  // (scan_ok's lease_ms: the scan's latency)
  bool slow_reported = false;
  bool soft_asked = false;  // this silence passed the early threshold and the scheduler was asked
  // The configured credentials are the ones that last logged in (stored state): a login
  // given up mid-way and retried cannot be a second wrong-password attempt.
  bool credentials_proven = false;
  std::int64_t quickest_reply_ms = -1;  // of this lease (scan_result::reply_ms)
  bool slow_pass = false;  // some lease of this pass reported slow (scan_result::slow)
  storage::mailbox_state stored;
  // OAuth: the access token of this pass (from token_source), and whether the server's
  // refusal of one has already been answered with a refresh and a second login.
  std::string token;
  bool token_retried = false;
  std::map<std::string, storage::folder_checkpoint> checkpoints;  // for that second login
  std::map<std::string, std::uint32_t> uidls;                     // (POP3's checkpoint)
  // Provider download quota (max_download_mb_per_day): bytes fetched in the current UTC day.
  std::int64_t quota_day = 0;
  std::uint64_t quota_bytes = 0;

  static inline const char* name = "mailbox";
};

using mailbox_actor_t = caf::stateful_actor<mailbox_state>;

void drop_session(mailbox_actor_t* self);

std::string_view reason_of(net::failure_kind k) {
  switch (k) {
    case net::failure_kind::dns_failure: return "dns_failure";
    case net::failure_kind::connection_refused: return "connection_refused";
    case net::failure_kind::timeout: return "timeout";
    case net::failure_kind::tls_handshake_failed: return "tls_handshake_failed";
    case net::failure_kind::certificate_invalid: return "certificate_invalid";
    case net::failure_kind::closed_by_peer: return "server_bye";
    case net::failure_kind::io_error: return "protocol_error";
  }
  return "protocol_error";
}

void finish_if_drained(mailbox_actor_t* self);
void ask_to_keep(mailbox_actor_t* self);

// Writes the outcome of a rule action as an "action_result" reason of each message (shown by
// `explain`), and logs failures. Best effort: the writer does not acknowledge it.
void record_action_results(mailbox_actor_t* self, const std::vector<server_action>& acts, bool ok,
                           const std::string& detail) {
  auto& st = self->state;
  if (acts.empty())
    return;
  (ok ? st.actions_ok : st.actions_failed) += acts.size();
  matched_batch b;
  b.user = st.s.cfg->user;
  for (auto& a : acts) {
    storage::message_record r;
    r.key = a.key;
    r.reasons.push_back({"action_result", a.action,
                         ok ? (detail.empty() ? std::string{"ok"} : "ok: " + detail) : "failed: " + detail});
    b.records.push_back(std::move(r));
  }
  self->send(st.s.writer, write_atom::value, std::move(b));
  if (!ok && st.s.log)
    st.s.log->write(core::log_level::warning, "action_failed", st.s.cfg->user,
                    fmt::format("{}:{}", st.s.cfg->host, st.s.cfg->port), acts.front().folder,
                    fmt::format("{} of {} message(s): {}", acts.front().action, acts.size(), detail));
}

// Queues a durable batch's rule actions in the session (the folder is still selected: the
// mailbox waits for the acknowledgement before resuming), one command per action and
// destination, flags first, then moves, then deletes.
void queue_actions(mailbox_actor_t* self, std::vector<server_action> acts) {
  auto& st = self->state;
  if (st.s.cfg->type == core::mail_protocol::pop3) {
    // POP3 knows only DELE, sent once every batch of the pass is durable, right before QUIT
    // (the server applies it at QUIT); it has no folders to move to and no \Seen flag.
    std::vector<server_action> deleted, unsupported;
    std::vector<std::uint32_t> uids;
    for (auto& a : acts) {
      if (a.action == "delete")
        uids.push_back(a.uid);
      (a.action == "delete" ? deleted : unsupported).push_back(std::move(a));
    }
    if (!uids.empty() && st.session)
      st.session->dele(uids);
    record_action_results(self, st.session ? deleted : std::vector<server_action>{}, true,
                          "DELE at the end of the pass");
    record_action_results(self, st.session ? std::vector<server_action>{} : deleted, false,
                          "not carried out: the connection ended first");
    record_action_results(self, unsupported, false, "not possible over POP3");
    return;
  }
  auto rank = [](const server_action& a) {
    return a.action == "mark_read" ? 0 : a.action.starts_with("move:") ? 1 : 2;
  };
  std::stable_sort(acts.begin(), acts.end(), [&](auto& a, auto& b) {
    return rank(a) != rank(b) ? rank(a) < rank(b) : a.action < b.action;
  });
  for (std::size_t i = 0; i < acts.size();) {
    std::size_t j = i;
    while (j < acts.size() && acts[j].action == acts[i].action)
      ++j;
    std::vector<server_action> group(acts.begin() + static_cast<std::ptrdiff_t>(i),
                                     acts.begin() + static_cast<std::ptrdiff_t>(j));
    i = j;
    if (!st.session || !st.session->awaiting_resume()) {
      record_action_results(self, group, false, "not carried out: the connection ended first");
      continue;
    }
    imap::action_request req;
    req.id = st.next_action_id++;
    const auto& what = group.front().action;
    req.kind = what == "mark_read" ? imap::action_kind::mark_read
             : what == "delete"    ? imap::action_kind::remove
                                   : imap::action_kind::move;
    if (req.kind == imap::action_kind::move)
      req.target = what.substr(5);
    for (auto& a : group)
      req.uids.push_back(a.uid);
    st.actions_queued[req.id] = std::move(group);
    st.session->queue_action(std::move(req));
  }
}

void lose_kept(mailbox_actor_t* self, const std::string& reason, const std::string& detail);

void fail_pass(mailbox_actor_t* self, std::string reason, std::string detail) {
  auto& st = self->state;
  if (st.park_pending || (st.parked && !st.running)) {  // the pass itself was complete
    lose_kept(self, reason, detail);
    return;
  }
  if (std::exchange(st.parked, false))  // kept, but the pass failed while draining: the
    self->send(st.scheduler, unpark_atom::value);  // scheduler hears it before scan_done
  for (auto& [id, acts] : st.actions_queued)
    record_action_results(self, acts, false, "not carried out: the pass ended (" + reason + ")");
  st.actions_queued.clear();
  if (!st.failure)
    st.failure = failed_result(st.s.cfg->user, std::move(reason), std::move(detail));
  st.server_done = true;
  if (st.conn) {
    st.conn->close(false);
    st.conn.reset();
  }
  drop_session(self);
  finish_if_drained(self);
}

void send_batch(mailbox_actor_t* self, std::vector<storage::checkpoint_update> cps) {
  auto& st = self->state;
  fetched_batch b;
  b.user = st.s.cfg->user;
  b.seq = st.next_seq++;
  b.reply_to = caf::actor_cast<caf::actor>(self);
  if (st.s.cfg->scan == core::scan_mode::unread && !st.batch.empty()) {
    auto& uids = st.seen_after_ack[b.seq];
    for (auto& m : st.batch)
      uids.push_back(m.uid);
  }
  std::uint64_t bytes = 0;
  for (auto& m : st.batch)
    bytes += m.raw.size() + sizeof(m);
  st.budget.take(b.seq, bytes);
  b.messages = std::move(st.batch);
  b.checkpoints = std::move(cps);
  if (st.session)
    b.uidls = st.session->take_uidl_updates(st.s.cfg->user);
  st.batch.clear();
  ++st.inflight;
  self->send(st.s.matcher, match_atom::value, std::move(b));
}

// Per-mailbox credit and the engine-wide budget: may the session fetch its next batch? With
// no room in the budget the mailbox waits for budget_atom (or its own next acknowledgement).
bool may_fetch(mailbox_actor_t* self) {
  auto& st = self->state;
  if (st.inflight >= st.s.engine->max_inflight_batches)
    return false;
  if (st.budget.has_room())
    return true;
  if (!st.waiting_budget)
    st.waiting_budget = st.budget.wait(caf::actor_cast<caf::actor>(self));
  return !st.waiting_budget;  // room appeared meanwhile
}

// A slice is used up: ask the scheduler whether anyone waits for this connection slot. The
// scan goes on meanwhile; a "yes" ends it at the next batch boundary (LOGOUT), a "no" starts
// a new slice.
void end_of_slice(mailbox_actor_t* self) {
  auto& st = self->state;
  auto now = std::chrono::steady_clock::now();
  if (st.asking || st.yielding ||
      (++st.slice_batches < st.s.engine->slice_batches &&
       now - st.slice_start < std::chrono::seconds(st.s.engine->slice_seconds)))
    return;
  st.asking = true;
  auto gen = st.generation;
  self->request(st.scheduler, caf::infinite, slice_atom::value).then([=](bool others_wait) {
    auto& st = self->state;
    if (gen != st.generation)
      return;
    st.asking = false;
    st.slice_batches = 0;
    st.slice_start = std::chrono::steady_clock::now();
    if (others_wait && st.session && !st.server_done) {
      st.yielding = true;
      st.session->finish_early();
    }
  });
}

bool retry_with_new_token(mailbox_actor_t* self);

// ---- Slow lane (scheduler_actor.hpp): this mailbox times its server's answers; the first one
// slower than slow_response_ms in a lease asks the scheduler for a slow-lane slot.

// The connection's timer (only while a lease scans): command timeouts need a second's
// precision; a server that has not answered yet is found slow within an eighth of
// slow_response_ms past the early or the full threshold (every slow mailbox holds a healthy
// one's slot until then).
std::chrono::milliseconds tick_interval(const mailbox_state& st) {
  auto slow = std::chrono::milliseconds(st.s.engine->slow_response_ms / 8);
  return slow.count() == 0 ? std::chrono::milliseconds(1000)
                           : std::clamp(slow, std::chrono::milliseconds(50), std::chrono::milliseconds(1000));
}

// The silence past which an answer may count as slow early (judge_silence): a quarter of
// slow_response_ms, at least 100 ms.
std::int64_t early_silence_ms(std::int64_t limit) { return std::max<std::int64_t>(limit / 4, 100); }

void yield_slow_lane(mailbox_actor_t* self, std::uint64_t gen);
void pump(mailbox_actor_t* self);

// Judges one silence of `waited` against slow_response_ms and asks the scheduler when it
// counts. Past a quarter of the threshold (at least 100 ms) the scheduler is asked early:
// while healthy mailboxes of the host wait for a connection, and this is far slower than the
// host's usual answers, this one counts as slow already; otherwise it keeps its connection
// and the full threshold applies.
void judge_silence(mailbox_actor_t* self, std::chrono::milliseconds waited) {
  auto& st = self->state;
  auto limit = st.s.engine->slow_response_ms;
  if (limit == 0 || !st.s.report_slow || st.slow_reported)
    return;
  const bool hard = waited.count() >= std::int64_t{limit};
  const auto early = early_silence_ms(limit);
  if (!hard && (st.soft_asked || early >= std::int64_t{limit} || waited.count() < early))
    return;
  if (hard)
    st.slow_reported = st.slow_pass = true;
  else
    st.soft_asked = true;
  auto gen = st.generation;
  self->request(st.scheduler, caf::infinite, slow_atom::value, static_cast<std::uint32_t>(waited.count()), !hard)
    .then(
      [=](bool keep, bool marked) {
        auto& s2 = self->state;
        if (gen != s2.generation)
          return;
        if (marked)
          s2.slow_reported = s2.slow_pass = true;
        if (!keep)
          yield_slow_lane(self, gen);
      },
      [](caf::error&) {});  // no lane to ask for: go on
}

// What the io thread's reply clock gathered: answers end a silence (a new one may be asked
// about again), the quickest answer is the lease's reply_ms, and a silence long enough to count
// is judged. While LOGIN / AUTHENTICATE is out nothing is judged unless these credentials have
// logged in before: servers delay a refusal on purpose (dovecot's auth_failure_delay), and
// giving the connection back then would retry a wrong password (a second failed attempt: what
// locks accounts out). The login's wait is judged once it is accepted, so a server slow for
// this user still goes to the lane (session_driver::feed).
void sync_reply_clock(mailbox_actor_t* self, bool judge = true) {
  auto& st = self->state;
  if (!st.session)
    return;
  auto r = st.session->take_clock();
  if (r.answered)
    st.soft_asked = false;
  if (r.quickest_ms >= 0 && (st.quickest_reply_ms < 0 || r.quickest_ms < st.quickest_reply_ms))
    st.quickest_reply_ms = r.quickest_ms;
  if (judge && r.judge.count() > 0 && !st.server_done)
    judge_silence(self, r.judge);
}

// The periodic check of a server that has not answered yet (a stalled server is slow before
// its first byte).
void reply_clock_tick(mailbox_actor_t* self) {
  auto& st = self->state;
  sync_reply_clock(self);
  if (!st.session || (st.session->authenticating() && !st.credentials_proven))
    return;
  judge_silence(self, st.session->waited(std::chrono::steady_clock::now()));
}

// The smallest silence judge_silence can act on (0: it never does), for the io thread.
std::chrono::milliseconds judge_after(const mailbox_state& st) {
  const auto limit = std::int64_t{st.s.engine->slow_response_ms};
  if (limit == 0 || !st.s.report_slow)
    return std::chrono::milliseconds{0};
  return std::chrono::milliseconds(std::min(limit, early_silence_ms(limit)));
}

// The pass is done with its session: the io thread stops feeding it (the connection's
// callbacks still hold the driver), and the lease keeps its quickest answer.
void drop_session(mailbox_actor_t* self) {
  auto& st = self->state;
  if (!st.session)
    return;
  sync_reply_clock(self, false);
  st.session->detach();
  st.session.reset();
}

// The host's slow lane is full: give the connection back now and queue in the slow lane. A
// LOGOUT would wait out the slowness as well, so the connection just closes, unless marks
// or rule actions still need the selected folder (then LOGOUT after them, like a slice).
// Nothing is lost: checkpoints move only with durable batches, the next lease goes on from
// there.
void yield_slow_lane(mailbox_actor_t* self, std::uint64_t gen) {
  auto& st = self->state;
  if (gen != st.generation || !st.running || st.server_done || !st.session || st.closing)
    return;
  st.yielding = true;
  if (!st.seen_after_ack.empty() || !st.actions_queued.empty() || st.resume_on_ack) {
    st.session->finish_early();
    pump(self);
    return;
  }
  if (st.conn) {
    st.conn->close(false);
    st.conn.reset();
  }
  drop_session(self);
  st.batch.clear();  // not sent: its messages come again with the next lease
  st.server_done = true;
  finish_if_drained(self);
}

// Runs the session until it needs bytes, credit or is finished.
void pump(mailbox_actor_t* self) {
  auto& st = self->state;
  while (st.session) {
    auto out = st.session->poll();
    if (!out) {
      // A corrupt COMPRESS stream (found by whichever thread inflated it) ends the pass.
      if (auto err = st.session->take_error(); !err.empty())
        fail_pass(self, "protocol_error", std::move(err));
      return;
    }
    bool stop = false;
    std::visit(
      [&](auto& ev) {
        using T = std::decay_t<decltype(ev)>;
        // (Commands, STARTTLS and COMPRESS are carried out by the session_driver.)
        if constexpr (std::is_same_v<T, imap::folder_opened>) {
          // The checkpoint moves with the batches; the counts are for diagnostics.
          st.result.folder_names.push_back(ev.folder);
          st.result.folder_counts.push_back(ev.exists);
        } else if constexpr (std::is_same_v<T, imap::message_fetched>) {
          if (st.s.probe)
            return;  // a probe never asks for messages; ignore a server that sends some anyway
          ++st.result.fetched;
          st.quota_bytes += ev.raw.size();
          raw_message m;
          m.folder = std::move(ev.folder);
          m.uidvalidity = ev.uidvalidity;
          m.uid = ev.uid;
          m.size = ev.size;
          m.internaldate = ev.internaldate;
          m.flags = std::move(ev.flags);
          m.raw = std::move(ev.raw);
          m.truncated = ev.truncated;
          m.gm_msgid = ev.gm_msgid;
          for (auto& a : ev.attachments)
            m.server_attachments.push_back({a.name, a.type, a.decoded_size});
          st.batch.push_back(std::move(m));
        } else if constexpr (std::is_same_v<T, imap::batch_complete>) {
          if (st.s.probe) {
            st.batch.clear();
            st.session->resume();
            return;
          }
          storage::checkpoint_update cp{st.s.cfg->user, ev.folder, {ev.uidvalidity, ev.highest_uid, 0}};
          send_batch(self, {cp});
          end_of_slice(self);
          // scan = unread marks messages \Seen, and rules move/delete/mark them, only once they
          // are durably tracked, while the folder is still selected: wait for this batch's
          // acknowledgement before going on.
          bool after_ack = st.s.cfg->scan == core::scan_mode::unread || st.s.server_actions;
          if (after_ack)
            st.resume_on_ack = st.next_seq - 1;
          else if (may_fetch(self))
            st.session->resume();
        } else if constexpr (std::is_same_v<T, imap::folder_complete>) {
          if (st.s.probe)
            return;
          storage::checkpoint_update cp{st.s.cfg->user, ev.folder, {ev.uidvalidity, ev.highest_uid, ev.highest_modseq}};
          send_batch(self, {cp});
        } else if constexpr (std::is_same_v<T, imap::scan_complete>) {
          st.result.capabilities = st.session->capabilities();
          st.yielding = st.yielding && st.session->ended_early();  // else the pass is whole
          st.closing = true;
          st.session->set_closing();
          st.closing_since = std::chrono::steady_clock::now();
          stop = true;
        } else if constexpr (std::is_same_v<T, imap::session_parked>) {
          st.result.capabilities = st.session->capabilities();
          st.server_done = true;
          st.park_pending = true;
          stop = true;
          ask_to_keep(self);
        } else if constexpr (std::is_same_v<T, imap::idle_activity>) {
          // New mail in the watched folder of a kept session: a pass now, not at the next poll.
          if (ev.what == imap::idle_activity::kind::exists && st.parked && !st.running && !st.woken) {
            st.woken = true;
            self->send(st.scheduler, wake_atom::value);
          }
        } else if constexpr (std::is_same_v<T, imap::action_done>) {
          if (auto it = st.actions_queued.find(ev.id); it != st.actions_queued.end()) {
            record_action_results(self, it->second, ev.ok, ev.detail);
            st.actions_queued.erase(it);
          }
        } else if constexpr (std::is_same_v<T, imap::folder_unchanged>) {
          // Not opened: STATUS showed nothing new since the checkpoint.
          st.result.folder_names.push_back(ev.folder);
          st.result.folder_counts.push_back(ev.messages);
        } else if constexpr (std::is_same_v<T, imap::server_identified>) {
          st.result.server_id.clear();
          for (auto& [k, v] : ev.fields) {
            st.result.server_id.push_back(std::move(k));
            st.result.server_id.push_back(std::move(v));
          }
        } else if constexpr (std::is_same_v<T, imap::session_warning>) {
          if (st.s.log)
            st.s.log->write(core::log_level::warning, "server_warning", st.s.cfg->user,
                            fmt::format("{}:{}", st.s.cfg->host, st.s.cfg->port), ev.folder, ev.detail);
        } else if constexpr (std::is_same_v<T, imap::scan_failed>) {
          stop = true;
          if (st.park_pending || (st.parked && !st.running)) {
            lose_kept(self, std::string{imap::to_string(ev.err.kind)}, ev.err.detail);
            return;
          }
          st.result.capabilities = st.session->capabilities();
          if (ev.err.kind == imap::error_kind::login_failed && retry_with_new_token(self))
            return;
          // The back-off hint goes in before fail_pass: with nothing in flight it reports at once.
          if (!st.failure) {
            st.failure = failed_result(st.s.cfg->user, std::string{imap::to_string(ev.err.kind)}, ev.err.detail);
            st.failure->retry_after_s = ev.err.retry_after_s;
          }
          fail_pass(self, {}, {});
        }
      },
      *out);
    if (stop)
      break;
  }
  if (st.server_done && !st.park_pending && !st.parked) {
    drop_session(self);
    finish_if_drained(self);
  }
}

// The server closed after LOGOUT (or did not within the grace time): the pass is over.
void finish_closing(mailbox_actor_t* self) {
  auto& st = self->state;
  if (st.conn)
    st.conn->close(false);
  st.conn.reset();
  st.closing = false;
  st.server_done = true;
  drop_session(self);
  if (std::exchange(st.parked, false) && !st.running)  // a kept session logged out
    self->send(st.scheduler, unpark_atom::value);
  finish_if_drained(self);
}

void finish_if_drained(mailbox_actor_t* self) {
  auto& st = self->state;
  if (st.running && st.server_done && st.inflight > 0 && !st.park_pending && !st.conn && !st.closing &&
      st.s.release_on_close && !std::exchange(st.slot_released, true))
    self->send(st.scheduler, conn_closed_atom::value);  // only the writer is awaited now
  if (!st.running || !st.server_done || st.inflight > 0 || st.park_pending)
    return;
  st.running = false;
  auto res = st.failure ? *st.failure : st.result;
  res.reply_ms = st.quickest_reply_ms;
  if (!st.failure) {
    res.ok = true;
    res.user = st.s.cfg->user;
    res.more = st.yielding;
  } else {
    res.fetched = st.result.fetched;
    res.new_messages = st.result.new_messages;
    res.new_sightings = st.result.new_sightings;
    res.capabilities = st.result.capabilities;
    res.folder_names = st.result.folder_names;
    res.folder_counts = st.result.folder_counts;
    res.server_id = st.result.server_id;
  }
  // An idle mailbox keeps only its settings (memory per mailbox): what the pass gathered is
  // in `res` now, and only diagnostics show the capabilities and folders (the scheduler
  // keeps every mailbox's last result).
  if (!st.s.probe) {
    res.capabilities = {};
    res.folder_names = {};
    res.folder_counts = {};
  }
  res.slow = st.slow_pass;
  st.failure.reset();
  st.stored = {};
  st.credentials_proven = false;
  if (!res.more)
    st.result = {};
  if (st.s.probe || res.reason == "stopped") {  // diagnostics and shutdowns change no state
    self->send(st.scheduler, scan_done_atom::value, res);
    return;
  }
  // Persist the mailbox's operational state (last scanned, failures) for `status`.
  // The state machine (ok / error / credentials_changed, notifications) lives in the health
  // actor; a pass that never logged in because logins are stopped changes nothing.
  if (st.s.health && res.reason != "credentials_changed_skip")
    self->send(st.s.health, state_atom::value, res);
  if (res.reason == "credentials_changed_skip")
    res.reason = "credentials_changed";
  st.continuing = res.more;
  if (st.s.log) {
    auto host = fmt::format("{}:{}", st.s.cfg->host, st.s.cfg->port);
    if (res.more)
      st.s.log->write(core::log_level::info, "lease_yielded", res.user, host, "",
                      fmt::format("{}: the pass goes on after them (fetched={} so far)",
                                  st.slow_reported ? "slow server and its host's slow lane is full" : "others wait",
                                  res.fetched));
    else if (res.ok)
      st.s.log->write(core::log_level::info, "scan_ok", res.user, host, "",
                      fmt::format("fetched={} new={} new_sightings={} lease_ms={}{}{}", res.fetched,
                                  res.new_messages, res.new_sightings,
                                  std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::steady_clock::now() - st.leased_at)
                                    .count(),
                                  st.reused ? " session=kept" : "",
                                  st.actions_ok + st.actions_failed == 0
                                    ? std::string{}
                                    : fmt::format(" actions_ok={} actions_failed={}", st.actions_ok,
                                                  st.actions_failed)));
    else
      st.s.log->write(core::log_level::error, "scan_failed", res.user, host, "",
                      fmt::format("reason={} {}", res.reason, res.detail));
  }
  self->send(st.scheduler, scan_done_atom::value, res);
}

// ---- Kept sessions (docs/imap.md): the connection outlives the pass while the scheduler
// allows; every way it ends reports the lease back (unpark_atom) exactly once. ----

void arm_timeout(mailbox_actor_t* self) {
  if (self->state.session)
    self->state.session->touch();  // the silence of a kept connection is not the server's slowness
  self->state.ticking = true;  // (a quiet spell of the kept connection starts no second loop)
  self->delayed_send(self, std::chrono::seconds(1), timeout_atom::value, self->state.generation);
}

void log_kept(mailbox_actor_t* self, core::log_level level, std::string_view event, const std::string& detail) {
  auto& st = self->state;
  if (st.s.log)
    st.s.log->write(level, event, st.s.cfg->user, fmt::format("{}:{}", st.s.cfg->host, st.s.cfg->port), "", detail);
}

// The kept connection broke (server closed it, BYE, timeout): no failed pass, the next one
// simply logs in again.
void lose_kept(mailbox_actor_t* self, const std::string& reason, const std::string& detail) {
  auto& st = self->state;
  log_kept(self, core::log_level::warning, "kept_session_lost",
           fmt::format("reason={} {}; the next poll logs in again", reason, detail));
  if (st.s.metrics)
    st.s.metrics->kept_session_lost();
  if (st.conn) {
    st.conn->close(false);
    st.conn.reset();
  }
  drop_session(self);
  st.closing = false;
  // While the scheduler is still being asked, its answer returns the lease (ask_to_keep).
  if (std::exchange(st.parked, false) && !st.running)
    self->send(st.scheduler, unpark_atom::value);
}

void ask_to_keep(mailbox_actor_t* self) {
  auto& st = self->state;
  auto answer = [self](bool keep) {
    auto& st = self->state;
    st.park_pending = false;
    if (!st.session) {  // lost meanwhile
      if (keep)
        self->send(st.scheduler, unpark_atom::value);
    } else if (!keep) {
      st.server_done = false;  // LOGOUT, then the pass reports as usual
      st.session->end_parked();
      arm_timeout(self);
      pump(self);
      return;
    } else {
      st.parked = true;
      st.woken = false;
      if (st.s.engine->idle && st.session->park_idle()) {
        self->delayed_send(self, std::chrono::seconds(imap::idle_refresh_after_s), idle_atom::value,
                           st.generation);
        pump(self);
      }
    }
    finish_if_drained(self);
  };
  self->request(st.scheduler, caf::infinite, park_atom::value, std::uint64_t{st.result.fetched})
    .then([=](bool keep) { answer(keep); }, [=](caf::error&) { answer(false); });
}

// (unpark_atom) from the scheduler: someone needs the slot, a reload, or shutdown.
void end_kept(mailbox_actor_t* self) {
  auto& st = self->state;
  if (!st.parked || st.running || st.closing)
    return;
  if (!st.session || !(st.session->idling() || st.session->parked())) {
    // Between commands (IDLE not yet confirmed): nothing to wait for, just close.
    lose_kept(self, "released", "closed while entering IDLE");
    return;
  }
  ++st.generation;
  st.server_done = false;
  if (st.session->idling())
    st.session->stop_idle(imap::idle_stop::logout);
  else
    st.session->end_parked();
  arm_timeout(self);
  pump(self);
}

// (lease_atom) with a kept session: the poll runs on it, STATUS first (no LOGIN).
bool resume_kept(mailbox_actor_t* self) {
  auto& st = self->state;
  if (!std::exchange(st.parked, false))
    return false;
  if (!st.session || st.closing || !(st.session->idling() || st.session->parked())) {
    // Still entering IDLE (or closing): not usable now; this pass logs in afresh.
    if (st.conn)
      st.conn->close(false);
    st.conn.reset();
    drop_session(self);
    st.closing = false;
    return false;
  }
  st.reused = true;
  if (st.session->idling())
    st.session->stop_idle(st.woken ? imap::idle_stop::rescan : imap::idle_stop::poll);
  else
    st.session->repoll();
  st.woken = false;
  arm_timeout(self);
  pump(self);
  return true;
}

// ---- end of kept sessions ----

std::unique_ptr<protocol_session> make_imap_session(const mailbox_state& st,
                                                    std::map<std::string, storage::folder_checkpoint> cps) {
  auto& cfg = *st.s.cfg;
  imap::session_options o;
  o.username = cfg.username;
  o.secret = st.s.token_source ? st.token : cfg.secret;
  o.auth = cfg.auth == core::auth_kind::xoauth2 ? imap::auth_method::xoauth2 : imap::auth_method::password;
  o.starttls = cfg.security == core::security_mode::starttls;
  o.folders = cfg.folders;
  o.unread_only = cfg.scan == core::scan_mode::unread;
  o.read_write = st.s.server_actions;
  o.since_unix = st.s.engine->days_back == 0 ? 0 : now_unix() - std::int64_t{st.s.engine->days_back} * 86400;
  if (st.s.probe)
    o.since_unix = 4102444800;  // 2100-01-01: the folders are opened and searched, nothing matches
  for (auto& [folder, cp] : cps)
    o.checkpoints[folder] = imap::folder_checkpoint{cp.uidvalidity, cp.last_uid, cp.highest_modseq};
  o.batch_size = st.s.engine->batch_size;
  o.compress = cfg.compress;
  o.park = st.s.engine->keep_sessions > 0 && !st.s.probe;
  o.fetch_text = st.s.fetch_text;
  return std::make_unique<session_adapter<imap::scan_session>>(std::move(o));
}

std::unique_ptr<protocol_session> make_pop3_session(const mailbox_state& st,
                                                    std::map<std::string, storage::folder_checkpoint> cps,
                                                    std::map<std::string, std::uint32_t> uidls) {
  auto& cfg = *st.s.cfg;
  pop3::session_options o;
  o.username = cfg.username;
  o.secret = st.s.token_source ? st.token : cfg.secret;
  o.auth = cfg.auth == core::auth_kind::xoauth2 ? pop3::auth_method::xoauth2 : pop3::auth_method::automatic;
  o.starttls = cfg.security == core::security_mode::starttls;
  o.known.insert(std::make_move_iterator(uidls.begin()), std::make_move_iterator(uidls.end()));
  if (auto it = cps.find(std::string(pop3::folder_name)); it != cps.end())
    o.last_uid = it->second.last_uid;
  // Never below a uid already given out (a checkpoint older than its UIDL keys cannot be
  // written, but a hand-edited or restored database should not make uids collide).
  for (auto& [u, uid] : o.known)
    o.last_uid = std::max(o.last_uid, uid);
  o.batch_size = st.s.engine->batch_size;
  o.probe = st.s.probe;
  return std::make_unique<session_adapter<pop3::scan_session>>(std::move(o));
}

void connect(mailbox_actor_t* self);

void start_pass(mailbox_actor_t* self, std::map<std::string, storage::folder_checkpoint> cps,
                std::map<std::string, std::uint32_t> uidls = {}) {
  auto& st = self->state;
  auto& cfg = *st.s.cfg;
  if (cfg.type == core::mail_protocol::pop3)
    st.session = std::make_shared<session_driver>(make_pop3_session(st, std::move(cps), std::move(uidls)));
  else
    st.session = std::make_shared<session_driver>(make_imap_session(st, std::move(cps)));
  connect(self);
}

void connect(mailbox_actor_t* self) {
  auto& st = self->state;
  auto& cfg = *st.s.cfg;
  net::endpoint_options eo;
  eo.host = cfg.host;
  eo.port = cfg.port;
  eo.implicit_tls = cfg.security == core::security_mode::tls;
  eo.verify_certificate = cfg.verify_certificate;
  eo.ca_file = cfg.ca_file.string();
  eo.connect_timeout_ms = st.s.engine->connect_timeout_s * 1000;
  // The watch on the server's silence (timeout_atom) starts only when the connection has
  // been quiet for a tick: a pass that gets its answers never arms a timer (each one woke the
  // clock thread and then this actor's worker).
  eo.quiet_ms = static_cast<std::uint32_t>(tick_interval(st).count());

  // The transport calls back on its io thread: turn each event into a message to this actor.
  // A weak reference: a connection outliving the actor must not keep it alive.
  caf::weak_actor_ptr weak = self->ctrl();
  auto gen = st.generation;
  auto post = [weak, gen](auto... xs) {
    if (auto strong = weak.lock())
      caf::anon_send(caf::actor_cast<caf::actor>(strong), xs..., gen);
  };
  net::connection_callbacks cbs;
  cbs.on_connected = [post] { post(net_up_atom::value); };
  // Server bytes go into the session on the io thread (session_driver); the actor is woken
  // only when there is something for it.
  cbs.on_data = [post, driver = st.session](std::string bytes) {
    if (driver->feed(bytes))
      post(net_data_atom::value);
  };
  cbs.on_tls_ready = [post] { post(net_tls_atom::value); };
  cbs.on_quiet = [post] { post(net_quiet_atom::value); };
  cbs.on_failure = [post](net::failure f) {
    post(net_fail_atom::value, static_cast<std::int32_t>(f.kind), std::move(f.detail));
  };
  st.conn_gen = gen;
  st.conn = net::connection::create(*st.s.io, std::move(eo), std::move(cbs));
  st.session->attach(st.conn, judge_after(st), st.credentials_proven);
  st.conn->start();
}

// OAuth: asks the credential's token actor for a current token (`rejected` = the token the
// server just refused, never handed out again), then logs in with it.
void begin_pass(mailbox_actor_t* self, std::map<std::string, storage::folder_checkpoint> cps,
                std::map<std::string, std::uint32_t> uidls = {}, std::string rejected = {}) {
  auto& st = self->state;
  if (!st.s.token_source && !st.s.cfg->oauth_credential.empty()) {
    // A credential added by a config reload has no token actor yet.
    st.server_done = true;
    st.failure = failed_result(st.s.cfg->user, "token_refresh_failed",
                               fmt::format("oauth_credential '{}' is not active: restart mailscan to use it",
                                           st.s.cfg->oauth_credential));
    finish_if_drained(self);
    return;
  }
  if (!st.s.token_source) {
    start_pass(self, std::move(cps), std::move(uidls));
    return;
  }
  st.checkpoints = std::move(cps);
  st.uidls = std::move(uidls);
  auto gen = st.generation;
  self->request(st.s.token_source, caf::infinite, token_atom::value, std::move(rejected))
    .then(
      [=](std::string& token, std::string& reason, std::string& detail) {
        auto& st = self->state;
        if (gen != st.generation || !st.running)
          return;
        if (token.empty()) {
          st.server_done = true;
          st.failure = failed_result(st.s.cfg->user, reason, detail);
          finish_if_drained(self);
          return;
        }
        st.token = std::move(token);
        start_pass(self, st.checkpoints, st.uidls);
      },
      [=](caf::error& e) {
        auto& st = self->state;
        if (gen != st.generation || !st.running)
          return;
        st.server_done = true;
        st.failure = failed_result(st.s.cfg->user, "token_refresh_failed",
                                   "token actor unavailable: " + caf::to_string(e));
        finish_if_drained(self);
      });
}

// AUTHENTICATIONFAILED with an OAuth token: the token may have expired or been revoked
// early; one refresh and one more login per pass, never more (no login storm).
bool retry_with_new_token(mailbox_actor_t* self) {
  auto& st = self->state;
  if (!st.s.token_source || st.token_retried)
    return false;
  st.token_retried = true;
  if (st.conn) {
    st.conn->close(false);
    st.conn.reset();
  }
  drop_session(self);
  ++st.generation;
  if (st.s.log)
    st.s.log->write(core::log_level::info, "oauth_login_retry", st.s.cfg->user,
                    fmt::format("{}:{}", st.s.cfg->host, st.s.cfg->port), "",
                    "login refused with the cached token: refreshing and logging in once more");
  begin_pass(self, st.checkpoints, st.uidls, std::exchange(st.token, {}));
  return true;
}

std::int64_t utc_day() { return now_unix() / 86400; }

// Provider download quota: true (and the pass failed as throttled until the next UTC day)
// when today's bytes reached max_download_mb_per_day.
bool over_quota(mailbox_actor_t* self) {
  auto& st = self->state;
  if (st.s.cfg->max_download_mb_per_day == 0 || st.s.probe)
    return false;
  if (st.quota_day != utc_day()) {
    st.quota_day = utc_day();
    st.quota_bytes = 0;
  }
  if (st.quota_bytes < std::uint64_t{st.s.cfg->max_download_mb_per_day} << 20)
    return false;
  st.server_done = true;
  st.failure = failed_result(st.s.cfg->user, "throttled",
                             fmt::format("daily download quota of {} MB reached (provider bandwidth limit); "
                                         "scanning resumes after 00:00 UTC",
                                         st.s.cfg->max_download_mb_per_day));
  st.failure->retry_after_s = static_cast<std::uint32_t>((st.quota_day + 1) * 86400 - now_unix());
  st.failure->throttle_mailbox_only = true;
  finish_if_drained(self);
  return true;
}

} // namespace

caf::actor spawn_mailbox_actor(caf::event_based_actor* scheduler, mailbox_settings s) {
  auto sched = caf::actor_cast<caf::actor>(scheduler);
  return scheduler->spawn<caf::monitored>([s = std::move(s), sched](mailbox_actor_t* self) -> caf::behavior {
    self->state.s = s;
    self->state.budget.attach(s.budget);
    self->state.scheduler = sched;
    auto stale = [self](std::uint64_t gen) { return gen != self->state.generation || !self->state.session; };
    // Network events belong to the connection, which a kept session carries over passes.
    auto net_stale = [self](std::uint64_t gen) { return gen != self->state.conn_gen || !self->state.session; };
    return {
      [=](lease_atom) {
        auto& st = self->state;
        if (st.running)
          return;
        st.running = true;
        st.token_retried = false;
        st.seen_after_ack.clear();
        st.actions_queued.clear();
        st.actions_ok = st.actions_failed = 0;
        st.resume_on_ack.reset();
        st.server_done = false;
        st.failure.reset();
        if (st.continuing) {  // the pass goes on after a yielded slice: its counters add up
          st.result.folder_names.clear();
          st.result.folder_counts.clear();
        } else {
          st.result = failed_result(st.s.cfg->user, {}, {});
          st.slow_pass = false;
        }
        st.continuing = false;
        st.slice_batches = 0;
        st.slice_start = st.leased_at = std::chrono::steady_clock::now();
        st.asking = st.yielding = false;
        st.reused = false;
        st.slot_released = false;
        st.ticking = false;
        st.slow_reported = st.soft_asked = false;
        st.quickest_reply_ms = -1;
        if (st.session)
          (void)st.session->take_clock();  // a kept connection's answers belong to earlier leases
        ++st.generation;
        if (resume_kept(self))
          return;
        if (!st.s.cfg->is_set()) {
          st.server_done = true;
          st.failure = failed_result(st.s.cfg->user, "not_set",
                                     st.s.cfg->host.empty() ? "no host configured" : st.s.cfg->secret_problem);
          finish_if_drained(self);
          return;
        }
        if (over_quota(self))
          return;
        if (st.s.probe) {
          begin_pass(self, {});
          return;
        }
        // Checkpoints and the stored state come from the writer, which owns the database.
        self->request(st.s.writer, caf::infinite, checkpoints_atom::value, st.s.cfg->user)
          .then([=](storage::mailbox_state& ms, std::map<std::string, storage::folder_checkpoint>& cps) {
            self->state.stored = std::move(ms);
            self->state.credentials_proven = core::credentials_proven(self->state.stored, *self->state.s.cfg);
            if (!core::may_login(self->state.stored, *self->state.s.cfg)) {
              // Servers lock accounts that keep retrying a bad password: no LOGIN until the
              // config has new credentials or an operator runs `mailscan force-sync`.
              auto& st = self->state;
              st.server_done = true;
              st.failure = failed_result(st.s.cfg->user, "credentials_changed_skip",
                                         "login attempts stopped: the password was rejected after earlier "
                                         "successes; update the credentials or run `mailscan force-sync " +
                                           st.s.cfg->user + "`");
              finish_if_drained(self);
              return;
            }
            if (self->state.s.cfg->type != core::mail_protocol::pop3) {
              begin_pass(self, std::move(cps));
              return;
            }
            // POP3's checkpoint is the set of UIDLs already tracked.
            self->request(self->state.s.writer, caf::infinite, uidls_atom::value, self->state.s.cfg->user)
              .then([=, cps = std::move(cps)](std::map<std::string, std::uint32_t>& uidls) mutable {
                begin_pass(self, std::move(cps), std::move(uidls));
              });
          });
      },
      [=](net_up_atom, std::uint64_t gen) {
        if (!net_stale(gen) && self->state.session)
          self->state.session->active();
      },
      [=](net_data_atom, std::uint64_t gen) {
        // The io thread fed the session: take what it queued for this actor.
        if (net_stale(gen) || !self->state.session)
          return;
        self->state.session->woken();
        if (self->state.closing)
          return;
        sync_reply_clock(self);
        pump(self);
      },
      [=](net_quiet_atom, std::uint64_t gen) {
        auto& st = self->state;
        if (net_stale(gen) || st.server_done || std::exchange(st.ticking, true))
          return;
        self->send(self, timeout_atom::value, st.generation);  // the watch runs from now on
      },
      [=](net_tls_atom, std::uint64_t gen) {
        if (net_stale(gen) || !self->state.session)
          return;
        self->state.session->on_tls_established();
        pump(self);
      },
      [=](net_fail_atom, std::int32_t kind, std::string& detail, std::uint64_t gen) {
        if (net_stale(gen))
          return;
        auto k = static_cast<net::failure_kind>(kind);
        if (self->state.closing) {
          finish_closing(self);
          return;
        }
        self->state.conn.reset();
        if (k == net::failure_kind::closed_by_peer && self->state.session) {
          // Let the protocol say what an early close means (BYE seen, mid-literal, ...).
          self->state.session->on_eof();
          pump(self);
          if (self->state.session && !self->state.server_done)
            fail_pass(self, "server_bye", detail);
          return;
        }
        fail_pass(self, std::string{reason_of(k)}, std::move(detail));
      },
      [=](timeout_atom, std::uint64_t gen) {
        auto& st = self->state;
        if (stale(gen) || st.server_done)
          return;
        if (st.closing) {
          if (std::chrono::steady_clock::now() - st.closing_since > std::chrono::seconds(3))
            finish_closing(self);
          else
            self->delayed_send(self, std::chrono::milliseconds(200), timeout_atom::value, gen);
          return;
        }
        if (!st.session)
          return;
        if (!st.session->awaiting_resume())
          reply_clock_tick(self);
        if (!st.session)
          return;
        auto idle = std::chrono::steady_clock::now() - st.session->last_activity();
        if (!st.session->awaiting_resume() && idle > std::chrono::seconds(st.s.engine->command_timeout_s)) {
          fail_pass(self, "timeout",
                    fmt::format("no answer from {}:{} for {} s", st.s.cfg->host, st.s.cfg->port,
                                st.s.engine->command_timeout_s));
          return;
        }
        self->delayed_send(self, tick_interval(st), timeout_atom::value, gen);
      },
      [=](durable_atom, std::uint64_t seq, std::uint64_t new_messages, std::uint64_t new_sightings,
          std::vector<server_action>& actions) {
        auto& st = self->state;
        if (st.inflight > 0)
          --st.inflight;
        st.budget.release(seq);
        if (auto it = st.seen_after_ack.find(seq); it != st.seen_after_ack.end()) {
          if (st.session && st.session->awaiting_resume())
            st.session->mark_seen(std::move(it->second));
          st.seen_after_ack.erase(it);
        }
        if (!actions.empty() && !st.s.probe)
          queue_actions(self, std::move(actions));
        st.result.new_messages += new_messages;
        st.result.new_sightings += new_sightings;
        if (st.resume_on_ack == seq)
          st.resume_on_ack.reset();
        if (st.session && st.session->awaiting_resume() && !st.resume_on_ack && may_fetch(self)) {
          st.session->resume();
          pump(self);
        }
        if (st.session && st.inflight == 0) {  // POP3 QUITs (and DELEs) only now
          st.session->all_acked();
          pump(self);
        }
        finish_if_drained(self);
      },
      [=](write_failed_atom, std::uint64_t seq, std::string& reason, std::string& detail) {
        auto& st = self->state;
        st.seen_after_ack.erase(seq);  // not tracked: not marked
        if (st.inflight > 0)
          --st.inflight;
        st.budget.release(seq);
        // Nothing of this batch was applied and its checkpoint did not move: stop the pass;
        // the next pass starts again from the last durable checkpoint.
        fail_pass(self, reason, "storage: " + detail);
      },
      [=](unpark_atom) { end_kept(self); },
      [=](budget_atom) {
        auto& st = self->state;
        st.waiting_budget = false;
        if (st.session && st.session->awaiting_resume() && !st.resume_on_ack && may_fetch(self)) {
          st.session->resume();
          pump(self);
        }
      },
      [=](idle_atom, std::uint64_t gen) {
        // RFC 2177: a kept session re-issues IDLE before the server's 30-minute autologout.
        auto& st = self->state;
        if (gen != st.generation || !st.parked || st.running || !st.session || !st.session->idling())
          return;
        st.session->stop_idle(imap::idle_stop::refresh);
        pump(self);
        self->delayed_send(self, std::chrono::seconds(imap::idle_refresh_after_s), idle_atom::value, gen);
      },
      [=](stop_atom) {
        auto& st = self->state;
        if (st.closing)
          finish_closing(self);
        else if (st.running && !st.server_done)
          fail_pass(self, "stopped", "shutdown requested");
      },
    };
  });
}

} // namespace mscan::actors
