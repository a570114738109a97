#pragma once
// Outgoing mail through [smtp]: ticket comments to customers and operator notifications.
//
// Every message is queued in the store's outbox (storage::outbox_record) before any attempt:
// an accepted comment is never lost. send_due() sends what is due over one SMTP connection
// (protocols/smtp over protocols/net/tls_transport) and records each outcome as it happens:
// `sent` right after the server's 250 to the end of data, so a sent message is never sent
// again. Between that 250 and the store write a crash leaves the entry `sending`; the next
// run sends it again (at-least-once: SMTP has no way to ask whether a message arrived). The
// resend carries the same bytes and Message-ID, so mail clients show one message.
//
// Who sends: `mailscan ticket comment --send` and `mailscan outbox --send` right away, and
// `mailscan run` (the health actor) every 30 s and at the end of a pass. Blocking: call
// from a CLI thread or a detached actor.
#include "common/expected.hpp"
#include "core/config.hpp"
#include "core/outgoing_mail.hpp"
#include "storage/types.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace mscan::storage {
class store;
}
namespace mscan::net {
class io_runtime;
}

namespace mscan::core {

class event_log;

// A ticket as `query tickets` shows it (INTERFACE.md), the fields a template can use.
struct ticket_info {
  std::string number, subject, status, assignee, priority, contact;
  std::vector<std::string> message_ids;  // oldest first
  struct comment { std::string message_id, text; };
  std::vector<comment> comments;         // oldest first
};

// The comment e-mail for `t` from the [smtp] templates: To the ticket's contact, threaded
// (In-Reply-To the newest message of the ticket, References to all of them, capped).
// Errors: no contact address, or [smtp] missing.
expected<outgoing_mail, std::string> ticket_comment_mail(const config& cfg, const ticket_info& t,
                                                          std::string_view comment, std::int64_t now);

// The outbox entry for a composed mail (state queued, due now).
storage::outbox_record outbox_entry_for(const outgoing_mail& m, std::string kind, std::string ticket,
                                        std::string comment, std::int64_t now);

// The message record that puts the comment on its ticket (link reasons "ticket" and
// "comment", like a scanned reply): the ticket lists its Message-ID, so the customer's
// answer threads to it. Writing it again changes nothing.
storage::message_record comment_record(const storage::outbox_record& o);

// Adds a comment to ticket `t`: with `send`, queued in the outbox first (durable), then the
// comment record; without, only the record. Returns the entry (message_id set either way).
expected<storage::outbox_record, std::string> add_ticket_comment(storage::store& db, const config& cfg,
                                                                 const ticket_info& t, std::string_view text,
                                                                 bool send, std::int64_t now);

// Queues the notification e-mail to [service] notify_email. Returns "email: queued <id>" or
// "email: not queued: <why>" for the notification's delivery field.
std::string queue_notification_mail(storage::store& db, const config& cfg, const storage::notification_record& n);

struct outbox_send_report {
  std::size_t due = 0, sent = 0, retrying = 0, failed = 0;
  std::string reason, detail;  // the connection's failure, if any (classified; no secret)
  std::vector<storage::outbox_record> outcomes;  // the entries attempted, as stored after it
};

// Sends every due entry (queued with next_attempt <= now, or left `sending` by a crash), at
// most `limit`, over one connection. Transient failures are retried after
// retry_backoff_s * 2^(attempts-1) (at most 6 h) until max_attempts; permanent ones (the
// server refused the recipient or the message) fail at once. `io` = the transport's runtime
// (nullptr: a private one for this call).
// Each outcome is also a line in `log` when given: smtp_sent (info), smtp_send_retry
// (warning), smtp_send_failed (error), with the Message-ID, recipients and reason.
outbox_send_report send_due(storage::store& db, const smtp_config& smtp, std::int64_t now,
                            net::io_runtime* io = nullptr, std::size_t limit = 100, event_log* log = nullptr);

} // namespace mscan::core
