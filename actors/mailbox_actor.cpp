#include "actors/mailbox_actor.hpp"

#include "core/mailbox_health.hpp"
#include "protocols/imap/scan_session.hpp"

#include <fmt/format.h>

#include <chrono>
#include <optional>
#include <utility>

namespace mscan::actors {

using namespace mscan::atoms;

namespace {

std::int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
    .count();
}

struct mailbox_state {
  mailbox_settings s;
  caf::actor scheduler;
  std::unique_ptr<imap::scan_session> session;
  std::shared_ptr<net::connection> conn;
  std::uint64_t generation = 0;  // one per pass: stale network events of an old pass are ignored
  std::uint64_t next_seq = 0;
  std::size_t inflight = 0;
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
  scan_result result;
  std::chrono::steady_clock::time_point last_activity;
  storage::mailbox_state stored;
  // OAuth: the access token of this pass (from token_source), and whether the server's
  // refusal of one has already been answered with a refresh and a second login.
  std::string token;
  bool token_retried = false;
  std::map<std::string, storage::folder_checkpoint> checkpoints;  // for that second login
  // Provider download quota (max_download_mb_per_day): bytes fetched in the current UTC day.
  std::int64_t quota_day = 0;
  std::uint64_t quota_bytes = 0;

  static inline const char* name = "mailbox";
};

using mailbox_actor_t = caf::stateful_actor<mailbox_state>;

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

void fail_pass(mailbox_actor_t* self, std::string reason, std::string detail) {
  auto& st = self->state;
  if (!st.failure)
    st.failure = failed_result(st.s.cfg.user, std::move(reason), std::move(detail));
  st.server_done = true;
  if (st.conn) {
    st.conn->close(false);
    st.conn.reset();
  }
  st.session.reset();
  finish_if_drained(self);
}

void send_batch(mailbox_actor_t* self, std::vector<storage::checkpoint_update> cps) {
  auto& st = self->state;
  fetched_batch b;
  b.user = st.s.cfg.user;
  b.seq = st.next_seq++;
  b.reply_to = caf::actor_cast<caf::actor>(self);
  if (st.s.cfg.scan == core::scan_mode::unread && !st.batch.empty()) {
    auto& uids = st.seen_after_ack[b.seq];
    for (auto& m : st.batch)
      uids.push_back(m.uid);
  }
  b.messages = std::move(st.batch);
  b.checkpoints = std::move(cps);
  st.batch.clear();
  ++st.inflight;
  self->send(st.s.matcher, match_atom::value, std::move(b));
}

bool retry_with_new_token(mailbox_actor_t* self);

// Runs the session until it needs bytes, credit or is finished.
void pump(mailbox_actor_t* self) {
  auto& st = self->state;
  while (st.session) {
    auto out = st.session->poll();
    if (!out)
      return;
    bool stop = false;
    std::visit(
      [&](auto& ev) {
        using T = std::decay_t<decltype(ev)>;
        if constexpr (std::is_same_v<T, imap::write_bytes>) {
          st.conn->write(std::move(ev.data));
        } else if constexpr (std::is_same_v<T, imap::start_tls>) {
          st.conn->start_tls();
        } else if constexpr (std::is_same_v<T, imap::folder_opened>) {
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
          storage::checkpoint_update cp{st.s.cfg.user, ev.folder, {ev.uidvalidity, ev.highest_uid, 0}};
          send_batch(self, {cp});
          // scan = unread marks messages \Seen only once they are durably tracked, while the
          // folder is still selected: wait for this batch's acknowledgement before going on.
          bool unread = st.s.cfg.scan == core::scan_mode::unread;
          if (!unread && st.inflight < st.s.engine.max_inflight_batches)
            st.session->resume();
        } else if constexpr (std::is_same_v<T, imap::folder_complete>) {
          if (st.s.probe)
            return;
          storage::checkpoint_update cp{st.s.cfg.user, ev.folder, {ev.uidvalidity, ev.highest_uid, ev.highest_modseq}};
          send_batch(self, {cp});
        } else if constexpr (std::is_same_v<T, imap::scan_complete>) {
          st.result.capabilities = st.session->capabilities();
          st.closing = true;
          st.closing_since = std::chrono::steady_clock::now();
          stop = true;
        } else if constexpr (std::is_same_v<T, imap::session_warning>) {
          if (st.s.log)
            st.s.log->write(core::log_level::warning, "server_warning", st.s.cfg.user,
                            fmt::format("{}:{}", st.s.cfg.host, st.s.cfg.port), ev.folder, ev.detail);
        } else if constexpr (std::is_same_v<T, imap::scan_failed>) {
          st.result.capabilities = st.session->capabilities();
          stop = true;
          if (ev.err.kind == imap::error_kind::login_failed && retry_with_new_token(self))
            return;
          fail_pass(self, std::string{imap::to_string(ev.err.kind)}, ev.err.detail);
          if (st.failure)
            st.failure->retry_after_s = ev.err.retry_after_s;
        }
      },
      *out);
    if (stop)
      break;
  }
  if (st.server_done) {
    st.session.reset();
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
  st.session.reset();
  finish_if_drained(self);
}

void finish_if_drained(mailbox_actor_t* self) {
  auto& st = self->state;
  if (!st.running || !st.server_done || st.inflight > 0)
    return;
  st.running = false;
  auto res = st.failure ? *st.failure : st.result;
  if (!st.failure) {
    res.ok = true;
    res.user = st.s.cfg.user;
  } else {
    res.fetched = st.result.fetched;
    res.new_messages = st.result.new_messages;
    res.new_sightings = st.result.new_sightings;
    res.capabilities = st.result.capabilities;
    res.folder_names = st.result.folder_names;
    res.folder_counts = st.result.folder_counts;
  }
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
  if (st.s.log) {
    auto host = fmt::format("{}:{}", st.s.cfg.host, st.s.cfg.port);
    if (res.ok)
      st.s.log->write(core::log_level::info, "scan_ok", res.user, host, "",
                      fmt::format("fetched={} new={} new_sightings={}", res.fetched, res.new_messages,
                                  res.new_sightings));
    else
      st.s.log->write(core::log_level::error, "scan_failed", res.user, host, "",
                      fmt::format("reason={} {}", res.reason, res.detail));
  }
  self->send(st.scheduler, scan_done_atom::value, res);
}

void start_pass(mailbox_actor_t* self, std::map<std::string, storage::folder_checkpoint> cps) {
  auto& st = self->state;
  auto& cfg = st.s.cfg;
  imap::session_options o;
  o.username = cfg.username;
  o.secret = st.s.token_source ? st.token : cfg.secret;
  o.auth = cfg.auth == core::auth_kind::xoauth2 ? imap::auth_method::xoauth2 : imap::auth_method::password;
  o.starttls = cfg.security == core::security_mode::starttls;
  o.folders = cfg.folders;
  o.unread_only = cfg.scan == core::scan_mode::unread;
  o.since_unix = st.s.engine.days_back == 0 ? 0 : now_unix() - std::int64_t{st.s.engine.days_back} * 86400;
  if (st.s.probe)
    o.since_unix = 4102444800;  // 2100-01-01: the folders are opened and searched, nothing matches
  for (auto& [folder, cp] : cps)
    o.checkpoints[folder] = imap::folder_checkpoint{cp.uidvalidity, cp.last_uid, cp.highest_modseq};
  o.batch_size = st.s.engine.batch_size;
  st.session = std::make_unique<imap::scan_session>(std::move(o));

  net::endpoint_options eo;
  eo.host = cfg.host;
  eo.port = cfg.port;
  eo.implicit_tls = cfg.security == core::security_mode::tls;
  eo.verify_certificate = cfg.verify_certificate;
  eo.ca_file = cfg.ca_file.string();
  eo.connect_timeout_ms = st.s.engine.connect_timeout_s * 1000;

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
  cbs.on_data = [post](std::string bytes) { post(net_data_atom::value, std::move(bytes)); };
  cbs.on_tls_ready = [post] { post(net_tls_atom::value); };
  cbs.on_failure = [post](net::failure f) {
    post(net_fail_atom::value, static_cast<std::int32_t>(f.kind), std::move(f.detail));
  };
  st.last_activity = std::chrono::steady_clock::now();
  st.conn = net::connection::create(*st.s.io, std::move(eo), std::move(cbs));
  st.conn->start();
  self->delayed_send(self, std::chrono::seconds(1), timeout_atom::value, gen);
}

// OAuth: asks the credential's token actor for a current token (`rejected` = the token the
// server just refused, never handed out again), then logs in with it.
void begin_pass(mailbox_actor_t* self, std::map<std::string, storage::folder_checkpoint> cps,
                std::string rejected = {}) {
  auto& st = self->state;
  if (!st.s.token_source && !st.s.cfg.oauth_credential.empty()) {
    // A credential added by a config reload has no token actor yet.
    st.server_done = true;
    st.failure = failed_result(st.s.cfg.user, "token_refresh_failed",
                               fmt::format("oauth_credential '{}' is not active: restart mailscan to use it",
                                           st.s.cfg.oauth_credential));
    finish_if_drained(self);
    return;
  }
  if (!st.s.token_source) {
    start_pass(self, std::move(cps));
    return;
  }
  st.checkpoints = std::move(cps);
  auto gen = st.generation;
  self->request(st.s.token_source, caf::infinite, token_atom::value, std::move(rejected))
    .then(
      [=](std::string& token, std::string& reason, std::string& detail) {
        auto& st = self->state;
        if (gen != st.generation || !st.running)
          return;
        if (token.empty()) {
          st.server_done = true;
          st.failure = failed_result(st.s.cfg.user, reason, detail);
          finish_if_drained(self);
          return;
        }
        st.token = std::move(token);
        start_pass(self, st.checkpoints);
      },
      [=](caf::error& e) {
        auto& st = self->state;
        if (gen != st.generation || !st.running)
          return;
        st.server_done = true;
        st.failure = failed_result(st.s.cfg.user, "token_refresh_failed",
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
  st.session.reset();
  ++st.generation;
  if (st.s.log)
    st.s.log->write(core::log_level::info, "oauth_login_retry", st.s.cfg.user,
                    fmt::format("{}:{}", st.s.cfg.host, st.s.cfg.port), "",
                    "login refused with the cached token: refreshing and logging in once more");
  begin_pass(self, st.checkpoints, std::exchange(st.token, {}));
  return true;
}

std::int64_t utc_day() { return now_unix() / 86400; }

// Provider download quota: true (and the pass failed as throttled until the next UTC day)
// when today's bytes reached max_download_mb_per_day.
bool over_quota(mailbox_actor_t* self) {
  auto& st = self->state;
  if (st.s.cfg.max_download_mb_per_day == 0 || st.s.probe)
    return false;
  if (st.quota_day != utc_day()) {
    st.quota_day = utc_day();
    st.quota_bytes = 0;
  }
  if (st.quota_bytes < std::uint64_t{st.s.cfg.max_download_mb_per_day} << 20)
    return false;
  st.server_done = true;
  st.failure = failed_result(st.s.cfg.user, "throttled",
                             fmt::format("daily download quota of {} MB reached (provider bandwidth limit); "
                                         "scanning resumes after 00:00 UTC",
                                         st.s.cfg.max_download_mb_per_day));
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
    self->state.scheduler = sched;
    auto stale = [self](std::uint64_t gen) { return gen != self->state.generation || !self->state.session; };
    return {
      [=](lease_atom) {
        auto& st = self->state;
        if (st.running)
          return;
        st.running = true;
        st.token_retried = false;
        st.seen_after_ack.clear();
        st.server_done = false;
        st.failure.reset();
        st.result = failed_result(st.s.cfg.user, {}, {});
        ++st.generation;
        if (!st.s.cfg.is_set()) {
          st.server_done = true;
          st.failure = failed_result(st.s.cfg.user, "not_set",
                                     st.s.cfg.host.empty() ? "no host configured" : st.s.cfg.secret_problem);
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
        self->request(st.s.writer, caf::infinite, state_atom::value, st.s.cfg.user)
          .then([=](storage::mailbox_state& ms) {
            self->state.stored = std::move(ms);
            if (!core::may_login(self->state.stored, self->state.s.cfg)) {
              // Servers lock accounts that keep retrying a bad password: no LOGIN until the
              // config has new credentials or an operator runs `mailscan force-sync`.
              auto& st = self->state;
              st.server_done = true;
              st.failure = failed_result(st.s.cfg.user, "credentials_changed_skip",
                                         "login attempts stopped: the password was rejected after earlier "
                                         "successes; update the credentials or run `mailscan force-sync " +
                                           st.s.cfg.user + "`");
              finish_if_drained(self);
              return;
            }
            self->request(self->state.s.writer, caf::infinite, checkpoints_atom::value, self->state.s.cfg.user)
              .then([=](std::map<std::string, storage::folder_checkpoint>& cps) { begin_pass(self, std::move(cps)); });
          });
      },
      [=](net_up_atom, std::uint64_t gen) {
        if (!stale(gen))
          self->state.last_activity = std::chrono::steady_clock::now();
      },
      [=](net_data_atom, std::string& bytes, std::uint64_t gen) {
        if (stale(gen) || self->state.closing)
          return;
        self->state.last_activity = std::chrono::steady_clock::now();
        self->state.session->on_bytes(bytes);
        pump(self);
      },
      [=](net_tls_atom, std::uint64_t gen) {
        if (stale(gen))
          return;
        self->state.session->on_tls_established();
        pump(self);
      },
      [=](net_fail_atom, std::int32_t kind, std::string& detail, std::uint64_t gen) {
        if (stale(gen))
          return;
        auto k = static_cast<net::failure_kind>(kind);
        if (self->state.closing) {
          finish_closing(self);
          return;
        }
        self->state.conn.reset();
        if (k == net::failure_kind::closed_by_peer) {
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
        auto idle = std::chrono::steady_clock::now() - st.last_activity;
        if (!st.session->awaiting_resume() && idle > std::chrono::seconds(st.s.engine.command_timeout_s)) {
          fail_pass(self, "timeout",
                    fmt::format("no answer from {}:{} for {} s", st.s.cfg.host, st.s.cfg.port,
                                st.s.engine.command_timeout_s));
          return;
        }
        self->delayed_send(self, std::chrono::seconds(1), timeout_atom::value, gen);
      },
      [=](durable_atom, std::uint64_t seq, std::uint64_t new_messages, std::uint64_t new_sightings) {
        auto& st = self->state;
        if (st.inflight > 0)
          --st.inflight;
        if (auto it = st.seen_after_ack.find(seq); it != st.seen_after_ack.end()) {
          if (st.session && st.session->awaiting_resume())
            st.session->mark_seen(std::move(it->second));
          st.seen_after_ack.erase(it);
        }
        st.result.new_messages += new_messages;
        st.result.new_sightings += new_sightings;
        if (st.session && st.session->awaiting_resume() && st.inflight < st.s.engine.max_inflight_batches) {
          st.session->resume();
          pump(self);
        }
        finish_if_drained(self);
      },
      [=](write_failed_atom, std::uint64_t seq, std::string& reason, std::string& detail) {
        auto& st = self->state;
        st.seen_after_ack.erase(seq);  // not tracked: not marked
        if (st.inflight > 0)
          --st.inflight;
        // Nothing of this batch was applied and its checkpoint did not move: stop the pass;
        // the next pass starts again from the last durable checkpoint.
        fail_pass(self, reason, "storage: " + detail);
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
