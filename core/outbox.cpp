#include "core/outbox.hpp"

#include "core/event_log.hpp"
#include "core/mail_template.hpp"
#include "protocols/mime/message.hpp"
#include "protocols/net/tls_transport.hpp"
#include "protocols/smtp/smtp_session.hpp"
#include "storage/store.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>

namespace mscan::core {

namespace {

constexpr std::size_t max_references = 20;
constexpr std::int64_t max_backoff_s = 6 * 3600;

std::string bracketed(std::string_view id) {
  if (id.empty() || id.starts_with("fp:")) return {};  // a fingerprint key is not a Message-ID
  if (id.front() == '<') return std::string{id};
  return "<" + std::string{id} + ">";
}

std::string quote_lines(std::string_view text) {
  std::string out;
  std::size_t i = 0;
  while (i <= text.size()) {
    auto nl = text.find('\n', i);
    auto line = text.substr(i, nl == std::string_view::npos ? std::string_view::npos : nl - i);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    out += line.empty() ? ">\n" : "> " + std::string{line} + "\n";
    if (nl == std::string_view::npos) break;
    i = nl + 1;
  }
  return out;
}

void reschedule(storage::outbox_record& o, std::string reason, std::string detail, bool permanent,
                const smtp_config& smtp, std::int64_t now) {
  o.last_error_reason = std::move(reason);
  o.last_error_detail = std::move(detail);
  if (permanent || o.attempts >= smtp.max_attempts) {
    o.state = "failed";
    o.next_attempt = 0;
    return;
  }
  o.state = "queued";
  std::int64_t wait = smtp.retry_backoff_s;
  for (std::uint32_t i = 1; i < o.attempts && wait < max_backoff_s; ++i) wait *= 2;
  o.next_attempt = now + std::min(wait, max_backoff_s);
}

// One SMTP connection carrying `msgs`, driven from the transport's io thread; the caller
// blocks until the session ends. on_sent runs (on the io thread) as each 250 arrives.
struct smtp_run : std::enable_shared_from_this<smtp_run> {
  smtp::smtp_session session;
  std::shared_ptr<net::connection> conn;
  std::function<void(std::size_t, const smtp::message_sent&)> on_sent;
  std::function<void(std::size_t, const smtp::error&)> on_failed;
  std::mutex mu;
  std::condition_variable cv;
  bool finished = false;
  bool abandoned = false;  // the caller stopped waiting: outcomes are no longer recorded
  std::string reason, detail;

  smtp_run(smtp::session_options o, std::vector<smtp::envelope> m) : session(std::move(o), std::move(m)) {}

  void finish(std::string why_reason, std::string why_detail, bool graceful) {
    {
      std::lock_guard lock{mu};
      if (finished) return;
      finished = true;
      reason = std::move(why_reason);
      detail = std::move(why_detail);
    }
    if (conn) conn->close(graceful);
    cv.notify_all();
  }

