#pragma once
// The operator's configuration (TOML, see shared spec INTERFACE.md) as plain values.
// Loading validates every key and reports the first problem as one line naming the file,
// the line, the table and the key — a broken config never starts a half-configured engine.
#include "common/expected.hpp"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace mscan::core {

enum class security_mode { tls, starttls, none };
enum class auth_kind { password, xoauth2 };
enum class scan_mode { all, unread };
enum class mail_protocol { imap, pop3 };  // [[mailbox]] type; IMAP is the default and the advice

// auto: message text is downloaded only when a rule reads it (core::text_needed_by);
// always: every message's text parts, whatever the rules.
enum class fetch_text_mode { automatic, always };

struct engine_config {
  std::filesystem::path data_dir = "data";
  std::filesystem::path log_dir = "logs";
  bool info_logging = false;
  bool warning_logging = true;
  // Day boundary (file name and midnight rotation) and line times of the daily logs: "local"
  // (the machine's zone, as before), "UTC" or an IANA zone name ("Europe/Berlin").
  std::string log_timezone = "local";
  std::uint32_t log_retention_days = 30;  // older MailScanner_*.log are deleted; 0 = keep all
  std::uint32_t poll_interval_s = 60;
  std::uint32_t max_connections = 64;
  std::uint32_t max_connections_per_host = 16;
  std::uint32_t days_back = 14;
  std::uint32_t notify_after_failures = 10;
  std::uint32_t batch_size = 100;          // messages per UID FETCH batch
  std::uint32_t max_inflight_batches = 2;  // per mailbox: credit between mailbox and writer
  // Engine-wide: fetched MiB not yet durable, all mailboxes together (0 = no such bound; the
  // per-mailbox credit still holds). Past it, mailboxes fetch nothing more until the writer
  // catches up: memory stays flat however slow the disk (actors/inflight_budget.hpp).
  std::uint32_t max_inflight_mb = 64;
  // Fairness: after this many batches or seconds on one lease, a mailbox that others wait
  // for (same host, or every connection in use) logs out at the next batch boundary and
  // queues again behind them.
  std::uint32_t slice_batches = 10;
  std::uint32_t slice_seconds = 30;
  std::uint32_t connect_timeout_s = 20;
  std::uint32_t command_timeout_s = 60;
  // Slow-mailbox lane: a mailbox whose server takes longer than this to start answering a
  // command is "slow" and, while healthy mailboxes of its host wait, may hold at most
  // max(1, max_connections_per_host / 4) of the host's connections. 1 s: several times the
  // tens to hundreds of ms real servers need to start a reply (even a SELECT of a big
  // Exchange folder), while every unknown slow mailbox holds a healthy one's slot for about
  // this long before it is found out. 0 = no lane.
  std::uint32_t slow_response_ms = 1000;
  std::uint32_t matchers = 0;              // 0 = one per core
  double max_logins_per_second_per_host = 0;  // 0 = unlimited; new connections per host
  std::uint32_t max_backoff_s = 3600;      // cap of the failure back-off
  // Kept-open sessions (docs/imap.md "Kept sessions"): after a pass, up to this many
  // mailboxes keep their logged-in connection (and lease) while nobody waits for a slot, so
  // that their next poll needs no LOGIN. 0 = off: an idle connection holds a server slot the
  // operator has to allow for (many providers cap connections per user).
  std::uint32_t keep_sessions = 0;
  // A kept session of a server that offers IDLE waits in IDLE on its first folder: new mail
  // starts a pass at once (needs keep_sessions > 0).
  bool idle = false;
  // Writes stop (reported as disk_full, nothing lost) while the data_dir's file system has
  // less free space than this: RocksDB itself must never run into ENOSPC.
  std::uint64_t min_free_disk_mb = 64;
  // Testing/benchmark knob: every group commit first sleeps this long (a slow disk).
  std::uint32_t write_delay_ms = 0;
  // Group commits (each one fsyncs the WAL) start at most this often: batches arriving
  // meanwhile share the next one. 0 = commit whenever the writer is free. An idle writer
  // commits at once, so this only adds latency when commits follow each other closely.
  std::uint32_t commit_interval_ms = 2;
  // Network threads. They also run the protocol sessions (server answers are parsed there,
  // the next command sent from there), so a machine with many cores that scans many busy
  // mailboxes at once may want more than one. Read at start-up (a reload does not change it).
  std::uint32_t io_threads = 1;
  bool strip_subaddress = false;
  std::vector<std::string> internal_domains;  // the tenant's own: never an account link
  // Free-mail domains (never an account link by domain). Empty = the shipped list
  // (core::default_freemail_domains()); set = replaces it.
  std::vector<std::string> freemail_domains;
  // The marker above which a reply's new text is (ticket comments); empty = the parser's.
  std::string reply_marker;
  fetch_text_mode fetch_text = fetch_text_mode::automatic;
  std::filesystem::path mailboxes_file;
  std::filesystem::path directory_file;
  // The key that opens sealed secrets (refresh tokens, client secrets): 64 hex digits in this
  // file, or else in this environment variable (core/secret_box.hpp).
  std::filesystem::path secrets_key_file;
  std::string secrets_key_env;
};

