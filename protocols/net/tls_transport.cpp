#include "protocols/net/tls_transport.hpp"

#include "protocols/net/tls_context.hpp"

#include <utility>  // before Asio: Boost 1.74 + g++ 12 under C++20 (TOOLCHAIN.md)

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <fmt/format.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <array>
#include <chrono>
#include <deque>
#include <map>
#include <mutex>

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

namespace mscan::net {

std::string_view to_string(failure_kind k) {
  switch (k) {
    case failure_kind::dns_failure: return "dns_failure";
    case failure_kind::connection_refused: return "connection_refused";
    case failure_kind::timeout: return "timeout";
    case failure_kind::tls_handshake_failed: return "tls_handshake_failed";
    case failure_kind::certificate_invalid: return "certificate_invalid";
    case failure_kind::closed_by_peer: return "closed_by_peer";
    case failure_kind::io_error: return "io_error";
  }
  return "io_error";
}

std::string_view reason_code(failure_kind k) {
  if (k == failure_kind::closed_by_peer) return "server_bye";
  if (k == failure_kind::io_error) return "protocol_error";
  return to_string(k);
}

struct io_runtime::impl {
  asio::io_context ctx;
  asio::executor_work_guard<asio::io_context::executor_type> guard{ctx.get_executor()};
  std::vector<std::thread> threads;
  std::mutex mtx;
  struct tls_entry { std::shared_ptr<ssl::context> ctx; bool trusted = false; };
  std::map<std::pair<bool, std::string>, tls_entry> tls_contexts;

