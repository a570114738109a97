#pragma once
// Test driver: runs one sans-I/O imap::scan_session over a real net::connection on a
// net::io_runtime and blocks the calling (test) thread until the scan completed, failed, or the
// driver's own deadline passed. What the mailbox actor does, minus CAF and storage:
//
//   transport callbacks (io thread) --> session.on_bytes / on_tls_established / on_eof
//   session.poll() --> write_bytes: conn.write | start_tls: conn.start_tls
//                      batch_complete: resume() at once | scan_complete: graceful close
//                      scan_failed / transport failure: close, record the classified error
//
// The test thread waits on a condition variable (no sleeps); everything else runs on the io
// thread under one mutex. The state is shared with the callbacks, so a late callback after
// run_scan() returned touches nothing freed.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "protocols/imap/deflate_stream.hpp"
#include "protocols/imap/scan_session.hpp"
#include "protocols/net/tls_transport.hpp"

namespace mscan::test {

struct scan_outcome {
  bool complete = false;            // scan_complete seen (LOGOUT written)
  bool deadline_passed = false;     // the driver gave up: neither complete nor failed in time
  std::optional<imap::error> error; // classified failure (session or transport)
  std::vector<imap::folder_opened> opened;
  std::vector<imap::message_fetched> messages;  // raw kept unless keep_raw = false
  std::vector<std::size_t> raw_sizes;           // bytes of each message's raw, kept either way
  std::vector<imap::batch_complete> batches;
  std::vector<imap::folder_complete> folders;
  std::vector<std::string> capabilities;        // the session's last known capabilities
  std::size_t bytes_received = 0;          // as received (compressed after COMPRESS)
  bool compressed = false;                  // COMPRESS DEFLATE was negotiated
  std::chrono::milliseconds elapsed{0};
};

struct scan_driver_options {
  std::chrono::milliseconds deadline{20000};
  bool keep_raw = true;  // false: message_fetched.raw is dropped (its size is in raw_sizes)
  // Every other output (ID, unchanged folders, IDLE events), on the io thread with the
  // session's lock held: the hook may call the session (e.g. stop_idle) but must not block.
  std::function<void(imap::scan_session&, const imap::session_output&)> on_other{};
};

// Maps a transport failure to the reason codes operators see (as the mailbox actor does);
// closed_by_peer is left to the session (on_eof tells mid-response from a plain close).
inline imap::error_kind error_kind_of(net::failure_kind k) {
  switch (k) {
    case net::failure_kind::dns_failure: return imap::error_kind::dns_failure;
    case net::failure_kind::connection_refused: return imap::error_kind::connection_refused;
    case net::failure_kind::timeout: return imap::error_kind::timeout;
    case net::failure_kind::tls_handshake_failed: return imap::error_kind::tls_handshake_failed;
    case net::failure_kind::certificate_invalid: return imap::error_kind::certificate_invalid;
    case net::failure_kind::closed_by_peer: return imap::error_kind::server_bye;
    case net::failure_kind::io_error: return imap::error_kind::protocol_error;
  }
  return imap::error_kind::protocol_error;
}

namespace detail {

struct scan_run {
  explicit scan_run(imap::session_options o, bool keep) : session(std::move(o)), keep_raw(keep) {}
  std::function<void(imap::scan_session&, const imap::session_output&)> on_other;
  std::unique_ptr<imap::deflate_stream> deflate;  // after start_compress (COMPRESS=DEFLATE)

  // Server bytes, inflated first once COMPRESS is on.
  void receive(std::string_view bytes) {
    if (!deflate) {
      session.on_bytes(bytes);
      return;
    }
    if (!deflate->inflate(bytes, [&](std::string_view plain) { session.on_bytes(plain); })) {
      out.error = imap::error{imap::error_kind::protocol_error, deflate->error()};
      conn->close(false);
      finish();
    }
  }
  std::mutex mtx;
  std::condition_variable cv;
  imap::scan_session session;
  std::shared_ptr<net::connection> conn;
  scan_outcome out;
  bool keep_raw;
  bool done = false;

  void finish() {
    done = true;
    cv.notify_all();
  }