enum class oauth_grant { client_credentials, refresh_token };

// [[oauth_credential]]: one OAuth2 client (service principal or authorised user) that many
// mailboxes reference by name; one token actor per credential refreshes its access token.
struct oauth_credential_config {
  std::string name;
  std::string provider;             // "" | office365 | gmail (fills token_url and scope)
  std::string tenant;               // office365: the directory (tenant) id or domain
  std::string token_url;            // https://... (http only to loopback)
  oauth_grant grant = oauth_grant::client_credentials;
  std::string client_id;
  // Resolved from client_secret_env / client_secret_file; may be sealed (msk1:...) until
  // resolve_oauth_secrets() opens it. Never printed.
  std::string client_secret;
  std::string secret_problem;       // why client_secret is missing (e.g. env var not set)
  std::string scope;
  std::filesystem::path refresh_token_file;  // sealed token file (`mailscan oauth store-token`)
  std::filesystem::path ca_file;    // extra trust anchor for the token endpoint
  bool verify_certificate = true;
  std::uint32_t refresh_margin_s = 300;  // refresh this long before the token expires
  std::uint32_t timeout_s = 20;          // per token request
};

struct mailbox_config {
  std::string user;
  std::string address;
  mail_protocol type = mail_protocol::imap;
  std::string host;
  std::uint16_t port = 993;  // pop3: 995 (tls) / 110
  security_mode security = security_mode::tls;
  bool verify_certificate = true;
  bool compress = false;  // COMPRESS=DEFLATE when the server offers it (slow links)
  std::filesystem::path ca_file;
  auth_kind auth = auth_kind::password;
  std::string username;
  // The resolved secret (password or token). Never printed: see redacted().
  std::string secret;
  // Where the secret should have come from when it could not be resolved (e.g. "environment
  // variable ALICE_PW is not set"); empty when the secret is present.
  std::string secret_problem;
  std::vector<std::string> folders;  // empty = every selectable folder ("*")
  scan_mode scan = scan_mode::all;
  bool disable_mail_scan = false;
  bool scan_emails = true;
  // auth = xoauth2 with tokens from this [[oauth_credential]] (the XOAUTH2 user is `username`,
  // by default the mailbox address: shared mailboxes log in with the authorised identity's token).
  std::string oauth_credential;
  std::string provider;                  // "" | office365 | gmail (core/provider_presets.hpp)
  std::uint32_t throttle_backoff_s = 60;  // minimum pause after a "throttled" answer
  // Provider download quota (Gmail: 2,500 MB a day per account); 0 = none. Once a mailbox has
  // downloaded this much in a UTC day its passes stop as `throttled` until the next day.
  std::uint32_t max_download_mb_per_day = 0;

  // "Not Set" in diagnostics: nothing to connect to or nothing to log in with.
  bool is_set() const {
    return !host.empty() && !username.empty() && (!secret.empty() || !oauth_credential.empty());
  }
};

// [service]: the opt-in status API and dashboard, and the notification webhook.
struct service_config {
  std::string listen;         // "127.0.0.1:8080"; empty = no status service
  std::string token_env;      // environment variable holding the bearer token (required with listen)
  std::string token;          // resolved from token_env; never printed
  bool allow_remote = false;  // listen on a non-loopback address (refused otherwise)
  std::string webhook_url;    // empty = no webhook (notifications are still recorded)
  std::string webhook_token_env;  // optional bearer token for the webhook
  std::string webhook_token;      // resolved; never printed
  std::filesystem::path webhook_ca_file;
  std::string notify_email;   // notifications also go to this address through [smtp]; "" = not
};

