#pragma once
// The sans-I/O IMAP scan session: one mailbox, one connection, from greeting to LOGOUT.
// The mailbox actor feeds it bytes and carries out what poll() returns (write, STARTTLS);
// it never touches a socket, a timer or a thread.
//
//   greeting --OK--> [CAPABILITY] --> [STARTTLS -> start_tls -> on_tls_established -> CAPABILITY]
//      |                                   |
//      +--PREAUTH----------------------+   v
//      +--BYE--> failed                |  LOGIN | AUTHENTICATE PLAIN | AUTHENTICATE XOAUTH2
//                                      v   v
//                              [ENABLE UTF8=ACCEPT]  (when offered, RFC 6855)
//                                      v
//                              [LIST "" "*"]  (only when no folders are configured)
//                                      v
//   +--> EXAMINE/SELECT folder --> folder_opened --(0 messages)--------------------+
//   |        |                                                                     |
//   |        v                                                                     |
//   |    UID SEARCH <window> + UID SEARCH <window> LARGER max  (pipelined)         |
//   |        v                                                                     |
//   |    UID FETCH batch: structure (default): UID FLAGS ... BODYSTRUCTURE HEADER,   |
//   |        then UID FETCH of the text parts only (one command per distinct       |
//   |        set of sections, pipelined); whole_message: BODY.PEEK[] or            |
//   |        HEADER + TEXT<0.N> for messages LARGER than the limit                  |
//   |        v    message_fetched ...                                              |
//   |    batch_complete --(owner calls resume())--> [UID STORE +FLAGS.SILENT       |
//   |        (\Seen) of the UIDs given to mark_seen()] --> next batch | folder_complete
//   +---------------------------------------------------------- next folder
//                                      v
//                                LOGOUT --> scan_complete
//
// Any BYE, unparseable input or failing command ends in scan_failed with a classified error.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "protocols/imap/body_structure.hpp"
#include "protocols/imap/command_writer.hpp"
#include "protocols/imap/response_parser.hpp"

namespace mscan::imap {

enum class error_kind { dns_failure, connection_refused, timeout, tls_handshake_failed,
  certificate_invalid, starttls_unavailable, login_failed, auth_method_unsupported,
  account_unavailable, folder_not_found, server_bye, protocol_error, throttled };
std::string_view to_string(error_kind);   // exactly the INTERFACE.md reason codes
struct error {
  error_kind kind;
  std::string detail;                     // human text, never a secret
  std::uint32_t retry_after_s = 0;        // throttled: the suggested back-off in seconds
};
struct folder_checkpoint { std::uint32_t uidvalidity = 0; std::uint32_t last_uid = 0;
                           std::uint64_t highest_modseq = 0; };
enum class auth_method { password, xoauth2 };
// structure: headers + BODYSTRUCTURE, then only the text parts (attachment bytes never
// cross the network; message_fetched::raw is a synthetic message with stub attachments).
// whole_message: the message itself (BODY.PEEK[], capped at max_message_bytes).
enum class fetch_strategy { structure, whole_message };
struct session_options {
  std::string username; std::string secret;          // password or bearer token
  auth_method auth = auth_method::password;
  bool starttls = false;      // issue STARTTLS; if not offered -> starttls_unavailable (no downgrade)
  std::vector<std::string> folders;  // UTF-8 names; empty = every selectable folder (LIST "" "*")
  bool unread_only = false;          // scan = unread: only messages without \Seen
  std::int64_t since_unix = 0;       // first scan of a folder without checkpoint: UID SEARCH SINCE
  std::map<std::string, folder_checkpoint> checkpoints;   // by UTF-8 folder name
  std::size_t batch_size = 200;      // messages per UID FETCH
  std::size_t max_message_bytes = 2 * 1024 * 1024; // larger: header + first part of body only
                                                   // (structure: the cap of each text part)
  fetch_strategy fetch = fetch_strategy::structure;
};
struct write_bytes { std::string data; };   // send these bytes to the server
struct start_tls {};  // transport: TLS handshake now, then call on_tls_established()
struct folder_opened { std::string folder; std::uint32_t uidvalidity; std::uint32_t uidnext;
                       std::uint32_t exists; bool uidvalidity_changed;
  std::string special_use;   // LIST attribute "\\Sent", "\\Trash", "\\Junk", "\\Drafts", "\\All",
                             // "\\Archive", "\\Flagged" (RFC 6154); empty when none or not listed
  std::string mailbox_id;    // MAILBOXID (RFC 8474): survives renames; empty when not offered
};
struct message_fetched { std::string folder; std::uint32_t uidvalidity; std::uint32_t uid;
  std::uint64_t size; std::int64_t internaldate; std::vector<std::string> flags;
  std::string raw; bool truncated;
  // structure strategy: the parts that were not downloaded, sizes as the server counts them
  // (the parts are in `raw` as headers-only stubs, so the parser's own sizes are ~0).
  std::vector<attachment_stub> attachments;
  std::uint64_t gm_msgid = 0;   // X-GM-MSGID (Gmail, X-GM-EXT-1); 0 when not offered
  std::string email_id;         // EMAILID (RFC 8474); empty when not offered
  std::uint64_t modseq = 0;     // MODSEQ (CONDSTORE); 0 when not available
};
struct batch_complete { std::string folder; std::uint32_t uidvalidity; std::uint32_t highest_uid; };
struct folder_complete { std::string folder; std::uint32_t uidvalidity; std::uint32_t highest_uid;
                         std::uint64_t highest_modseq; };
struct scan_complete {};               // LOGOUT was written; owner closes after sending it
struct scan_failed { error err; };
// Something did not work but the scan goes on (e.g. UID STORE \Seen refused).
struct session_warning { std::string folder; std::string detail; };
using session_output = std::variant<write_bytes, start_tls, folder_opened, message_fetched,
  batch_complete, folder_complete, scan_complete, scan_failed, session_warning>;

class scan_session {
 public:
  explicit scan_session(session_options opts);
  void on_bytes(std::string_view bytes);  // any chunking
  void on_tls_established();
  void on_eof();            // peer closed: scan_failed{server_bye or protocol_error} unless done
  void resume();            // after batch_complete: the owner has capacity for the next batch
  // With unread_only (folder opened with SELECT): these UIDs of the current folder are
  // durably tracked; the next resume() first sends UID STORE +FLAGS.SILENT (\Seen) for them.
  // Callable while awaiting_resume() and also while the next batch is being fetched (the
  // folder is still selected), so an owner with several batches in flight can pass UIDs as
  // acknowledgements arrive; the folder is left only at the resume() after its last batch,
  // so UIDs must be given before that resume(). A refusal is a session_warning, not a
  // failure; a call at any other time, or without unread_only, is a warning and ignored.
  void mark_seen(std::vector<std::uint32_t> uids);
  // Fairness (the owner's connection slice is used up): the next resume() sends LOGOUT
  // (after any pending \Seen STORE) instead of the next batch or folder; scan_complete
  // follows as usual. The rest is left for the next scan, from the durable checkpoints.
  // ended_early(): that happened (false when the scan had nothing left anyway).
  void finish_early();
  bool ended_early() const;
  std::optional<session_output> poll();   // next output; nullopt = need bytes / waiting resume
  bool awaiting_resume() const; bool finished() const;
  const std::vector<std::string>& capabilities() const;