  // Carries out what the session asks for. Called with mtx held, on the io thread.
  void pump() {
    while (!done) {
      auto o = session.poll();
      if (!o)
        return;
      if (auto* w = std::get_if<imap::write_bytes>(&*o)) {
        conn->write(deflate ? deflate->deflate(w->data) : std::move(w->data));
      } else if (std::holds_alternative<imap::start_compress>(*o)) {
        deflate = std::make_unique<imap::deflate_stream>();
        if (auto rest = session.take_compressed_rest(); !rest.empty()) receive(rest);
        out.compressed = true;
      } else if (std::holds_alternative<imap::start_tls>(*o)) {
        conn->start_tls();
      } else if (auto* f = std::get_if<imap::folder_opened>(&*o)) {
        out.opened.push_back(std::move(*f));
      } else if (auto* m = std::get_if<imap::message_fetched>(&*o)) {
        out.raw_sizes.push_back(m->raw.size());
        if (!keep_raw) {
          m->raw.clear();
          m->raw.shrink_to_fit();
        }
        out.messages.push_back(std::move(*m));
      } else if (auto* b = std::get_if<imap::batch_complete>(&*o)) {
        out.batches.push_back(std::move(*b));
        session.resume();
      } else if (auto* fc = std::get_if<imap::folder_complete>(&*o)) {
        out.folders.push_back(std::move(*fc));
      } else if (std::holds_alternative<imap::scan_complete>(*o)) {
        out.complete = true;
        out.capabilities = session.capabilities();
        conn->close(true);
        finish();
      } else if (auto* e = std::get_if<imap::scan_failed>(&*o)) {
        out.error = std::move(e->err);
        out.capabilities = session.capabilities();
        conn->close(false);
        finish();
      } else if (on_other) {
        on_other(session, *o);
      }
    }
  }
};

}  // namespace detail

// Runs one scan. `eo.idle_timeout_ms` is the greeting/command timeout (0 = none: then only the
// driver deadline ends a silent server).
inline scan_outcome run_scan(net::io_runtime& rt, net::endpoint_options eo, imap::session_options so,
                             scan_driver_options dopt = {}) {
  auto run = std::make_shared<detail::scan_run>(std::move(so), dopt.keep_raw);
  run->on_other = std::move(dopt.on_other);
  const auto t0 = std::chrono::steady_clock::now();
  std::weak_ptr<detail::scan_run> weak = run;
  net::connection_callbacks cbs;
  cbs.on_connected = [] {};
  cbs.on_data = [weak](std::string bytes) {
    auto r = weak.lock();
    if (!r)
      return;
    std::lock_guard lock{r->mtx};
    if (r->done)
      return;
    r->out.bytes_received += bytes.size();
    r->receive(bytes);
    r->pump();
  };
  cbs.on_tls_ready = [weak] {
    auto r = weak.lock();
    if (!r)
      return;
    std::lock_guard lock{r->mtx};
    if (r->done)
      return;
    r->session.on_tls_established();
    r->pump();
  };
  cbs.on_failure = [weak](net::failure f) {
    auto r = weak.lock();
    if (!r)
      return;
    std::lock_guard lock{r->mtx};
    if (r->done)
      return;
    if (f.kind == net::failure_kind::closed_by_peer) {
      // The protocol tells what an early close means (after BYE, mid-literal, ...).
      r->session.on_eof();
      r->pump();
      if (r->done)
        return;
    }
    r->out.error = imap::error{error_kind_of(f.kind), std::move(f.detail)};
    r->out.capabilities = r->session.capabilities();
    r->finish();
  };
  {
    std::lock_guard lock{run->mtx};
    run->conn = net::connection::create(rt, std::move(eo), std::move(cbs));
    run->conn->start();
  }
  std::unique_lock lock{run->mtx};
  if (!run->cv.wait_until(lock, t0 + dopt.deadline, [&] { return run->done; })) {
    run->out.deadline_passed = true;
    run->done = true;
    run->conn->close(false);
  }
  run->out.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  run->conn.reset();
  return std::move(run->out);
}

}  // namespace mscan::test
