#pragma once
// A private, real Dovecot 2.3 instance for integration tests.
//
// Each fixture owns a unique directory MAILSCAN_BINARY_DIR/test-tmp/dovecot.XXXXXX holding its
// config, CA + server certificate (openssl CLI, EC P-256), passdb, users' Maildirs, log
// and (when the path is short enough for unix sockets) base_dir/state_dir. Dovecot runs in the
// foreground (`dovecot -F -c CONF`) as our child in its own process group; the destructor
// SIGKILLs that group (its id = our child's pid, only this instance) and reaps every member.
// The test process makes itself a child subreaper (PR_SET_CHILD_SUBREAPER) so it can reap
// those stragglers (side effect: any orphaned grandchild of the test process is re-parented
// to it, not to init). PR_SET_PDEATHSIG makes dovecot die with the test process if that
// crashes; it fires when the *thread* that constructed the fixture exits, so construct a
// fixture on a thread that outlives it (the test's own thread).
//
// Mail storage: `maildir:~/Maildir:LAYOUT=fs:UTF-8`, hierarchy separator "/".
//   INBOX      = <home>/Maildir/{cur,new,tmp}
//   "Sent"     = <home>/Maildir/Sent/{cur,new,tmp}
//   "Archive/2024" = <home>/Maildir/Archive/2024/{cur,new,tmp}
//   Folder names are stored on disk in UTF-8 (the wire shows them in modified UTF-7, e.g.
//   "Résumé" is listed as "R&AOk-sum&AOk-"). Names "cur", "new", "tmp" cannot be folders.
// Mail processes run as the system user `mail` (Dovecot refuses mail access as root); seeded
// files are chowned to it. Auth runs as root so the passdb file may stay mode 0600.
// Anvil's auth penalty is off (see dovecot_options::auth_penalty), auth_failure_delay = 0;
// a failed LOGIN still takes ~0.5 s (dovecot flushes delayed failures on a 0.5 s timer).
//
// Readiness: the constructor connects to the plain IMAP (and POP3) port until the greeting
// arrives, then LOGOUTs (QUITs): each start leaves one "Disconnected: Aborted login by
// logging out" line per protocol in the log and no "Connection closed" line.
//
// Counting what the server did (for "a second scan fetched no bodies"):
//   every IMAP session end is logged with `imap_logout_format` as one line
//     "... Disconnected: <reason> mscan_stats in=.. out=.. fetch_hdr_count=.. fetch_hdr_bytes=..
//      fetch_body_count=.. fetch_body_bytes=.. expunged=.. appended=.."
//   (fetch_hdr_count = messages whose header was fetched, fetch_body_count = messages whose
//   body was fetched, Dovecot's own counters), POP3 likewise with top=/retr=/del=.
//   imap_stats() sums those lines; the line is written when the session ends, so wait with
//   wait_for_log("mscan_stats", n) for n finished sessions first. With options.rawlog every
//   IMAP session's raw traffic is also kept (<home>/rawlog/*.in); count_in_rawlog(" FETCH ")
//   counts commands the server received (post-login only: LOGIN itself is never in it).
//
// Errors: the constructor and the helpers below throw std::runtime_error on misuse (unknown
// user, a folder name the layout cannot hold) or I/O failure: in a test, a throw is a failed
// test with a message, which is what we want from a fixture. Helpers may be called from any
// thread (an internal mutex serialises the passdb and seeding).
// Folders exist only once seeded: the fixture creates no Sent/Drafts/Trash of its own.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mscan::test {

struct dovecot_user {
  std::string name, password;
};

struct dovecot_options {
  std::vector<dovecot_user> users = {};
  bool pop3 = false;
  // process_limit of imap/pop3 and client_limit of each login process (scale settings of
  // /work/shared/TOOLCHAIN.md; 2,000 concurrent logged-in sessions measured fine).
  std::size_t max_connections = 4000;
  bool rawlog = false;  // keep raw IMAP traffic per session under <home>/rawlog
  bool compress = false;  // the imap_zlib plugin: COMPRESS=DEFLATE offered after login
  // Dovecot's mail_max_userip_connections: set it low (e.g. 1) to get "NO [LIMIT] ..."
  // on the next LOGIN of the same user from 127.0.0.1 (throttling tests).
  std::size_t max_userip_connections = 10000;
  std::string auth_mechanisms = "plain login";
  // Dovecot's anvil auth penalty (2..15 s delay after failed logins from one IP). Off by
  // default: every test client comes from 127.0.0.1.
  bool auth_penalty = false;
  // Serve dovecot's SASL authentication protocol on a loopback TCP port (auth_port()), so a
  // test mail server (postfix, smtpd_sasl_type = dovecot) authenticates against these users.
  bool sasl_inet = false;
  // XOAUTH2 and OAUTHBEARER through dovecot's `oauth2` passdb, which POSTs each token to this
  // RFC 7662 introspection URL (tests/support/oauth_token_server). A token is accepted for
  // any user in the domain of the identity the introspection names (an app-only token of a
  // tenant opens its shared mailboxes): username_format = %d.
  std::string oauth2_introspection_url = {};
  // Where the fixture directory is created; empty = MAILSCAN_BINARY_DIR/test-tmp.
  std::filesystem::path parent_dir = {};
  // Keep the fixture directory after destruction (also with env MAILSCAN_KEEP_TEST_TMP=1;
  // always kept when the start failed, its path is in the exception text).
  bool keep_dir = false;
};

