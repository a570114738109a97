#pragma once
// The sans-I/O POP3 scan session: one maildrop, one connection, from greeting to QUIT.
// It speaks the scan-session vocabulary of protocols/imap/scan_session.hpp (write_bytes,
// start_tls, folder_opened, message_fetched, batch_complete, folder_complete, scan_complete,
// scan_failed, session_warning and imap::error_kind), so the mailbox actor drives IMAP and
// POP3 passes with the same pipeline, credit and checkpoint code.
//
//   greeting(+OK [<apop timestamp>]) --> CAPA --> [STLS -> start_tls -> on_tls_established -> CAPA]
//      |-ERR--> failed                              |
//                                                   v
//            AUTH PLAIN | AUTH XOAUTH2 (SASL offered) | USER + PASS | APOP
//                                                   v
//          probe: STAT --> folder_opened --> QUIT      UIDL --> folder_opened
//                                                   |  (new = UIDLs not in the checkpoint;
//                                                   |   vanished ones leave it)
//                                                   v
//                      LIST (only when something is new: sizes decide RETR or TOP)
//                                                   v
//   +--> RETR n (TOP n 0 with headers_only; TOP n L above max_message_bytes), pipelined
//   |    when PIPELINING is offered --> message_fetched ... --> batch_complete
//   +------------------ (owner calls resume()) -----------------------+
//                                                   v
//        folder_complete --> (owner calls all_acked(): every batch is durable)
//                                                   v
//                          [DELE n ... of the uids given to dele()] --> QUIT --> scan_complete
//
// POP3 has no folders and no UIDs: everything is folder "INBOX" with uidvalidity 0, and each
// UIDL gets a uid when first seen (checkpoint last_uid + 1, + 2, ... in maildrop order).
// The checkpoint is the set of UIDLs already tracked (options.known) plus last_uid; the
// changes to it ride with the batches (take_uidl_changes()) so they become durable in the same
// write as the messages they cover. DELE is sent only for uids the owner passes to dele()
// (a rule's delete action, after the message is durably tracked), and only once the owner
// says every batch is durable: POP3 commits deletions at QUIT, so a pass that dies before
// deletes nothing.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocols/imap/scan_session.hpp"
#include "protocols/pop3/response_parser.hpp"

namespace mscan::pop3 {

inline constexpr std::string_view folder_name = "INBOX";

// automatic: SASL PLAIN when offered, else USER/PASS, else APOP (greeting timestamp).
enum class auth_method { automatic, user_pass, apop, sasl_plain, xoauth2 };

struct session_options {
  std::string username, secret;  // secret: password or bearer token; never in any output
  auth_method auth = auth_method::automatic;
  bool starttls = false;         // STLS; not offered or refused -> starttls_unavailable
  std::map<std::string, std::uint32_t, std::less<>> known;  // tracked UIDL -> uid
  std::uint32_t last_uid = 0;    // highest uid given out so far
  std::size_t batch_size = 100;  // messages per batch_complete
  std::size_t max_message_bytes = 2 * 1024 * 1024;  // larger: header + first lines (TOP)
  bool headers_only = false;     // TOP n 0 for every message (no bodies needed)
  bool probe = false;            // diagnostics: log in, STAT, QUIT; fetch nothing
  parser_limits limits = {};     // max_message_bytes above overrides limits.max_message_bytes
};

// One change to the UIDL checkpoint.
struct uidl_change {
  std::string uidl;
  std::uint32_t uid = 0;
  bool removed = false;  // vanished from the server: leaves the checkpoint
};

class scan_session {
 public:
  explicit scan_session(session_options opts);
  void on_bytes(std::string_view bytes);  // any chunking
  void on_tls_established();
  void on_eof();
  void resume();  // after batch_complete: the owner has credit for the next batch
  // These uids (of this pass's messages) may be deleted from the server: their messages are
  // durably tracked. Unknown uids are ignored.
  void dele(const std::vector<std::uint32_t>& uids);
  // After folder_complete: every batch of the pass is durable; DELE what dele() got, QUIT.
  void all_acked();
  std::optional<imap::session_output> poll();
  // Waiting for the owner (resume() or all_acked()): the server is not expected to speak.
  bool awaiting_resume() const { return phase_ == phase::await_resume || phase_ == phase::await_final; }
  bool finished() const { return phase_ == phase::done; }
  // USER/PASS, APOP or AUTH is out and not answered (a refusal is delayed on purpose).
  bool authenticating() const { return phase_ == phase::auth; }
  const std::vector<std::string>& capabilities() const { return caps_; }
  // The checkpoint changes covered by the batch_complete / folder_complete just polled (and
  // everything before it not yet taken).
  std::vector<uidl_change> take_uidl_changes();

 private:
  enum class phase { greeting, capa, stls, tls_handshake, auth, stat, uidl, list, fetch,
                     await_resume, await_final, dele, quit, done };
  enum class cmd { capa, stls, user, pass, apop, auth, auth_cancel, stat, uidl, list, fetch, dele, quit };
  struct pending_cmd { cmd kind; std::size_t index = 0; };
  struct new_message { std::uint32_t msgno; std::string uidl; std::uint32_t uid;
                       std::uint64_t size = 0; bool partial = false; };

  void process();  // handles every complete reply buffered
  void handle(reply& r);
  void send(std::string line, cmd kind, body_kind body, std::size_t index = 0);
  void after_capa();
  void authenticate();
  void logged_in();
  void on_uidl(const reply& r);
  void on_list(const reply& r);
  void next_batch();
  void send_fetch(std::size_t index);
  void on_fetched(reply& r, std::size_t index);
  void finish();
  void next_dele();
  void quit();
  bool has_cap(std::string_view name) const;
  bool sasl_offers(std::string_view mech) const;
  void fail(imap::error_kind kind, std::string detail);
  void fail_err(const reply& r, std::string_view what, imap::error_kind fallback);

  session_options opts_;
  response_parser parser_;
  std::deque<imap::session_output> out_;
  std::deque<pending_cmd> pending_;
  std::vector<std::string> caps_;
  bool capa_known_ = false;
  bool tls_done_ = false;
  bool pipelining_ = false;
  std::string apop_timestamp_;
  phase phase_ = phase::greeting;
  std::vector<new_message> new_;
  std::size_t batch_begin_ = 0, batch_end_ = 0, next_send_ = 0, replies_left_ = 0;
  std::uint32_t highest_uid_ = 0;
  std::vector<uidl_change> changes_;
  std::map<std::uint32_t, std::uint32_t> msgno_of_;  // uid -> message number, this pass
  std::deque<std::uint32_t> dele_;                   // message numbers to DELE
};

// RFC 1939 APOP digest: lower-case hex MD5 of timestamp + secret.
std::string apop_digest(std::string_view timestamp, std::string_view secret);

} // namespace mscan::pop3
