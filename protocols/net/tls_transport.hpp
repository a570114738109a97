#pragma once
// The only code that knows Boost.Asio and OpenSSL: it moves bytes for a protocol state
// machine and knows nothing of IMAP (or SMTP, POP3). Many connections share one io_context
// (a thread or two for every connection the engine holds, never a thread per mailbox).
//
// State diagram of one connection:
//
//   resolving --> connecting --> [tls_handshake] --> open --(start_tls)--> open(tls)
//       |              |               |              |                     |
//       +--------------+---------------+--------------+---------------------+--> failed / closed
//
// Every callback runs on the io thread; after close() no callback fires.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace mscan::net {

enum class failure_kind {
  dns_failure,
  connection_refused,
  timeout,
  tls_handshake_failed,
  certificate_invalid,
  closed_by_peer,
  io_error,
};

std::string_view to_string(failure_kind);

struct failure {
  failure_kind kind;
  std::string detail;
};

struct endpoint_options {
  std::string host;
  std::uint16_t port = 993;
  bool implicit_tls = true;         // TLS right after connect (port 993)
  bool verify_certificate = true;   // chain + host name; off only when configured
  std::string ca_file;              // extra trust anchor (PEM), besides the system store
  std::uint32_t connect_timeout_ms = 20000;  // resolve + connect + TLS handshake
};

struct connection_callbacks {
  std::function<void()> on_connected;          // TCP (and implicit TLS) ready
  std::function<void(std::string)> on_data;    // bytes from the server, any chunking
  std::function<void()> on_tls_ready;          // after start_tls()
  std::function<void(failure)> on_failure;     // terminal
};

class io_runtime {
 public:
  explicit io_runtime(std::size_t threads = 1);
  ~io_runtime();
  io_runtime(const io_runtime&) = delete;
  io_runtime& operator=(const io_runtime&) = delete;
  struct impl;
  impl& get() { return *impl_; }

 private:
  std::unique_ptr<impl> impl_;
};

class connection {
 public:
  static std::shared_ptr<connection> create(io_runtime& rt, endpoint_options opts,
                                            connection_callbacks cbs);
  virtual ~connection() = default;
  virtual void start() = 0;
  virtual void write(std::string bytes) = 0;
  virtual void start_tls() = 0;
  // Idempotent. Pending writes are flushed first when `graceful`.
  virtual void close(bool graceful = false) = 0;
};

} // namespace mscan::net