  // TLS contexts are costly (the system trust store is parsed once per context): share one
  // per (verify, ca_file) across every connection. Every connection's stream needs one, even
  // a plain one that never upgrades, so the trust store is only parsed by trust_for(), at the
  // first handshake: a plaintext-only run never pays for it.
  std::shared_ptr<ssl::context> context_for(bool verify, const std::string& ca_file, std::string& err);
  void trust_for(const ssl::context& c);
};

void add_system_trust(ssl::context& c) {
  boost::system::error_code ec;
  c.set_default_verify_paths(ec);
}

std::shared_ptr<ssl::context> make_client_tls_context(bool verify, const std::string& ca_file, std::string& err,
                                                      bool system_trust) {
  auto c = std::make_shared<ssl::context>(ssl::context::tls_client);
  boost::system::error_code ec;
  c->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                 ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  // The no_tlsv1* options are deprecated in OpenSSL 3; the minimum version is what holds.
  if (SSL_CTX_set_min_proto_version(c->native_handle(), TLS1_2_VERSION) != 1) {
    err = "cannot restrict TLS to version 1.2 or newer";
    return nullptr;
  }
  if (system_trust)
    add_system_trust(*c);
  if (!ca_file.empty()) {
    c->load_verify_file(ca_file, ec);
    if (ec) {
      err = fmt::format("cannot load ca_file {}: {}", ca_file, ec.message());
      return nullptr;
    }
  }
  c->set_verify_mode(verify ? ssl::verify_peer : ssl::verify_none);
  return c;
}

std::shared_ptr<ssl::context> io_runtime::impl::context_for(bool verify, const std::string& ca_file,
                                                                 std::string& err) {
  std::lock_guard lock{mtx};
  auto key = std::make_pair(verify, ca_file);
  if (auto it = tls_contexts.find(key); it != tls_contexts.end())
    return it->second.ctx;
  auto c = make_client_tls_context(verify, ca_file, err, false);
  if (!c)
    return nullptr;
  tls_contexts.emplace(key, tls_entry{c, false});
  return c;
}

void io_runtime::impl::trust_for(const ssl::context& c) {
  std::lock_guard lock{mtx};
  for (auto& [key, e] : tls_contexts)
    if (e.ctx.get() == &c && !e.trusted) {
      add_system_trust(*e.ctx);
      e.trusted = true;
    }
}

io_runtime::io_runtime(std::size_t threads) : impl_(std::make_unique<impl>()) {
  for (std::size_t i = 0; i < std::max<std::size_t>(1, threads); ++i)
    impl_->threads.emplace_back([this] { impl_->ctx.run(); });
}

io_runtime::~io_runtime() {
  impl_->guard.reset();
  impl_->ctx.stop();
  for (auto& t : impl_->threads)
    t.join();
}

namespace {

bool is_ip_literal(const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

class connection_impl final : public connection, public std::enable_shared_from_this<connection_impl> {
 public:
  connection_impl(io_runtime& rt, endpoint_options opts, connection_callbacks cbs)
    : rt_(rt),
      strand_(asio::make_strand(rt.get().ctx)),
      resolver_(strand_),
      timer_(strand_),
      idle_timer_(strand_),
      retry_timer_(strand_),
      quiet_timer_(strand_),
      opts_(std::move(opts)),
      cbs_(std::move(cbs)) {}

  void start() override {
    asio::post(strand_, [self = shared_from_this()] { self->do_start(); });
  }

  void write(std::string bytes) override {
    asio::post(strand_, [self = shared_from_this(), b = std::move(bytes)]() mutable {
      if (self->closed_ || self->closing_)
        return;
      self->out_.push_back(std::move(b));
      if (self->out_.size() == 1 && !self->handshaking_)
        self->do_write();
    });
  }

  void start_tls() override {
    asio::post(strand_, [self = shared_from_this()] { self->do_handshake(true); });
  }

  void set_idle_timeout(std::uint32_t ms) override {
    asio::post(strand_, [self = shared_from_this(), ms] {
      self->opts_.idle_timeout_ms = ms;
      self->touch();
      self->arm_idle_timer();
    });
  }

  void close(bool graceful) override {
    asio::post(strand_, [self = shared_from_this(), graceful] {
      if (self->closed_ || self->closing_)
        return;
      if (!graceful || !self->established_ || self->handshaking_)
        return self->shutdown();
      self->begin_close();
    });
  }

 private:
  void do_start() {
    touch();
    arm_quiet_timer();
    std::string err;
    ctx_ = rt_.get().context_for(opts_.verify_certificate, opts_.ca_file, err);
    if (!ctx_)
      return fail({failure_kind::tls_handshake_failed, err});
    stream_ = std::make_unique<ssl::stream<tcp::socket>>(tcp::socket{strand_}, *ctx_);
    timer_.expires_after(std::chrono::milliseconds(opts_.connect_timeout_ms));
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || self->closed_ || self->established_)
        return;
      self->fail({failure_kind::timeout,
                  fmt::format("no connection to {}:{} within {} ms", self->opts_.host, self->opts_.port,
                              self->opts_.connect_timeout_ms)});
    });
    // An address needs no lookup: Asio resolves on a thread of its own, and the hop there
    // and back costs two thread wake-ups per connection (measured: ~1.5 of ~38 per
    // 1-message mailbox scan).
    boost::system::error_code ec;
    if (auto addr = asio::ip::make_address(opts_.host, ec); !ec) {
      const tcp::endpoint ep{addr, opts_.port};
      return on_resolved({}, tcp::resolver::results_type::create(ep, opts_.host, std::to_string(opts_.port)));
    }
    resolver_.async_resolve(opts_.host, std::to_string(opts_.port),
                            [self = shared_from_this()](boost::system::error_code ec, tcp::resolver::results_type r) {
                              self->on_resolved(ec, std::move(r));
                            });
  }

  void on_resolved(boost::system::error_code ec, tcp::resolver::results_type results) {
    if (closed_)
      return;
    if (ec)
      return fail({failure_kind::dns_failure, fmt::format("cannot resolve {}: {}", opts_.host, ec.message())});
    asio::async_connect(stream_->next_layer(), results,
                        [self = shared_from_this()](boost::system::error_code ec, const tcp::endpoint&) {
                          self->on_connect(ec);
                        });
  }