// [smtp]: outgoing mail — ticket comments to customers and operator notifications. Messages
// wait in the store's outbox (storage/outbox) until the server took them.
struct smtp_config {
  std::string host;            // empty = no [smtp] (nothing is sent)
  std::uint16_t port = 587;
  security_mode security = security_mode::starttls;  // tls = implicit TLS (465)
  bool verify_certificate = true;
  std::filesystem::path ca_file;
  auth_kind auth = auth_kind::password;  // no username = no AUTH
  std::string username;
  std::string secret;          // resolved password or token; never printed
  std::string secret_problem;  // why it could not be resolved; empty when present
  // The sender. Must be the address tickets are received on (a mailbox a
  // create_or_update_ticket rule scans): the customer's reply goes there.
  std::string from_address, from_name;
  std::string helo_name = "localhost";
  // Ticket comment templates. Tags: $ticket_no$ (required in the subject), $comment$ (the new
  // comment), $comments$ (the conversation so far), $reply_above$ (the marker line: what the
  // customer writes above it becomes the next comment), $subject$, $status$, $assignee$,
  // $priority$, $contact$, $from_name$.
  std::string subject_template = "[$ticket_no$] $subject$";
  std::string body_template = "$reply_above$\n\n$comment$\n\n-- \n$from_name$\n\n$comments$\n";
  std::uint32_t max_attempts = 8;      // then the message is failed (kept, listed by `outbox`)
  std::uint32_t retry_backoff_s = 60;  // before attempt n+1: backoff * 2^(n-1), capped at 6 h
  std::uint32_t timeout_s = 30;        // connect and per-reply idle timeout

  bool enabled() const { return !host.empty(); }
};

// [cluster]: `mailscan coordinator` / `mailscan node` (docs/cluster.md).
struct cluster_config {
  std::string secret_env;            // environment variable holding the join secret (required
                                     // by `coordinator`; the node reads the variable it names)
  std::uint32_t heartbeat_ms = 1000;     // a node's heartbeat period
  std::uint32_t node_timeout_ms = 5000;  // no heartbeat for this long: the node is dead
  std::uint32_t min_nodes = 1;  // no lease is handed out before this many nodes joined (so
                                // the first node to join does not start every mailbox)
};

struct account_config {
  std::string name;
  std::vector<std::string> domains;
  // true: mail from a subdomain (eu.acme.example) links to the account owning acme.example.
  bool parent_domains = false;
};

// [[item_pattern]]: what a reference of an item kind looks like (regex over one subject token,
// RE2 syntax); a token matching it that names no known item is an alert, not dropped.
struct item_pattern_config {
  std::string kind;
  std::string regex;
};

struct contact_config {
  std::string email;
  std::string name;
  std::string account;
};

struct item_config {
  std::string kind;
  std::string reference;
};

struct condition_config {
  // Either a leaf (field/op/value) or a group (any/all of children).
  std::string field, op, value;
  std::string group;  // "" for a leaf, else "any" or "all"
  std::vector<condition_config> children;
};

struct action_config {
  std::string type;
  std::string folder, status, assignee, priority, ticket_regex;
  std::string ticket_prefix = "TT";  // created tickets are numbered prefix + 1, 2, ... (store-wide)
};

struct rule_config {
  std::string name;
  bool active = true;
  std::vector<std::string> users;
  std::vector<std::string> folders;
  condition_config root;  // group "all" or "any" holding the conditions
  std::vector<action_config> actions;
};

struct config {
  std::filesystem::path file;  // the config file itself (absolute)
  engine_config engine;
  service_config service;
  smtp_config smtp;
  cluster_config cluster;
  std::vector<mailbox_config> mailboxes;
  std::vector<account_config> accounts;
  std::vector<contact_config> contacts;
  std::vector<item_config> items;
  std::vector<item_pattern_config> item_patterns;
  std::vector<rule_config> rules;
  std::vector<oauth_credential_config> oauth_credentials;

  const mailbox_config* find_mailbox(std::string_view user) const;
  const oauth_credential_config* find_oauth_credential(std::string_view name) const;
};

struct config_error {
  std::string message;  // one line: "FILE:LINE: [[mailbox]] #2 (alice): key 'port': ..."
};

// Reads and validates FILE. Relative paths inside it resolve against its directory.
expected<config, config_error> load_config(const std::filesystem::path& file);
// Same, from text (tests); `origin` names the source in messages and anchors relative paths.
expected<config, config_error> parse_config(std::string_view text,
                                            const std::filesystem::path& origin);

std::string_view to_string(security_mode);
// The tags a ticket comment template may use (smtp_config), without the dollar signs.
const std::vector<std::string>& smtp_template_tags();
std::string_view to_string(scan_mode);
std::string_view to_string(mail_protocol);

} // namespace mscan::core
