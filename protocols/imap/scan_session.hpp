#pragma once
// The sans-I/O IMAP scan session: one mailbox, one connection, from greeting to LOGOUT.
// The mailbox actor feeds it bytes and carries out what poll() returns (write, STARTTLS);
// it never touches a socket, a timer or a thread.
//
//   greeting --OK--> [CAPABILITY] --> [STARTTLS -> start_tls -> on_tls_established -> CAPABILITY]
//      |                                   |
//      +--PREAUTH----------------------+   v
//      +--BYE--> failed                |  [ID (...)] pipelined before (when offered, RFC 2971)
//                                      |  LOGIN | AUTHENTICATE PLAIN | AUTHENTICATE XOAUTH2
//                                      v   v
//                              [ENABLE UTF8=ACCEPT]  (when offered, RFC 6855)
//                                      v
//                              [LIST "" "*" [RETURN (STATUS (...))]]  (only when no folders
//                                      v     are configured; STATUS with LIST-STATUS, RFC 5819)
//   +--> [STATUS folder (UIDNEXT UIDVALIDITY [HIGHESTMODSEQ])]  (folder with a checkpoint and no
//   |        |                            LIST-STATUS answer) --unchanged--> folder_unchanged --+
//   |        v                                                                  next folder <--+
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
//   |    batch_complete --(owner calls resume())--> [actions queued with            |
//   |        queue_action() / mark_seen(), one command at a time, see below]       |
//   |        --> next batch | folder_complete                                       |
//   +---------------------------------------------------------- next folder
//                                      v
//                                LOGOUT --> scan_complete
//             or, with options.park: [UNSELECT | CLOSE (read-only only)] --> session_parked
//             (logged in, nothing selected, no command outstanding);
//             the owner then calls repoll() (STATUS of every folder again: one round trip
//             when nothing changed), park_idle() (IDLE as below) or end_parked() (LOGOUT)
//             or, with options.idle and IDLE offered (RFC 2177; scan_session_idle.cpp):
//   [SELECT/EXAMINE first folder] --> IDLE --'+'--> idle_started
//        idling: EXISTS / EXPUNGE / VANISHED / FETCH --> idle_activity
//        stop_idle(rescan | poll | refresh | logout) --> DONE --tagged OK--> every folder
//        again (rescan: the watched one opened; poll: STATUS first) | IDLE again | LOGOUT
//
// Any BYE, unparseable input or failing command ends in scan_failed with a classified error.
//
// Server-side actions (issue 6: rules' move / delete / mark_read, scan = unread's \Seen) run
// on the selected folder between batches, in the order queued, each as its own commands:
//   mark_read  UID STORE +FLAGS.SILENT (\Seen)
//   delete     UID STORE +FLAGS.SILENT (\Deleted), then UID EXPUNGE (UIDPLUS) of those UIDs
//   move       UID MOVE (MOVE), else UID COPY + UID STORE +FLAGS.SILENT (\Deleted) +
//              UID EXPUNGE (UIDPLUS); a NO [TRYCREATE] to MOVE/COPY -> CREATE, then once again
// Without UIDPLUS the messages are left flagged \Deleted and the action reports it: a plain
// EXPUNGE would also remove whatever the user had flagged \Deleted. A refused action is an
// action_done{ok = false} (mark_seen's: a session_warning), never a scan failure.
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
// RFC 2177 asks clients to re-issue IDLE at least every 29 minutes; the owner's timer calls
// stop_idle(idle_stop::refresh) after this long in IDLE.
inline constexpr std::uint32_t idle_refresh_after_s = 25 * 60;
enum class idle_stop { rescan, refresh, logout, poll };
enum class auth_method { password, xoauth2 };
// structure: headers + BODYSTRUCTURE, then only the text parts (attachment bytes never
// cross the network; message_fetched::raw is a synthetic message with stub attachments).
// whole_message: the message itself (BODY.PEEK[], capped at max_message_bytes).
enum class fetch_strategy { structure, whole_message };
// The structure strategy's first UID FETCH items (before the optional extensions' items); the
// bench's raw baseline sends the same request (bench/harness/raw_client.cpp, --mode structure).
inline constexpr std::string_view structure_fetch_items =
    "UID FLAGS INTERNALDATE RFC822.SIZE BODYSTRUCTURE BODY.PEEK[HEADER]";
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
  // structure only. false = the header path: nothing configured reads message text, so the
  // batch ends after the headers + BODYSTRUCTURE FETCH (text parts arrive as empty stubs;
  // attachments are listed from the structure). Only a message whose header and structure
  // disagree is still fetched whole (capped), as the structure cannot describe it.
  bool fetch_text = true;
  bool read_write = false;   // SELECT (not EXAMINE) for queue_action(); unread_only implies it
  // RFC 2971 ID sent (pipelined before the login) when offered: client name and version
  // only, never anything about the user or the host.
  bool send_id = true;
  std::string client_version = "1";
  // After the scan, IDLE in the first folder instead of LOGOUT (when IDLE is offered).
  bool idle = false;
  // After the scan, stay logged in (session_parked) instead of LOGOUT (or IDLE): the owner
  // decides what comes next (kept sessions, docs/imap.md).
  bool park = false;
  // COMPRESS DEFLATE (RFC 4978) after login when offered: saves bandwidth on slow links,
  // costs CPU on both sides (so off unless asked for).
  bool compress = false;
};
enum class action_kind { mark_read, move, remove };   // remove = the rules' "delete"
struct action_request {
  std::uint64_t id = 0;                 // the owner's, echoed in action_done
  action_kind kind = action_kind::mark_read;
  std::vector<std::uint32_t> uids;      // of the current folder
  std::string target;                   // move: the destination folder (UTF-8)
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
// The folder was not opened: STATUS (or LIST-STATUS) shows the checkpoint's UIDVALIDITY, no UID
// at or above UIDNEXT. A moved HIGHESTMODSEQ (flag changes, expunges) changes nothing: no
// folder_complete, the checkpoint keeps the value of the last time the folder was opened.
struct folder_unchanged { std::string folder; std::uint32_t uidvalidity; std::uint32_t uidnext;
                          std::uint32_t messages; };
// The server's answer to ID: field/value pairs as sent (e.g. name=Dovecot).
struct server_identified { std::vector<std::pair<std::string, std::string>> fields; };
struct idle_started { std::string folder; };
// COMPRESS DEFLATE accepted: from now on the owner deflates every write_bytes and inflates
// every server byte (imap::deflate_stream) — beginning with take_compressed_rest().
struct start_compress {};
// Something changed in the idling folder: new messages (exists = the new count), an
// expunge, VANISHED, or a FETCH (flag change) of message `number` (sequence number).
struct idle_activity { enum class kind { exists, expunge, vanished, fetch } what;
                       std::string folder; std::uint32_t number; };
// options.park: the scan is over, the session stays logged in with no command outstanding.
struct session_parked {};
struct scan_complete {};               // LOGOUT was written; owner closes after sending it
struct scan_failed { error err; };
// Something did not work but the scan goes on (e.g. UID STORE \Seen refused).
struct session_warning { std::string folder; std::string detail; };
// The outcome of one queue_action(). ok = carried out; else detail says what the server
// answered (or what was left undone, e.g. not expunged for lack of UIDPLUS).
struct action_done { std::uint64_t id; action_kind kind; std::string folder; std::string target;
                     std::vector<std::uint32_t> uids; bool ok; std::string detail; };
using session_output = std::variant<write_bytes, start_tls, folder_opened, message_fetched,
  batch_complete, folder_complete, scan_complete, scan_failed, session_warning, action_done,
  folder_unchanged, server_identified, idle_started, idle_activity, start_compress, session_parked>;

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
  // failure; a call at any other time, or without unread_only / read_write, is a warning
  // and ignored. It is queue_action() with id 0 (consecutive calls share one STORE).
  void mark_seen(std::vector<std::uint32_t> uids);
  // A server-side action on messages of the current folder, with mark_seen()'s timing rules
  // (it is the same queue); needs read_write or unread_only. Its result is an action_done.
  void queue_action(action_request a);
  // Fairness (the owner's connection slice is used up): the next resume() sends LOGOUT
  // (after any pending \Seen STORE) instead of the next batch or folder; scan_complete
  // follows as usual. The rest is left for the next scan, from the durable checkpoints.
  // ended_early(): that happened (false when the scan had nothing left anyway).
  void finish_early();
  bool ended_early() const;
  std::optional<session_output> poll();   // next output; nullopt = need bytes / waiting resume
  bool awaiting_resume() const; bool finished() const;
  // LOGIN / AUTHENTICATE is out and not answered: servers delay a refusal on purpose
  // (dovecot's auth_failure_delay), so that silence says nothing about the server's speed.
  bool authenticating() const;
  // While idling (after idle_started): DONE, then scan every folder again from the checkpoints
  // this session reached (rescan), IDLE again (refresh: the 29-minute rule), or LOGOUT.
  // Ignored in any other state.
  void stop_idle(idle_stop how);
  bool idling() const;
  // After session_parked (ignored in any other state): check every folder again from the
  // checkpoints this session reached; IDLE in the first folder (false: IDLE not offered,
  // the session stays parked); LOGOUT (scan_complete follows).
  void repoll();
  bool park_idle();
  void end_parked();
  bool parked() const;
  // Server bytes that followed the COMPRESS OK in the same on_bytes() call: already
  // compressed, so the owner inflates them (after start_compress) and feeds them back.
  std::string take_compressed_rest();
  const std::vector<std::string>& capabilities() const;