  void on_connect(boost::system::error_code ec) {
    if (closed_)
      return;
    if (ec) {
      auto kind = ec == asio::error::connection_refused ? failure_kind::connection_refused
                  : ec == asio::error::timed_out       ? failure_kind::timeout
                                                       : failure_kind::io_error;
      return fail({kind, fmt::format("connect to {}:{}: {}", opts_.host, opts_.port, ec.message())});
    }
    stream_->next_layer().set_option(tcp::no_delay(true), ec);
    if (opts_.implicit_tls)
      return do_handshake(false);
    established();
  }

  void do_handshake(bool upgrade) {
    if (closed_)
      return;
    handshaking_ = true;
    if (reading_) {
      // The pending plain read must not swallow the server's first TLS bytes.
      boost::system::error_code ignored;
      stream_->next_layer().cancel(ignored);
    }
    rt_.get().trust_for(*ctx_);
    auto* ssl_handle = stream_->native_handle();
    if (!is_ip_literal(opts_.host))
      SSL_set_tlsext_host_name(ssl_handle, opts_.host.c_str());
    if (opts_.verify_certificate) {
      auto check_name = ssl::host_name_verification(opts_.host);
      // `this`, not shared_from_this(): the stream owns the callback, and a shared pointer in
      // it would keep the connection alive forever (a cycle). It only runs inside the
      // handshake, whose completion handler holds the connection.
      stream_->set_verify_callback([self = this, check_name](bool preverified, ssl::verify_context& vc) mutable {
        auto* store = vc.native_handle();
        int err = X509_STORE_CTX_get_error(store);
        if (!preverified && err != X509_V_OK && self->verify_error_.empty())
          self->verify_error_ = X509_verify_cert_error_string(err);
        bool ok = check_name(preverified, vc);
        if (preverified && !ok && self->verify_error_.empty())
          self->verify_error_ = fmt::format("certificate does not match host name {}", self->opts_.host);
        return ok;
      });
    }
    if (upgrade) {
      timer_.expires_after(std::chrono::milliseconds(opts_.connect_timeout_ms));
      timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
        if (ec || self->closed_ || !self->handshaking_)
          return;
        self->fail({failure_kind::timeout, "TLS handshake timed out"});
      });
    }
    stream_->async_handshake(ssl::stream_base::client,
                             [self = shared_from_this(), upgrade](boost::system::error_code ec) {
                               self->on_handshake(ec, upgrade);
                             });
  }

  void on_handshake(boost::system::error_code ec, bool upgrade) {
    if (closed_)
      return;
    handshaking_ = false;
    if (ec) {
      if (!verify_error_.empty())
        return fail({failure_kind::certificate_invalid,
                     fmt::format("certificate of {} rejected: {}", opts_.host, verify_error_)});
      return fail({failure_kind::tls_handshake_failed,
                   fmt::format("TLS handshake with {}:{} failed: {}", opts_.host, opts_.port, ec.message())});
    }
    tls_ = true;
    if (!upgrade)
      return established();
    touch();
    timer_.cancel();
    if (cbs_.on_tls_ready)
      cbs_.on_tls_ready();
    if (!out_.empty())
      do_write();
    if (!reading_)
      do_read();
  }

  void established() {
    established_ = true;
    timer_.cancel();
    touch();
    arm_idle_timer();
    if (cbs_.on_connected)
      cbs_.on_connected();
    do_read();
  }

  void touch() {
    last_activity_ = std::chrono::steady_clock::now();
    if (std::exchange(quiet_reported_, false))
      arm_quiet_timer();  // a new quiet spell can be reported
  }

  // Sleeps until last_activity_ + quiet_ms; traffic meanwhile (touch) only moves the
  // deadline it checks when it wakes. Reports once per quiet spell.
  void arm_quiet_timer() {
    if (closed_ || closing_ || opts_.quiet_ms == 0)
      return;
    quiet_timer_.expires_at(last_activity_ + std::chrono::milliseconds(opts_.quiet_ms));
    quiet_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || self->closed_ || self->closing_)
        return;
      if (std::chrono::steady_clock::now() - self->last_activity_ < std::chrono::milliseconds(self->opts_.quiet_ms))
        return self->arm_quiet_timer();
      self->quiet_reported_ = true;
      if (self->cbs_.on_quiet)
        self->cbs_.on_quiet();
    });
  }

  // One timer per connection, re-armed only when it fires (not on every read): it sleeps
  // until last_activity_ + idle and checks whether anything happened meanwhile.
  void arm_idle_timer() {
    const auto gen = ++idle_generation_;  // a re-arm (new limit) makes older waits stale
    if (closed_ || closing_ || !established_ || opts_.idle_timeout_ms == 0) {
      idle_timer_.cancel();
      return;
    }
    idle_timer_.expires_at(last_activity_ + std::chrono::milliseconds(opts_.idle_timeout_ms));
    idle_timer_.async_wait([self = shared_from_this(), gen](boost::system::error_code ec) {
      if (ec || gen != self->idle_generation_ || self->closed_ || self->closing_ ||
          self->opts_.idle_timeout_ms == 0)
        return;
      const auto limit = std::chrono::milliseconds(self->opts_.idle_timeout_ms);
      // A STARTTLS handshake has its own bound (connect_timeout_ms).
      if (self->handshaking_ || std::chrono::steady_clock::now() - self->last_activity_ < limit)
        return self->arm_idle_timer();
      self->fail({failure_kind::timeout, fmt::format("no data from {}:{} for {} ms", self->opts_.host,
                                                     self->opts_.port, self->opts_.idle_timeout_ms)});
    });
  }

  // Graceful close: flush what is queued (the last write is typically LOGOUT), then say
  // goodbye at the TLS or TCP level. Callbacks are dropped now: the owner is done.
  void begin_close() {
    closing_ = true;
    cbs_ = {};
    idle_timer_.cancel();
    quiet_timer_.cancel();
    timer_.expires_after(std::chrono::milliseconds(opts_.close_timeout_ms));
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec)
        self->shutdown();
    });
    if (out_.empty())
      say_goodbye();
    // else on_write() calls say_goodbye() once the queue is empty.
  }

  void say_goodbye() {
    if (closed_ || tls_shutdown_started_)
      return;
    boost::system::error_code ec;
    if (!tls_) {
      // FIN, then drain until the peer's EOF (on_read), so the server reads all we sent.
      stream_->next_layer().shutdown(tcp::socket::shutdown_send, ec);
      if (ec)
        return shutdown();
      if (!reading_)
        do_read();
      return;
    }
    if (reading_) {
      // ssl::stream allows one read at a time, and the shutdown reads the peer's
      // close_notify: stop the pending read first; on_read() comes back here. A cancel
      // that lands while the TLS read is between two socket reads (e.g. just after a
      // session ticket arrived) finds nothing to cancel and the read goes on: try again
      // shortly, until on_read() comes (bounded by close_timeout_ms).
      stream_->next_layer().cancel(ec);
      retry_timer_.expires_after(std::chrono::milliseconds(5));
      retry_timer_.async_wait([self = shared_from_this()](boost::system::error_code tec) {
        if (!tec && self->reading_)
          self->say_goodbye();
      });
      return;
    }
    retry_timer_.cancel();
    tls_shutdown_started_ = true;
    stream_->async_shutdown([self = shared_from_this()](boost::system::error_code) { self->shutdown(); });
  }

  void do_read() {
    if (closed_ || handshaking_) {
      reading_ = false;
      return;
    }
    reading_ = true;
    auto handler = [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
      self->on_read(ec, n);
    };
    if (tls_)
      stream_->async_read_some(asio::buffer(buf_), handler);
    else
      stream_->next_layer().async_read_some(asio::buffer(buf_), handler);
  }

  void on_read(boost::system::error_code ec, std::size_t n) {
    reading_ = false;
    if (closed_ || (ec == asio::error::operation_aborted && handshaking_))
      return;
    if (closing_) {
      // What the server says after LOGOUT (BYE, OK) is not wanted any more. TLS: whatever
      // ended this read (our cancel, data that raced it, EOF), the shutdown goes next.
      if (tls_)
        return say_goodbye();
      if (ec)
        return shutdown();
      return do_read();  // plain: drain until the peer's EOF answers our FIN
    }
    if (n > 0)
      touch();
    if (n > 0 && cbs_.on_data)
      cbs_.on_data(std::string(buf_.data(), n));
    if (closed_)
      return;
    if (ec) {
      if (ec == asio::error::eof || ec == asio::error::connection_reset || ec == ssl::error::stream_truncated)
        return fail({failure_kind::closed_by_peer, "the server closed the connection"});
      return fail({failure_kind::io_error, fmt::format("read: {}", ec.message())});
    }
    // A STARTTLS upgrade pauses reading until the handshake is done (the server's first TLS
    // bytes must go to the handshake, not to the protocol).
    if (!handshaking_)
      do_read();
  }

  void do_write() {
    if (closed_ || out_.empty())
      return;
    touch();  // a new command starts a new wait for its answer
    auto handler = [self = shared_from_this()](boost::system::error_code ec, std::size_t) { self->on_write(ec); };
    if (tls_)
      asio::async_write(*stream_, asio::buffer(out_.front()), handler);
    else
      asio::async_write(stream_->next_layer(), asio::buffer(out_.front()), handler);
  }

  void on_write(boost::system::error_code ec) {
    if (closed_)
      return;
    if (ec)
      return fail({failure_kind::io_error, fmt::format("write: {}", ec.message())});
    out_.pop_front();
    if (!out_.empty())
      return do_write();
    if (closing_)
      say_goodbye();
  }

  void fail(failure f) {
    if (closed_)
      return;
    auto cb = cbs_.on_failure;
    shutdown();
    if (cb)
      cb(std::move(f));
  }

  void shutdown() {
    if (closed_)
      return;
    closed_ = true;
    timer_.cancel();
    idle_timer_.cancel();
    retry_timer_.cancel();
    quiet_timer_.cancel();
    resolver_.cancel();
    if (stream_) {
      boost::system::error_code ec;
      stream_->next_layer().shutdown(tcp::socket::shutdown_both, ec);
      stream_->next_layer().close(ec);
    }
    out_.clear();
    cbs_ = {};  // drop references (e.g. to actors) held by the callbacks
  }

  io_runtime& rt_;
  asio::strand<asio::io_context::executor_type> strand_;
  tcp::resolver resolver_;
  asio::steady_timer timer_;       // connect / STARTTLS handshake / graceful close bound
  asio::steady_timer idle_timer_;
  asio::steady_timer retry_timer_;  // graceful close: re-cancel a TLS read that slipped past
  asio::steady_timer quiet_timer_;  // on_quiet (endpoint_options::quiet_ms)
  bool quiet_reported_ = false;     // this quiet spell was reported: re-armed by traffic
  std::chrono::steady_clock::time_point last_activity_{};
  endpoint_options opts_;
  connection_callbacks cbs_;
  std::shared_ptr<ssl::context> ctx_;
  std::unique_ptr<ssl::stream<tcp::socket>> stream_;
  std::deque<std::string> out_;
  std::array<char, 64 * 1024> buf_{};
  std::string verify_error_;
  bool closed_ = false;
  bool established_ = false;
  bool handshaking_ = false;
  bool reading_ = false;
  bool tls_ = false;
  bool closing_ = false;
  bool tls_shutdown_started_ = false;
  std::uint64_t idle_generation_ = 0;
};

} // namespace

std::shared_ptr<connection> connection::create(io_runtime& rt, endpoint_options opts, connection_callbacks cbs) {
  return std::make_shared<connection_impl>(rt, std::move(opts), std::move(cbs));
}

} // namespace mscan::net