 private:
  enum class phase { greeting, capability, starttls, tls_handshake, authenticate, enable, list,
                     select, search, fetch, await_resume, store, done };
  enum class cmd_kind { capability, starttls, login, authenticate, enable, list, select,
                        search_all, search_large, fetch, fetch_parts, store, logout };
  struct pending_cmd { std::string tag; cmd_kind kind; };
  struct folder { std::string name; std::string wire; bool configured; std::string special_use; };
  // One message of the batch between the structure FETCH and the text-part FETCH.
  struct staged_message {
    bool have_meta = false;
    message_fetched m;
    std::optional<body_part> root;
    std::string header;
    fetch_plan plan;
    std::map<std::string, std::string, std::less<>> sections;
  };

  void handle(response& r);
  void handle_tagged(const status_response& s);
  void handle_untagged_status(const status_response& s);
  void handle_fetch(fetch_data& f);
  void handle_structure_fetch(fetch_data& f, std::size_t index);
  void fetch_parts();
  void complete_batch();
  void send(command c, cmd_kind kind);
  void set_capabilities(std::vector<std::string> caps);
  bool has_cap(std::string_view cap) const;
  void after_capabilities();
  void authenticate();
  void authenticated();
  void start_folders();
  void open_folder();
  void folder_selected();
  void start_search();
  void next_batch();
  void finish_folder();
  void logout();
  void end_early();
  void fail(error_kind kind, std::string detail, std::uint32_t retry_after_s = 0);
  void fail_protocol(std::string_view what);
  bool fail_if_throttled(const status_response& s);
  void fail_login(const status_response& s);
  const folder_checkpoint* checkpoint() const;

  session_options opts_;
  response_parser parser_;
  command_writer writer_;
  std::deque<session_output> out_;
  std::vector<std::string> caps_;
  std::vector<pending_cmd> pending_;
  std::deque<std::string> literal_parts_;  // rest of a command waiting for '+'
  phase phase_ = phase::greeting;
  bool tls_done_ = false;
  bool auth_ir_sent_ = false;
  bool logout_sent_ = false;
  bool utf8_ = false;                      // UTF8=ACCEPT enabled: names are UTF-8, not mUTF-7
  std::vector<folder> folders_;
  std::size_t folder_index_ = 0;
  // Per-folder state.
  std::uint32_t uidvalidity_ = 0, uidnext_ = 0, exists_ = 0;
  std::uint64_t highest_modseq_ = 0;
  std::vector<std::uint32_t> uids_, large_uids_;
  std::size_t searches_left_ = 0;
  std::size_t batch_pos_ = 0;
  std::vector<std::uint32_t> batch_;       // UIDs of the batch in flight (sorted)
  std::vector<bool> delivered_;            // per batch_ entry: message_fetched emitted
  std::size_t fetches_left_ = 0;
  int fetch_stage_ = 0;                    // structure: 1 = headers + structure, 2 = text parts
  std::vector<staged_message> staged_;     // structure: per batch_ entry
  std::vector<std::uint32_t> seen_;        // mark_seen() UIDs waiting for resume()
  std::string mailbox_id_;
  std::uint32_t highest_uid_ = 0;          // highest UID covered in this folder
  bool finish_early_ = false;              // finish_early(): LOGOUT at the next resume()
  bool ended_early_ = false;               // ... and something was left for the next scan
};

} // namespace mscan::imap
