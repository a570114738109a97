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

struct engine_config {
  std::filesystem::path data_dir = "data";
  std::filesystem::path log_dir = "logs";
  bool info_logging = false;
  bool warning_logging = true;
  std::uint32_t poll_interval_s = 60;
  std::uint32_t max_connections = 64;
  std::uint32_t max_connections_per_host = 16;
  std::uint32_t days_back = 14;
  std::uint32_t notify_after_failures = 10;
  std::uint32_t batch_size = 100;          // messages per UID FETCH batch
  std::uint32_t max_inflight_batches = 2;  // per mailbox: credit between mailbox and writer
  std::uint32_t connect_timeout_s = 20;
  std::uint32_t command_timeout_s = 60;
  std::uint32_t matchers = 0;              // 0 = one per core
  double max_logins_per_second_per_host = 0;  // 0 = unlimited; new connections per host
  std::uint32_t max_backoff_s = 3600;      // cap of the failure back-off
  // Writes stop (reported as disk_full, nothing lost) while the data_dir's file system has
  // less free space than this: RocksDB itself must never run into ENOSPC.
  std::uint64_t min_free_disk_mb = 64;
  // Testing/benchmark knob: every group commit first sleeps this long (a slow disk).
  std::uint32_t write_delay_ms = 0;
  bool strip_subaddress = false;
  std::vector<std::string> internal_domains;  // the tenant's own: never an account link
  // Free-mail domains (never an account link by domain). Empty = the shipped list
  // (core::default_freemail_domains()); set = replaces it.
  std::vector<std::string> freemail_domains;
  // The marker above which a reply's new text is (ticket comments); empty = the parser's.
  std::string reply_marker;
  std::filesystem::path mailboxes_file;
  std::filesystem::path directory_file;
};

struct mailbox_config {
  std::string user;
  std::string address;
  std::string host;
  std::uint16_t port = 993;
  security_mode security = security_mode::tls;
  bool verify_certificate = true;
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

  // "Not Set" in diagnostics: nothing to connect to or nothing to log in with.
  bool is_set() const { return !host.empty() && !username.empty() && !secret.empty(); }
};

// [service]: the opt-in status API and dashboard, and the notification webhook.
struct service_config {
  std::string listen;         // "127.0.0.1:8080"; empty = no status service
  std::string token_env;      // environment variable holding the bearer token (required with listen)
  std::string token;          // resolved from token_env; never printed
  std::string webhook_url;    // empty = no webhook (notifications are still recorded)
  std::string webhook_token_env;  // optional bearer token for the webhook
  std::string webhook_token;      // resolved; never printed
  std::filesystem::path webhook_ca_file;
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
  cluster_config cluster;
  std::vector<mailbox_config> mailboxes;
  std::vector<account_config> accounts;
  std::vector<contact_config> contacts;
  std::vector<item_config> items;
  std::vector<item_pattern_config> item_patterns;
  std::vector<rule_config> rules;

  const mailbox_config* find_mailbox(std::string_view user) const;
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
std::string_view to_string(scan_mode);

} // namespace mscan::core
