#pragma once
// The embedded IMAP4rev1 simulator behind `mailscan simulate` and the benchmarks.
//
// It serves users sim0 … sim{N-1} (password "sim") with M generated messages each. Nothing is
// stored per mailbox: message content is a pure function of (seed, user, uid) (see
// message_generator.hpp) and only users whose flags/folders were changed by a client get a
// small override entry. One io_context thread serves every connection with async
// accept/read/write; responses are produced in bounded chunks.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "common/expected.hpp"

namespace mscan::sim {

// Fraction (0..1) of users that get each fault; which users is decided by the seed.
struct fault_plan {
  double wrong_password = 0;        // LOGIN/AUTHENTICATE always answer NO [AUTHENTICATIONFAILED]
  double disconnect_mid_fetch = 0;  // the socket closes in the middle of the first body literal
  double slow = 0;                  // every response after login is delayed by slow_ms
  double uidvalidity_reset = 0;     // UIDVALIDITY changes on every SELECT/EXAMINE/STATUS
  int slow_ms = 2000;
  // Load governor tests: LOGIN/AUTHENTICATE answer `throttle_answer` (a server shedding load)
  // for this fraction of users, during the first throttle_s seconds after start (0 = always).
  double throttle = 0;
  int throttle_s = 0;
  std::string throttle_answer = "NO [LIMIT] Too many concurrent connections, retry after 5 seconds";
};

struct sim_options {
  std::string host = "127.0.0.1";  // loopback only ("localhost", 127.0.0.0/8, ::1)
  std::uint16_t port = 0;          // 0 = any free port
  std::size_t mailboxes = 10;
  std::size_t messages = 20;
  std::uint64_t seed = 1;
  int latency_ms = 0;  // added before every response
  std::size_t max_connections = 1000;
  std::size_t message_bytes = 4000;
  fault_plan faults;
  std::string report_file;
  // Dates: uid M (the newest) is dated base_time, older uids spread evenly over the ten days
  // before it. 0 = midnight UTC of the day the simulator is constructed, so SINCE windows are
  // stable for a whole day and every message is within the last ~11 days of real time.
  std::int64_t base_time = 0;
  // Serve these files instead of generated mail: every *.eml in the directory (sorted by
  // name, line ends made CRLF). Mailbox i's uid u is file (mix(seed, i) + u - 1) mod files, so
  // a mailbox holds each file once when messages <= files; dates (INTERNALDATE, SEARCH) stay
  // the generated ones. start() fails when the directory has no .eml file.
  std::string eml_dir;
};

struct sim_stats {
  std::size_t peak_connections = 0;
  std::size_t logins = 0;   // successful LOGIN/AUTHENTICATE
  std::size_t refused = 0;  // connections turned away past max_connections
  std::map<std::string, std::size_t> commands;  // by command name; UID FETCH counts as FETCH
  // extensions
  std::size_t connections = 0;  // currently open (not counting refused ones)
  std::size_t accepted = 0;     // total ever accepted (not counting refused ones)
  std::size_t failed_logins = 0;
  std::size_t throttled_logins = 0;  // LOGINs answered with the throttle fault
  std::size_t bytes_sent = 0;
  double cpu_seconds = 0;  // CPU time of the simulator's io thread so far
};

class simulator {
 public:
  explicit simulator(sim_options);
  ~simulator();  // stop()
  simulator(const simulator&) = delete;
  simulator& operator=(const simulator&) = delete;

  // Binds and starts serving on its own io_context thread; returns the bound port, or 0 on
  // failure (non-loopback host, bind error, already started) with last_error() saying why.
  std::uint16_t start();
  // Closes the listener and every connection, then joins the thread. Idempotent.
  void stop();
  sim_stats stats() const;  // thread-safe
  std::string report_json() const;
  std::string last_error() const;
  // The user's INBOX message with this uid exactly as served by BODY[] (for tests and demos).
  std::string message(std::size_t user, std::uint32_t uid) const;
  // Which users carry each fault (deterministic from the seed; for tests and demos).
  bool has_wrong_password(std::size_t user) const;
  bool has_disconnect_mid_fetch(std::size_t user) const;
  bool is_slow(std::size_t user) const;
  bool has_uidvalidity_reset(std::size_t user) const;
  bool is_throttled(std::size_t user) const;  // has the throttle fault (while it lasts)

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// `mailscan simulate`: starts, prints "ready host:port" on stdout, blocks until SIGINT or
// SIGTERM, stops, writes report_json() to report_file (if set) and returns 0; on a start or
// report failure prints "mailscan: simulate: <why>" on stderr and returns 1. It installs its
// own SIGINT/SIGTERM handlers for the duration (restoring the previous ones), so a signal
// delivered to any thread of the process ends the wait.
int run_simulate_command(const sim_options&);

// Parses `--listen` values: "127.0.0.1:143", "[::1]:143", "localhost:0". Only loopback
// addresses are accepted; the error says why not (for "mailscan: simulate: <why>").
mscan::expected<std::pair<std::string, std::uint16_t>, std::string> parse_listen_address(
    std::string_view);

}  // namespace mscan::sim