 private:
  enum class phase { greeting, capability, starttls, tls_handshake, authenticate, enable, list,
                     select, date_probe, search, fetch, await_resume, actions, done,
                     status, idle_select, idle_wait, idling, idle_done, compress, parked };
  enum class cmd_kind { capability, starttls, login, authenticate, enable, list, select,
                        date_probe, search_all, search_large, fetch, fetch_parts, action, logout,
                        id, status, idle_select, idle, compress, unselect,
                        discarded_search };  // a speculative search not needed after all
  enum class action_step { store_seen, store_deleted, move, copy, create, expunge };
  struct running_action {
    action_request req;
    std::vector<action_step> steps;
    std::size_t next = 0;
    bool created = false;        // CREATE after TRYCREATE was tried
    std::string note;            // something left undone (no UIDPLUS)
  };
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
  std::string search_criteria(bool resume, bool by_date) const;
  void send_search(const std::string& criteria);
  void speculate_search();
  void drop_speculation();
  void searched();
  void window_decided();
  void date_probe_answered(bool ok);
  bool before_window(std::int64_t internaldate) const;
  void next_batch();
  void finish_folder();
  void after_batch();                          // next batch or folder_complete
  void start_next_action();
  void send_action_step();
  void action_answered(const status_response& s);
  void finish_action(bool ok, std::string detail);
  void logout();
  void end_early();
  void fail(error_kind kind, std::string detail, std::uint32_t retry_after_s = 0);
  void fail_protocol(std::string_view what);
  bool fail_if_throttled(const status_response& s);
  void fail_login(const status_response& s);
  const folder_checkpoint* checkpoint() const;
  // scan_session_ext.cpp: ID, the STATUS / LIST-STATUS shortcut, MESSAGELIMIT, IDLE.
  void send_id();
  bool handle_ext(response& r);
  bool handle_ext_tagged(cmd_kind kind, const status_response& s);
  std::string list_command_return();
  bool check_unchanged();
  void send_statuses();
  void status_answered(const status_response& s);
  bool emit_if_unchanged(const status_data& st);
  std::size_t fetch_batch_size() const;
  bool apply_fetch_limit();
  void after_last_folder();
  void start_idle();
  void restart_folders(bool first_changed);
  void park();
  void idle_select_answered(const status_response& s);
  void idle_answered(const status_response& s);
  bool start_compress_if_offered();
  void compress_answered(const status_response& s);

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
  std::deque<action_request> actions_;     // queue_action()/mark_seen() waiting for resume()
  std::optional<running_action> running_;
  std::string mailbox_id_;
  std::uint32_t highest_uid_ = 0;          // highest UID covered in this folder
  // First scan with days_back: INTERNALDATE of message 1 (the oldest by arrival). When it is
  // inside the window the folder is searched ALL (no per-message date lookups on the server)
  // and the odd older message is left out here instead (before_window()).
  std::optional<std::int64_t> probe_date_;
  bool window_on_client_ = false;
  // The search folder_selected() is about to ask for goes out behind the EXAMINE, saving a
  // round trip per folder (docs/imap.md, "Pipelining"): resume = UID n:* from the checkpoint
  // (void if UIDVALIDITY changed); all = the first scan without days_back; all_in_window =
  // the first scan with days_back (ESEARCH only: the answer is a compact set), whose date
  // question is then settled by the folder's size or a date probe behind the search.
  enum class speculation { none, resume, all, all_in_window };
  speculation spec_ = speculation::none;
  bool probe_behind_search_ = false;       // all_in_window: the date probe is on its way
  bool probe_answered_ = false;
  // scan_session_ext.cpp state.
  std::map<std::string, status_data> listed_status_;  // LIST-STATUS answers by wire name
  // STATUS answers by folder index (nullopt: refused, open the folder); the indices of the
  // pipelined STATUS commands still waiting for their tagged response, in command order.
  std::map<std::size_t, std::optional<status_data>> statuses_;
  std::deque<std::size_t> status_queue_;
  bool fetch_limit_hit_ = false;           // a UID FETCH of this batch ended OK [LIMIT]
  std::uint32_t message_limit_ = 0;        // MESSAGELIMIT=n (RFC 9738), lowered by OK [LIMIT]
  bool status_done_ = false;               // the current folder was checked: open it
  idle_stop idle_stop_ = idle_stop::logout;
  bool list_status_sent_ = false;          // the LIST carried RETURN (STATUS ...)
  bool compress_asked_ = false;
  bool compress_switch_ = false;           // COMPRESS OK handled: the rest of the input is deflated
  std::string compressed_rest_;
  bool finish_early_ = false;              // finish_early(): LOGOUT at the next resume()
  bool ended_early_ = false;               // ... and something was left for the next scan
  // A folder is selected (SELECT / EXAMINE sent): a parked session leaves it first, as a
  // server answers STATUS of the selected folder from its view (stale until a NOOP).
  bool selected_ = false;
};

} // namespace mscan::imap
