#pragma once
// The only code that knows Boost.Asio and OpenSSL: it moves bytes for a protocol state
// machine and knows nothing of IMAP (or SMTP, POP3). Many connections share one io_context
// (a thread or two for every connection the engine holds, never a thread per mailbox).
//
// State diagram of one connection:
//
//   resolving --> connecting --> [tls_handshake] --> open --(start_tls)--> open(tls)
//       |              |               |              |                     |
//       |              |               |              +--close(graceful)----+--> closing
//       |              |               |              |                     |      |
//       +--------------+---------------+--------------+---------------------+------+--> failed / closed
//
// closing: queued writes are flushed (e.g. LOGOUT), then TLS sends close_notify (and waits for
// the peer's, bounded by close_timeout_ms) or plain TCP sends FIN and drains until the peer's
// EOF; then the socket is closed.
//
// TLS: 1.2 or newer only. Certificate chain and host name are verified unless
// verify_certificate is false; SNI is sent for every DNS name (never for an IP literal,
// RFC 6066 3). A rejected certificate fails with certificate_invalid and a detail naming the
// check that failed (OpenSSL's verify error, or the host-name mismatch).
//
// Timeouts (all in this transport, all ending in failure_kind::timeout):
//   connect_timeout_ms  resolve + TCP connect + implicit TLS handshake; also bounds a
//                       STARTTLS handshake on its own.
//   idle_timeout_ms     once open: no byte received for this long fails the connection (the
//                       greeting timeout, and the command timeout of a silent server). Every
//                       received byte and every write restarts it. 0 = off. An owner that stops
//                       asking the server for data on purpose (backpressure, IMAP IDLE) pauses
//                       it with set_idle_timeout(0) and re-arms it with set_idle_timeout(ms).
//                       The mailbox actor keeps its own command_timeout_s (time since the last
//                       received byte, not counted while it awaits resume()): an owner using
//                       both sets idle_timeout_ms to the same value, or leaves it 0.
//   quiet_ms            not a timeout: on_quiet runs once when no byte has gone either way
//                       for this long (from start(), connecting included), and again only
//                       after the next byte and another quiet_ms. A fast exchange never
//                       wakes its owner for a timer; a silent server does, once. 0 = off.
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
// The INTERFACE.md reason code of a transport failure (closed_by_peer -> server_bye,
// io_error -> protocol_error; the others have the same name).
std::string_view reason_code(failure_kind);

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
  std::uint32_t idle_timeout_ms = 0;         // open and nothing received for this long; 0 = off
  std::uint32_t close_timeout_ms = 2000;     // graceful close: flush + close_notify / FIN bound
  std::uint32_t quiet_ms = 0;                // on_quiet after this long without traffic; 0 = off
};

struct connection_callbacks {
  std::function<void()> on_connected;          // TCP (and implicit TLS) ready
  std::function<void(std::string)> on_data;    // bytes from the server, any chunking
  std::function<void()> on_tls_ready;          // after start_tls()
  std::function<void(failure)> on_failure;     // terminal
  std::function<void()> on_quiet;              // quiet_ms without traffic (see above)
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
  // Changes idle_timeout_ms from now on (0 = pause); the idle clock restarts.
  virtual void set_idle_timeout(std::uint32_t ms) = 0;
  // Idempotent; no callback fires afterwards. With `graceful`, queued writes are flushed and
  // the connection is shut down cleanly (TLS close_notify / TCP FIN), bounded by
  // close_timeout_ms; without, the socket is closed at once.
  virtual void close(bool graceful = false) = 0;
};

} // namespace mscan::net