// Sums of the "mscan_stats" session-end lines (see above).
struct imap_session_stats {
  std::size_t sessions = 0;
  std::uint64_t bytes_in = 0, bytes_out = 0;
  std::uint64_t fetch_hdr_count = 0, fetch_hdr_bytes = 0;
  std::uint64_t fetch_body_count = 0, fetch_body_bytes = 0;
  std::uint64_t expunged = 0, appended = 0;
};

class dovecot_fixture {
 public:
  // Starts; throws std::runtime_error with the dovecot log tail if it cannot start.
  explicit dovecot_fixture(dovecot_options);
  // Stops ONLY its own instance (its own pid and process group), also during unwinding.
  ~dovecot_fixture();
  dovecot_fixture(const dovecot_fixture&) = delete;
  dovecot_fixture& operator=(const dovecot_fixture&) = delete;

  std::uint16_t imap_port() const;   // plain + STARTTLS
  std::uint16_t imaps_port() const;  // implicit TLS
  std::uint16_t pop3_port() const;   // 0 unless options.pop3
  std::uint16_t pop3s_port() const;  // 0 unless options.pop3
  std::uint16_t auth_port() const;   // 0 unless options.sasl_inet
  std::string ca_file() const;        // PEM of the CA that signed the server cert
  std::string wrong_ca_file() const;  // another CA (for certificate_invalid tests)
  std::filesystem::path root() const;
  std::filesystem::path config_file() const;
  int pid() const;  // the dovecot master's pid (our child)

  // Users live in <root>/passdb.dict (dovecot's dict passdb over a file dict, {PLAIN.b64}
  // passwords), not passwd-file: passwd-file is stat()ed at most once per second, the file
  // dict on every lookup (inode compare; we rename a new file in). So a change is seen by
  // the very next LOGIN. Homes come from a static userdb: <root>/home/<user>.
  void add_user(const dovecot_user&);
  void set_password(const std::string& user, const std::string& password);
  void remove_user(const std::string& user);  // later LOGINs fail; mail stays on disk
  // `doveadm kick USER`: the user's live sessions get "* BYE" and are closed. False if
  // the user had no session (or doveadm failed).
  bool kick(const std::string& user);
  // Stops the instance now (as the destructor does): later connections are refused.
  void stop();

  // Seeds a folder ("INBOX", "Sent", "Archive/2024", UTF-8 names) by writing Maildir files
  // directly (tmp/ then rename into new/, or cur/ with ":2,S" when seen); creates the folder.
  // Works while dovecot runs. UIDs follow seeding order. internal_date (IMAP INTERNALDATE,
  // what SEARCH SINCE/BEFORE compare) is the file's mtime: now unless given.
  void seed(const std::string& user, const std::string& folder, std::string_view raw_message,
            bool seen = false,
            std::optional<std::chrono::system_clock::time_point> internal_date = std::nullopt);
  void seed_files(const std::string& user, const std::string& folder,
                  const std::vector<std::filesystem::path>& eml_files);
  // Removes the folder and its index (and its subfolders); recreating it gives a new
  // UIDVALIDITY. "INBOX" removes only the INBOX messages/index, not the other folders.
  void delete_folder(const std::string& user, const std::string& folder);
  std::filesystem::path maildir_path(const std::string& user, const std::string& folder) const;

  std::string log_tail(std::size_t lines = 50) const;  // dovecot log + startup stderr
  std::size_t count_in_log(std::string_view needle) const;  // occurrences in the log
  // Waits (polling the log, bounded) until count_in_log(needle) >= count.
  bool wait_for_log(std::string_view needle, std::size_t count,
                    std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;
  imap_session_stats imap_stats(std::string_view user = {}) const;  // {} = all users
  std::size_t count_in_rawlog(std::string_view needle) const;  // options.rawlog only

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

bool dovecot_available();  // /usr/sbin/dovecot exists
std::vector<std::filesystem::path> corpus_files();  // sorted *.eml in MAILSCAN_CORPUS_DIR

}  // namespace mscan::test
