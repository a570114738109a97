#pragma once
// `mailscan diagnose` and `mailscan test-mailbox USER` (shapes: INTERFACE.md) and
// `mailscan force-sync USER`. The probe itself is the engine's (engine_mode::probe: connect,
// TLS, login, open the configured folders, LOGOUT, within the connection limits); this file
// classifies, explains and renders. The probe is a parameter so rendering and exit codes are
// testable without a server.
#include "actors/engine.hpp"
#include "core/config.hpp"

#include <nlohmann/json.hpp>

#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace mscan::apps {

struct diagnosis {
  std::string user{};
  std::string result{};     // "OK" | "Error" | "Not Set"
  std::string reason{};     // reason code; empty = null (OK, Not Set)
  std::string detail{};     // secrets redacted
  std::string next_step{};  // what the operator should do ("" when OK)
  // The conversation summary test-mailbox shows.
  std::string host{}, protocol{}, security{}, auth{}, username{};
  std::uint16_t port = 0;
  std::vector<std::string> capabilities{};
  std::vector<actors::folder_info> folders{};
  std::vector<std::pair<std::string, std::string>> server_id{};  // the server's ID answer
};

// A mailbox with no host or no credentials: why, and what to set.
diagnosis not_set(const core::mailbox_config& m);
// The engine's probe result for a configured mailbox.
diagnosis from_pass(const core::mailbox_config& m, const actors::pass_result& p);

// {"mailboxes": [{"user", "result", "reason", "detail", "next_step"}]}; with `full`, each
// entry also has host, port, security, auth, username, capabilities, folders
// [{"name", "messages"}] and server_id ({field: value} from RFC 2971 ID, {} when not offered)
// (test-mailbox).
nlohmann::json diagnoses_json(const std::vector<diagnosis>& ds, bool full);
// One line per mailbox (and its next step), then a summary line.
void print_diagnoses(std::ostream& os, const std::vector<diagnosis>& ds);
// test-mailbox: the whole summary for one mailbox.
void print_mailbox_detail(std::ostream& os, const diagnosis& d);
// 0 when every result is OK or Not Set, 3 when any is Error.
int diagnose_exit_code(const std::vector<diagnosis>& ds);

// A live one-line bar ("\r[#####-----] 5/10 tested, 1 error") for a terminal, or one plain
// line per finished mailbox otherwise. Thread-safe (the engine reports from its thread).
class progress_reporter {
 public:
  progress_reporter(std::ostream& os, bool tty, std::size_t total);
  void finished(const std::string& user, bool ok, std::size_t done);
  void done();  // clears the bar
 private:
  std::ostream& os_;
  bool tty_;
  std::size_t total_, errors_ = 0;
  bool drawn_ = false;
};

using probe_fn = std::function<expected<actors::engine_report, std::string>(
    const core::config&, const actors::engine_options&)>;

// Probes every mailbox of `cfg` (Not Set ones are not contacted; disabled ones are tested
// too: diagnostics are about reachability). Results in config order.
expected<std::vector<diagnosis>, std::string> diagnose_all(const core::config& cfg,
                                                           const probe_fn& probe,
                                                           progress_reporter* progress);

// "mailscan: WHAT: WHY" on stderr (the one error line of INTERFACE.md); returns `code`.
int error_line(std::string_view what, std::string_view why, int code);

// The commands; probe defaults to actors::run_engine. Return the process exit code.
int run_diagnose(const std::string& config_file, bool json, const probe_fn& probe = {});
int run_test_mailbox(const std::string& config_file, const std::string& user, bool json,
                     const probe_fn& probe = {});
int run_force_sync(const std::string& config_file, const std::string& user);

} // namespace mscan::apps
