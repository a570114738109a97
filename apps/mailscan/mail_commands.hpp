#pragma once
// `mailscan ticket comment` and `mailscan outbox`: ticket comments by e-mail through [smtp]
// (core/outbox.hpp). Both open the store read-write: stop `mailscan run` first (it holds the
// store; it also sends the outbox on its own while it runs).
#include <string>

namespace mscan::apps {

// Adds TEXT as a comment on TICKET; with `send`, queues the comment e-mail to the ticket's
// contact and sends what is due. Exit: 0 recorded (and sent), 3 queued but not sent yet
// (or failed), 4 unknown ticket, 2 bad config/usage.
int run_ticket_comment(const std::string& config_file, const std::string& ticket, const std::string& text,
                       bool send, bool json);

// Lists the outbox (every outgoing message and its send state); with `send`, first sends what
// is due. Exit 0, or 3 when `send` left something unsent.
int run_outbox(const std::string& config_file, bool send, bool json);

} // namespace mscan::apps
