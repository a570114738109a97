#pragma once
// A deliberately small, blocking IMAP client for integration tests: it knows lines, tags and
// literals, nothing else. Every operation has a deadline (Asio's io_context::run_for), so a
// silent server fails the test instead of hanging it. Errors are values (text for the test
// log); secrets are never part of them. Not thread-safe: one client per thread.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/expected.hpp"

namespace mscan::test {

struct tls_options {
  std::string ca_file;                 // trust anchor (PEM)
  std::string host_name = "localhost"; // verified against the certificate; also SNI
};

class imap_test_client {
 public:
  using lines = std::vector<std::string>;
  using error = std::string;

  // Plain TCP to 127.0.0.1:port; reads the greeting.
  static expected<std::unique_ptr<imap_test_client>, error> connect_plain(
      std::uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Implicit TLS (IMAPS), certificate verified against tls.ca_file and tls.host_name.
  static expected<std::unique_ptr<imap_test_client>, error> connect_tls(
      std::uint16_t port, const tls_options& tls,
      std::chrono::milliseconds timeout = std::chrono::seconds(5));

  ~imap_test_client();
  imap_test_client(const imap_test_client&) = delete;
  imap_test_client& operator=(const imap_test_client&) = delete;

  const std::string& greeting() const;
  // Sends "<tag> <command>\r\n" (tags are generated: a1, a2, ...; one line, so no client
  // literals: APPEND needs LITERAL+ inline or another client) and returns every response
  // line up to and including the tagged one. Literals are kept inline ("{5}\r\nhello").
  expected<lines, error> command(std::string_view command);
  // The tagged line of the last command ("a3 OK ...").
  const std::string& last_status() const;
  // STARTTLS + handshake with verification.
  expected<void, error> starttls(const tls_options& tls);
  bool is_tls() const;
  // Reads one more response line (e.g. untagged data after IDLE). Literals kept inline.
  expected<std::string, error> read_response();

 private:
  struct impl;
  explicit imap_test_client(std::unique_ptr<impl>);
  std::unique_ptr<impl> impl_;
};

// "* STATUS INBOX (MESSAGES 3 UNSEEN 1)" -> value of item (3 for "MESSAGES"), -1 if absent.
long long status_item(const imap_test_client::lines& response, std::string_view item);
// Number from "* <n> EXISTS" in an EXAMINE/SELECT response, -1 if absent.
long long exists_count(const imap_test_client::lines& response);

}  // namespace mscan::test