  void pump() {
    while (auto out = session.poll()) {
      if (auto* w = std::get_if<smtp::write_bytes>(&*out)) conn->write(std::move(w->data));
      else if (std::holds_alternative<smtp::start_tls>(*out)) conn->start_tls();
      else if (auto* s = std::get_if<smtp::message_sent>(&*out)) {
        std::lock_guard lock{mu};
        if (!abandoned) on_sent(s->index, *s);
      } else if (auto* f = std::get_if<smtp::message_failed>(&*out)) {
        std::lock_guard lock{mu};
        if (!abandoned) on_failed(f->index, f->err);
      }
      else if (std::holds_alternative<smtp::session_done>(*out)) finish({}, {}, true);
      else if (auto* e = std::get_if<smtp::session_failed>(&*out))
        finish(std::string{smtp::to_string(e->err.kind)}, e->err.detail, false);
    }
  }
};

} // namespace

expected<outgoing_mail, std::string> ticket_comment_mail(const config& cfg, const ticket_info& t,
                                                          std::string_view comment, std::int64_t now) {
  if (!cfg.smtp.enabled())
    return unexpected{std::string{"no [smtp] table in the config: nothing to send through"}};
  const auto contacts = mime::parse_address_list(t.contact);
  if (contacts.empty() || contacts.front().email.empty())
    return unexpected{fmt::format("ticket {} has no contact address to send to", t.number)};
  std::string conversation;
  for (auto it = t.comments.rbegin(); it != t.comments.rend(); ++it) {
    if (it->text.empty()) continue;
    if (!conversation.empty()) conversation += "\n";
    conversation += quote_lines(it->text);
  }
  const std::string marker =
    cfg.engine.reply_marker.empty() ? mime::parse_options{}.reply_marker : cfg.engine.reply_marker;
  auto value = [&](std::string_view tag) -> std::optional<std::string> {
    if (tag == "ticket_no") return t.number;
    if (tag == "comment") return std::string{comment};
    if (tag == "comments") return conversation;
    if (tag == "reply_above") return marker;
    if (tag == "subject") return t.subject;
    if (tag == "status") return t.status;
    if (tag == "assignee") return t.assignee;
    if (tag == "priority") return t.priority;
    if (tag == "contact") return contacts.front().email;
    if (tag == "from_name") return cfg.smtp.from_name;
    return std::nullopt;
  };
  auto subject = expand_template(cfg.smtp.subject_template, value);
  auto body = expand_template(cfg.smtp.body_template, value);
  if (!subject) return unexpected{"subject_template: " + subject.error()};
  if (!body) return unexpected{"body_template: " + body.error()};
  outgoing_mail m;
  m.from_name = cfg.smtp.from_name;
  m.from_address = cfg.smtp.from_address;
  m.to = {contacts.front().email};
  m.subject = *subject;
  m.body = *body;
  m.message_id = new_message_id(cfg.smtp.from_address);
  m.date = now;
  std::vector<std::string> ids;
  for (auto& id : t.message_ids)
    if (auto b = bracketed(id); !b.empty()) ids.push_back(b);
  if (!ids.empty()) {
    m.in_reply_to = ids.back();
    // The root first (clients thread by it), then the newest ones.
    m.references.push_back(ids.front());
    const std::size_t from = ids.size() > max_references ? ids.size() - (max_references - 1) : 1;
    for (std::size_t i = from; i < ids.size(); ++i) m.references.push_back(ids[i]);
  }
  return m;
}

storage::outbox_record outbox_entry_for(const outgoing_mail& m, std::string kind, std::string ticket,
                                        std::string comment, std::int64_t now) {
  storage::outbox_record o;
  o.message_id = m.message_id;
  o.kind = std::move(kind);
  o.ticket = std::move(ticket);
  o.comment = std::move(comment);
  o.subject = m.subject;
  o.from = m.from_address;
  o.to = m.to;
  o.data = compose(m);
  o.state = "queued";
  o.created = now;
  o.next_attempt = now;
  return o;
}

storage::message_record comment_record(const storage::outbox_record& o) {
  storage::message_record r;
  r.message_id = o.message_id;
  r.key = storage::message_key(o.message_id, o.created, o.data.size(), o.from, o.subject);
  r.subject = o.subject;
  r.from = o.from;
  r.to = o.to;
  r.date = o.created;
  r.size = o.data.size();
  r.tickets = {o.ticket};
  r.reasons.push_back({"ticket", o.ticket, "comment added with `mailscan ticket comment`"});
  r.reasons.push_back({"comment", o.ticket, o.comment});
  return r;
}

expected<storage::outbox_record, std::string> add_ticket_comment(storage::store& db, const config& cfg,
                                                                 const ticket_info& t, std::string_view text,
                                                                 bool send, std::int64_t now) {
  storage::outbox_record o;
  if (send) {
    auto m = ticket_comment_mail(cfg, t, text, now);
    if (!m) return unexpected{m.error()};
    o = outbox_entry_for(*m, "ticket_comment", t.number, std::string{text}, now);
    // The outbox entry first: once it is durable the comment is never lost (send_due writes
    // the comment record again before sending, should we die before the next line).
    if (auto p = db.put_outbox(o); !p) return unexpected{"outbox: " + p.error().message};
  } else {
    o.message_id = new_message_id(cfg.smtp.enabled() ? cfg.smtp.from_address : "mailscan@mailscan.invalid");
    o.kind = "ticket_comment";
    o.ticket = t.number;
    o.comment = std::string{text};
    o.subject = t.subject;
    o.from = cfg.smtp.from_address;
    o.created = now;
    o.state = "";  // not an outbox entry: the comment is only recorded
  }
  const auto rec = comment_record(o);
  if (auto w = db.write(std::span{&rec, 1}, {}); !w) return unexpected{"store: " + w.error().message};
  return o;
}

std::string queue_notification_mail(storage::store& db, const config& cfg, const storage::notification_record& n) {
  if (cfg.service.notify_email.empty() || !cfg.smtp.enabled()) return {};
  outgoing_mail m;
  m.from_name = cfg.smtp.from_name.empty() ? "mailscan" : cfg.smtp.from_name;
  m.from_address = cfg.smtp.from_address;
  m.to = {cfg.service.notify_email};
  m.subject = n.kind == "recovered" ? fmt::format("[mailscan] mailbox {} recovered", n.user)
                                    : fmt::format("[mailscan] mailbox {}: {} ({})", n.user, n.kind, n.reason);
  m.body = fmt::format("Mailbox: {}\nEvent: {}\nReason: {}\nDetail: {}\nConsecutive failures: {}\nNext step: {}\n",
                       n.user, n.kind, n.reason.empty() ? "-" : n.reason, n.detail.empty() ? "-" : n.detail,
                       n.consecutive_failures, n.next_step.empty() ? "-" : n.next_step);
  m.message_id = new_message_id(cfg.smtp.from_address);
  m.date = n.at;
  m.auto_submitted = true;
  auto o = outbox_entry_for(m, "notification", {}, {}, n.at);
  if (auto p = db.put_outbox(o); !p) return "email: not queued: " + p.error().message;
  return "email: queued " + o.message_id;
}

outbox_send_report send_due(storage::store& db, const smtp_config& smtp, std::int64_t now, net::io_runtime* io,
                            std::size_t limit, event_log* log) {
  outbox_send_report rep;
  if (!smtp.enabled()) return rep;
  std::vector<storage::outbox_record> due;
  for (auto& o : db.outbox()) {
    if (due.size() >= limit) break;
    if ((o.state == "queued" && o.next_attempt <= now) || o.state == "sending") due.push_back(std::move(o));
  }
  rep.due = due.size();
  if (due.empty()) return rep;
  if (!smtp.username.empty() && smtp.secret.empty()) {
    // Nothing to log in with: no attempt is spent, the operator is told why.
    rep.reason = "login_failed";
    rep.detail = "[smtp] password: " + smtp.secret_problem;
    rep.retrying = due.size();
    if (log) log->write(log_level::error, "smtp_not_configured", "", smtp.host, "", rep.detail);
    return rep;
  }

  std::vector<smtp::envelope> envs;
  for (auto& o : due) {
    o.state = "sending";
    ++o.attempts;
    if (o.kind == "ticket_comment") {
      const auto rec = comment_record(o);
      (void)db.write(std::span{&rec, 1}, {});  // replay: changes nothing when already there
    }
    if (auto p = db.put_outbox(o); !p) {
      rep.reason = "store";
      rep.detail = p.error().message;
      return rep;  // nothing is sent that could not be marked first
    }
    envs.push_back({o.from, o.to, o.data});
  }

  smtp::session_options so;
  so.helo_name = smtp.helo_name;
  so.starttls = smtp.security == security_mode::starttls;
  if (!smtp.username.empty()) {
    so.auth = smtp.auth == auth_kind::xoauth2 ? smtp::auth_mechanism::xoauth2 : smtp::auth_mechanism::password;
    so.username = smtp.username;
    so.secret = smtp.secret;
  }
  std::vector<bool> reported(due.size(), false);
  auto run = std::make_shared<smtp_run>(so, envs);
  auto store_outcome = [&](std::size_t i) {
    reported[i] = true;
    (void)db.put_outbox(due[i]);
  };
  run->on_sent = [&](std::size_t i, const smtp::message_sent& s) {
    if (i >= due.size()) return;
    due[i].state = "sent";
    due[i].sent_at = now;
    due[i].server_reply = s.reply;
    due[i].last_error_reason.clear();
    due[i].last_error_detail.clear();
    if (!s.rejected_recipients.empty()) {
      due[i].last_error_reason = "recipient_rejected";
      due[i].last_error_detail = fmt::format("not delivered to: {}", fmt::join(s.rejected_recipients, "; "));
    }
    store_outcome(i);
  };
  run->on_failed = [&](std::size_t i, const smtp::error& e) {
    if (i >= due.size()) return;
    reschedule(due[i], std::string{smtp::to_string(e.kind)}, e.detail, e.permanent, smtp, now);
    store_outcome(i);
  };

  std::unique_ptr<net::io_runtime> own;
  if (!io) {
    own = std::make_unique<net::io_runtime>(1);
    io = own.get();
  }
  net::endpoint_options eo;
  eo.host = smtp.host;
  eo.port = smtp.port;
  eo.implicit_tls = smtp.security == security_mode::tls;
  eo.verify_certificate = smtp.verify_certificate;
  eo.ca_file = smtp.ca_file.string();
  eo.connect_timeout_ms = smtp.timeout_s * 1000;
  eo.idle_timeout_ms = smtp.timeout_s * 1000;
  std::weak_ptr<smtp_run> weak = run;
  net::connection_callbacks cb;
  cb.on_data = [weak](std::string bytes) {
    if (auto r = weak.lock()) {
      r->session.on_bytes(bytes);
      r->pump();
    }
  };
  cb.on_tls_ready = [weak] {
    if (auto r = weak.lock()) {
      r->session.on_tls_established();
      r->pump();
    }
  };
  cb.on_failure = [weak](net::failure f) {
    if (auto r = weak.lock()) {
      if (f.kind == net::failure_kind::closed_by_peer) {
        r->session.on_eof();  // classifies a close mid-reply vs between replies
        r->pump();
      }
      r->finish(std::string{net::reason_code(f.kind)}, f.detail, false);
    }
  };
  run->conn = net::connection::create(*io, eo, cb);
  run->conn->start();
  std::string reason, detail;
  {
    // The transport bounds every wait (connect, TLS, each reply); this is the backstop.
    std::unique_lock lock{run->mu};
    const auto cap = std::chrono::seconds(std::int64_t{smtp.timeout_s} * (4 + 2 * std::int64_t(due.size())));
    if (!run->cv.wait_for(lock, cap, [&] { return run->finished; })) {
      run->finished = true;
      run->reason = "timeout";
      run->detail = "the SMTP session took too long";
    }
    // From here on the io thread records nothing: `due` and `reported` are ours alone.
    run->abandoned = true;
    reason = run->reason;
    detail = run->detail;
  }
  run->conn->close(false);
  // The connection must not outlive its io runtime (its sockets and timers belong to it):
  // after this only the io thread's pending handlers hold it, and they go with the runtime.
  run->conn.reset();
  own.reset();
  rep.reason = reason;
  rep.detail = detail;
  for (std::size_t i = 0; i < due.size(); ++i) {
    if (!reported[i]) {
      reschedule(due[i], reason.empty() ? "protocol_error" : reason,
                 detail.empty() ? "the session ended before this message was sent" : detail, false, smtp, now);
      (void)db.put_outbox(due[i]);
    }
    const auto& o = due[i];
    if (o.state == "sent") ++rep.sent;
    else if (o.state == "failed") ++rep.failed;
    else ++rep.retrying;
    if (log) {
      const auto to = fmt::format("{}", fmt::join(o.to, ","));
      if (o.state == "sent")
        log->write(log_level::info, "smtp_sent", "", smtp.host, "", fmt::format("{} to={} {}", o.message_id, to, o.server_reply));
      else
        log->write(o.state == "failed" ? log_level::error : log_level::warning,
                   o.state == "failed" ? "smtp_send_failed" : "smtp_send_retry", "", smtp.host, "",
                   fmt::format("{} to={} attempts={} reason={}: {}", o.message_id, to, o.attempts, o.last_error_reason,
                               o.last_error_detail));
    }
  }
  rep.outcomes = std::move(due);
  return rep;
}

} // namespace mscan::core
