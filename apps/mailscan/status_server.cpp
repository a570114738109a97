#include "apps/mailscan/status_server.hpp"
#include "common/text.hpp"

#include "apps/mailscan/dashboard_asset.hpp"  // generated from dashboard/index.html
#include "apps/mailscan/diagnose.hpp"
#include "core/mailbox_health.hpp"
#include "storage/store.hpp"

#include <utility>  // before Asio (Boost 1.74 + g++ 12, see TOOLCHAIN.md)

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>
#include <openssl/crypto.h>

#include <atomic>
#include <charconv>
#include <csignal>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>

namespace mscan::apps {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

std::string iso(std::int64_t t) {
  return iso8601_utc(t);
}

bool token_ok(std::string_view authorization, std::string_view token) {
  constexpr std::string_view scheme = "Bearer ";
  if (token.empty() || !authorization.starts_with(scheme))
    return false;
  auto given = authorization.substr(scheme.size());
  return given.size() == token.size() && CRYPTO_memcmp(given.data(), token.data(), token.size()) == 0;
}

std::string url_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      unsigned v = 0;
      auto [p, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
      if (ec == std::errc{} && p == s.data() + i + 3) {
        out.push_back(static_cast<char>(v));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

std::string label_escape(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"')
      out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

http_reply json_reply(int status, const nlohmann::json& j) {
  return {status, "application/json", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)};
}

} // namespace

nlohmann::json notification_json(const storage::notification_record& n) {
  return {{"at", iso(n.at)},
          {"user", n.user},
          {"kind", n.kind},
          {"reason", n.reason.empty() ? nlohmann::json(nullptr) : nlohmann::json(n.reason)},
          {"detail", n.detail},
          {"next_step", n.next_step},
          {"consecutive_failures", n.consecutive_failures},
          {"delivery", n.delivery}};
}

void print_notifications(std::ostream& os, const nlohmann::json& notes) {
  os << (notes.empty() ? "no notifications\n" : "notifications (newest first):\n");
  for (auto& n : notes) {
    auto text = [&](const char* k) {
      return n.contains(k) && n[k].is_string() ? n[k].get<std::string>() : std::string{};
    };
    os << fmt::format("  {} {} {}{}{}  [{}]\n", text("at"), text("user"), text("kind"),
                      text("reason").empty() ? "" : " " + text("reason") + ":",
                      text("detail").empty() ? "" : " " + text("detail"),
                      text("delivery").empty() ? "not delivered" : text("delivery"));
    if (!text("next_step").empty())
      os << fmt::format("    next step: {}\n", text("next_step"));
  }
}

nlohmann::json mailbox_json(const storage::mailbox_state& s) {
  nlohmann::json err = nullptr;
  if (!s.last_error_reason.empty())
    err = {{"reason", s.last_error_reason}, {"detail", s.last_error_detail}};
  return {{"user", s.user},
          {"state", s.state},
          {"last_scanned", s.last_scanned ? nlohmann::json(iso(s.last_scanned)) : nlohmann::json(nullptr)},
          {"consecutive_failures", s.consecutive_failures},
          {"last_error", err},
          {"messages_tracked", s.messages_tracked},
          {"next_step", s.last_error_reason.empty() || s.state == "ok"
                            ? std::string{}
                            : core::next_step(s.last_error_reason, s.last_error_detail)}};
}

std::string prometheus_text(const status_snapshot& s) {
  std::string out;
  std::map<std::string, std::size_t> by_state{{"ok", 0}, {"error", 0}, {"credentials_changed", 0}, {"disabled", 0}};
  std::map<std::string, std::size_t> errors_by_reason;
  for (auto& m : s.mailboxes) {
    ++by_state[m.state];
    if (m.state != "ok" && !m.last_error_reason.empty())
      ++errors_by_reason[m.last_error_reason];
  }
  out += "# HELP mailscan_up 1 while the status service answers.\n# TYPE mailscan_up gauge\nmailscan_up 1\n";
  out += fmt::format("# HELP mailscan_ready 1 when the engine runs with its store open.\n"
                     "# TYPE mailscan_ready gauge\nmailscan_ready {}\n",
                     s.ready ? 1 : 0);
  out += "# HELP mailscan_mailboxes Mailboxes by state.\n# TYPE mailscan_mailboxes gauge\n";
  for (auto& [st, n] : by_state)
    out += fmt::format("mailscan_mailboxes{{state=\"{}\"}} {}\n", label_escape(st), n);
  out += "# HELP mailscan_mailbox_errors Mailboxes currently failing, by reason code.\n"
         "# TYPE mailscan_mailbox_errors gauge\n";
  for (auto& [r, n] : errors_by_reason)
    out += fmt::format("mailscan_mailbox_errors{{reason=\"{}\"}} {}\n", label_escape(r), n);
  out += "# HELP mailscan_consecutive_failures Consecutive failed passes per mailbox.\n"
         "# TYPE mailscan_consecutive_failures gauge\n";
  for (auto& m : s.mailboxes)
    out += fmt::format("mailscan_consecutive_failures{{user=\"{}\"}} {}\n", label_escape(m.user),
                       m.consecutive_failures);
  out += "# HELP mailscan_messages_tracked Messages tracked per mailbox.\n# TYPE mailscan_messages_tracked gauge\n";
  for (auto& m : s.mailboxes)
    out += fmt::format("mailscan_messages_tracked{{user=\"{}\"}} {}\n", label_escape(m.user), m.messages_tracked);
  out += "# HELP mailscan_last_scanned_seconds Unix time of the last successful pass (0 = never).\n"
         "# TYPE mailscan_last_scanned_seconds gauge\n";
  for (auto& m : s.mailboxes)
    out += fmt::format("mailscan_last_scanned_seconds{{user=\"{}\"}} {}\n", label_escape(m.user), m.last_scanned);
  std::string last_name;
  for (auto& x : s.metrics) {
    const auto& family = x.family.empty() ? x.name : x.family;
    if (family != last_name) {
      out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", family, x.help, family, x.type);
      last_name = family;
    }
    std::string labels;
    for (auto& [k, v] : x.labels)
      labels += fmt::format("{}{}=\"{}\"", labels.empty() ? "" : ",", k, label_escape(v));
    out += fmt::format("{}{}{} {}\n", x.name, labels.empty() ? "" : "{", labels.empty() ? labels : labels + "}",
                       x.value);
  }
  return out;
}

std::vector<metric_sample> engine_samples(const actors::engine_stats& s) {
  std::vector<metric_sample> out;
  auto add = [&](std::string name, std::string help, std::string type, double v,
                 std::vector<std::pair<std::string, std::string>> labels = {}, std::string family = {}) {
    out.push_back({std::move(name), std::move(help), std::move(type), std::move(labels), v, std::move(family)});
  };
  add("mailscan_scans_total", "Finished scan passes by result.", "counter", static_cast<double>(s.scans_ok),
      {{"result", "ok"}});
  add("mailscan_scans_total", "", "counter", static_cast<double>(s.scans_failed), {{"result", "error"}});
  for (auto& [reason, n] : s.errors_by_reason)
    add("mailscan_scan_errors_total", "Failed scan passes by reason code.", "counter", static_cast<double>(n),
        {{"reason", reason}});
  add("mailscan_messages_fetched_total", "Messages fetched from servers.", "counter",
      static_cast<double>(s.messages_fetched));
  add("mailscan_messages_new_total", "Messages newly tracked.", "counter", static_cast<double>(s.messages_new));
  add("mailscan_sightings_new_total", "New (user, folder) sightings.", "counter",
      static_cast<double>(s.sightings_new));
  add("mailscan_leases_in_use", "Mail-server connections (leases) in use, all hosts.", "gauge",
      static_cast<double>(s.leases_in_use));
  add("mailscan_leases_max", "max_connections.", "gauge", static_cast<double>(s.max_connections));
  add("mailscan_host_leases_max", "max_connections_per_host.", "gauge",
      static_cast<double>(s.max_connections_per_host));
  for (auto& [host, h] : s.hosts)
    add("mailscan_host_leases_in_use", "Connections (leases) in use per host.", "gauge",
        static_cast<double>(h.in_use), {{"host", host}});
  std::size_t waiting = 0;
  for (auto& [host, h] : s.hosts) {
    waiting += h.waiting;
    add("mailscan_host_queue_depth", "Mailboxes due and waiting for a lease, per host.", "gauge",
        static_cast<double>(h.waiting), {{"host", host}});
  }
  add("mailscan_lease_queue_depth", "Mailboxes due and waiting for a lease, all hosts.", "gauge",
      static_cast<double>(waiting));
  add("mailscan_slow_mailboxes", "Mailboxes whose server answers slowly (slow lane).", "gauge",
      static_cast<double>(s.slow_mailboxes));
  add("mailscan_slow_lane_yields_total", "Leases given back because the host's slow lane was full.", "counter",
      static_cast<double>(s.slow_lane_yields));
  add("mailscan_host_pauses_total", "Hosts paused after a throttling answer (load governor).", "counter",
      static_cast<double>(s.host_pauses));
  add("mailscan_kept_sessions_lost_total", "Kept connections the server broke; the next poll logs in again.",
      "counter", static_cast<double>(s.kept_sessions_lost));
  add("mailscan_writer_queue_depth", "Batches in the latest group commit.", "gauge",
      static_cast<double>(s.writer_pending_batches));
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < s.write_buckets.size(); ++i) {
    cumulative += s.write_buckets[i];
    add("mailscan_write_seconds_bucket", "Group commit (RocksDB write + sync) latency.", "histogram",
        static_cast<double>(cumulative), {{"le", fmt::format("{}", actors::engine_stats::write_bounds[i])}},
        "mailscan_write_seconds");
  }
  add("mailscan_write_seconds_bucket", "", "histogram", static_cast<double>(s.writes), {{"le", "+Inf"}},
      "mailscan_write_seconds");
  add("mailscan_write_seconds_sum", "", "histogram", s.write_seconds_sum, {}, "mailscan_write_seconds");
  add("mailscan_write_seconds_count", "", "histogram", static_cast<double>(s.writes), {}, "mailscan_write_seconds");
  add("mailscan_write_failures_total", "Group commits refused (disk full, I/O error).", "counter",
      static_cast<double>(s.write_failures));
  return out;
}

http_reply handle_request(const status_server_options& o, std::string_view method, std::string_view target,
                          std::string_view authorization) {
  try {
    const auto q = target.find('?');
    auto path = target.substr(0, q);
    const auto query = q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
    const bool post = method == "POST";
    if (method != "GET" && method != "HEAD" && !post)
      return {405, "text/plain", "method not allowed\n"};
    if (path == "/" || path == "/dashboard")
      return {200, "text/html; charset=utf-8", std::string(dashboard_html)};
    if (!token_ok(authorization, o.token))
      return {401, "text/plain", "bearer token required\n"};
    if (post != (path == "/api/diagnose"))  // diagnostics change nothing, but cost logins: POST only
      return {405, "text/plain", "method not allowed\n"};
    if (path == "/api/diagnose") {
      if (!o.diagnose)
        return json_reply(501, {{"error", "diagnostics are not available here"}});
      std::string user;
      for (std::string_view rest = query; !rest.empty();) {
        auto amp = rest.find('&');
        auto kv = rest.substr(0, amp);
        if (kv.starts_with("user="))
          user = url_decode(kv.substr(5));
        rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
      }
      // One probe at a time: a second request is told so instead of holding the other thread.
      if (o.diagnosing->exchange(true))
        return json_reply(409, {{"error", "a diagnosis is already running; try again when it has finished"}});
      struct release {
        std::atomic<bool>& flag;
        ~release() { flag = false; }
      } done{*o.diagnosing};
      auto res = o.diagnose(user);
      if (!res)
        return json_reply(404, {{"error", "no such mailbox"}});
      return json_reply(200, *res);
    }
    if (path == "/healthz" || path == "/health")
      return {200, "text/plain", "ok\n"};
    auto snap = o.snapshot ? o.snapshot() : status_snapshot{};
    if (path == "/readyz" || path == "/ready")
      return snap.ready ? http_reply{200, "text/plain", "ready\n"} : http_reply{503, "text/plain", "not ready\n"};
    if (path == "/metrics")
      return {200, "text/plain; version=0.0.4", prometheus_text(snap)};
    if (path == "/api/mailboxes" || path == "/api/status") {
      auto arr = nlohmann::json::array();
      for (auto& m : snap.mailboxes)
        arr.push_back(mailbox_json(m));
      return json_reply(200, {{"ready", snap.ready}, {"mailboxes", arr}});
    }
    if (path.starts_with("/api/mailboxes/")) {
      const auto user = url_decode(path.substr(15));
      for (auto& m : snap.mailboxes) {
        if (m.user != user)
          continue;
        auto notes = nlohmann::json::array();
        for (auto& n : snap.notifications)
          if (n.user == user)
            notes.push_back(notification_json(n));
        auto log = o.recent_log ? o.recent_log(user) : std::vector<std::string>{};
        return json_reply(200, {{"mailbox", mailbox_json(m)}, {"notifications", notes}, {"log", log}});
      }
      return json_reply(404, {{"error", "no such mailbox"}});
    }
    if (path == "/api/issues") {
      auto arr = nlohmann::json::array();
      for (auto& m : snap.mailboxes) {
        if (m.state != "error" && m.state != "credentials_changed")
          continue;
        arr.push_back({{"kind", "mailbox"},
                       {"user", m.user},
                       {"state", m.state},
                       {"reason", m.last_error_reason},
                       {"detail", m.last_error_detail},
                       {"next_step", core::next_step(m.last_error_reason, m.last_error_detail)},
                       {"consecutive_failures", m.consecutive_failures},
                       {"last_scanned", m.last_scanned ? nlohmann::json(iso(m.last_scanned)) : nlohmann::json(nullptr)}});
      }
      nlohmann::json counts{{"mailbox", arr.size()}};
      for (auto& [kind, n] : snap.findings_by_kind)
        counts[kind] = n;
      for (auto it = snap.findings.rbegin(); it != snap.findings.rend(); ++it)  // newest first
        arr.push_back({{"kind", it->kind},
                       {"user", it->user},
                       {"state", it->kind},
                       {"reason", it->kind},
                       {"detail", it->detail},
                       {"next_step", it->next_step},
                       {"message_id", it->message_id},
                       {"subject", it->subject},
                       {"at", iso(it->at)}});
      return json_reply(200, {{"issues", arr}, {"counts", counts}});
    }
    if (path == "/api/notifications") {
      auto arr = nlohmann::json::array();
      for (auto& n : snap.notifications)
        arr.push_back(notification_json(n));
      return json_reply(200, {{"notifications", arr}});
    }
    return {404, "text/plain", "not found\n"};
  } catch (const std::exception& e) {
    return {500, "text/plain", "internal error\n"};
  }
}

// ---- the server ------------------------------------------------------------------------

struct status_server::impl {
  status_server_options opts;
  // Two threads: a diagnosis on demand blocks one for seconds (logins), the other keeps
  // answering status, metrics and the dashboard. Sessions are coroutines on their own
  // sockets; the handlers share nothing but the thread-safe snapshot.
  asio::io_context ioc{2};
  tcp::acceptor acceptor{ioc};
  std::thread thread, thread2;
  std::uint16_t port = 0;

  asio::awaitable<void> session(tcp::socket sock) {
    beast::tcp_stream stream(std::move(sock));
    beast::flat_buffer buf;
    try {
      for (;;) {
        stream.expires_after(std::chrono::seconds(30));
        http::request_parser<http::string_body> parser;
        parser.header_limit(16 * 1024);
        parser.body_limit(4096);  // no endpoint takes a body; a browser's empty POST is fine
        co_await http::async_read(stream, buf, parser, asio::use_awaitable);
        auto& req = parser.get();
        auto sv = [](boost::beast::string_view v) { return std::string(v.data(), v.size()); };
        auto r = handle_request(opts, sv(req.method_string()), sv(req.target()), sv(req[http::field::authorization]));
        http::response<http::string_body> res;
        res.result(static_cast<unsigned>(r.status));
        res.version(req.version());
        res.set(http::field::server, "mailscan");
        res.set(http::field::content_type, r.content_type);
        res.set(http::field::cache_control, "no-store");
        res.set("X-Content-Type-Options", "nosniff");
        if (r.status == 401)
          res.set(http::field::www_authenticate, "Bearer realm=\"mailscan\"");
        res.keep_alive(req.keep_alive());
        res.body() = req.method() == http::verb::head ? std::string{} : std::move(r.body);
        res.prepare_payload();
        co_await http::async_write(stream, res, asio::use_awaitable);
        if (!res.keep_alive())
          break;
      }
    } catch (const std::exception&) {
      // client went away, timed out or sent garbage: drop the connection
    }
    boost::system::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      boost::system::error_code ec;
      auto sock = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (!acceptor.is_open())
          co_return;
        continue;
      }
      asio::co_spawn(ioc, session(std::move(sock)), asio::detached);
    }
  }
};

status_server::status_server(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
status_server::~status_server() { stop(); }
std::uint16_t status_server::port() const { return impl_->port; }

void status_server::stop() {
  if (!impl_ || !impl_->thread.joinable())
    return;
  asio::post(impl_->ioc, [p = impl_.get()] {
    boost::system::error_code ec;
    p->acceptor.close(ec);
    p->ioc.stop();
  });
  impl_->thread.join();
  impl_->thread2.join();  // a probe in progress ends with its own timeouts
}

expected<std::unique_ptr<status_server>, std::string> status_server::start(status_server_options o) {
  try {
    if (o.token.empty())
      return unexpected{std::string("the status service needs a bearer token ([service] token_env)")};
    const auto colon = o.listen.rfind(':');
    if (colon == std::string::npos)
      return unexpected{fmt::format("listen {}: expected HOST:PORT", o.listen)};
    auto host = o.listen.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
      host = host.substr(1, host.size() - 2);
    unsigned port = 0;
    auto ps = std::string_view(o.listen).substr(colon + 1);
    auto [p, perr] = std::from_chars(ps.data(), ps.data() + ps.size(), port);
    if (perr != std::errc{} || p != ps.data() + ps.size() || port > 65535)
      return unexpected{fmt::format("listen {}: invalid port", o.listen)};
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
    if (ec)
      return unexpected{fmt::format("listen {}: '{}' is not an IP address", o.listen, host)};
    if (!addr.is_loopback() && !o.allow_remote)
      return unexpected{fmt::format("listen {}: not a loopback address; the status service serves other hosts "
                                    "only with [service] allow_remote = true",
                                    o.listen)};
    auto d = std::make_unique<impl>();
    d->opts = std::move(o);
    tcp::endpoint ep{addr, static_cast<std::uint16_t>(port)};
    d->acceptor.open(ep.protocol());
    d->acceptor.set_option(tcp::acceptor::reuse_address(true));
    d->acceptor.bind(ep, ec);
    if (ec)
      return unexpected{fmt::format("listen {}: {}", d->opts.listen, ec.message())};
    d->acceptor.listen();
    d->port = d->acceptor.local_endpoint().port();
    asio::co_spawn(d->ioc, d->accept_loop(), asio::detached);
    auto* raw = d.get();
    auto run = [raw] {
      try {
        raw->ioc.run();
      } catch (const std::exception& e) {
        std::cerr << fmt::format("mailscan: status service: {}\n", e.what());
      }
    };
    d->thread = std::thread(run);
    d->thread2 = std::thread(run);
    return std::unique_ptr<status_server>(new status_server(std::move(d)));
  } catch (const std::exception& e) {
    return unexpected{fmt::format("status service: {}", e.what())};
  }
}

status_snapshot snapshot_from_store(const core::config& cfg, const storage::store* db) {
  status_snapshot s;
  s.ready = db != nullptr;
  for (auto& m : cfg.mailboxes) {
    storage::mailbox_state st;
    if (db)
      if (auto x = db->mailbox_state_of(m.user))
        st = *x;
    st.user = m.user;
    if (m.disable_mail_scan)
      st.state = "disabled";
    s.mailboxes.push_back(std::move(st));
  }
  // Oldest last-scanned first, as `status` shows them: stale mailboxes stand out.
  std::stable_sort(s.mailboxes.begin(), s.mailboxes.end(),
                   [](auto& a, auto& b) { return a.last_scanned < b.last_scanned; });
  if (db)
    s.notifications = db->notifications(200);
  return s;
}

std::vector<std::string> recent_log_lines(const std::filesystem::path& log_dir, const std::string& user,
                                          std::size_t max_lines) {
  std::vector<std::string> out;
  try {
    // The user field as core/event_log.cpp writes it (quoted when it has spaces, quotes or '=').
    std::string field = user;
    if (user.find_first_of(" \"=\t") != std::string::npos) {
      field = "\"";
      for (char c : user) {
        if (c == '"' || c == '\\')
          field += '\\';
        field += (c == '\n' || c == '\r') ? ' ' : c;
      }
      field += "\"";
    }
    const std::string needle = " user=" + field + " ";
    std::vector<std::filesystem::path> files;
    std::error_code ec;
    for (auto& e : std::filesystem::directory_iterator(log_dir, ec)) {
      auto name = e.path().filename().string();
      if (name.starts_with("MailScanner_") && name.ends_with(".log"))
        files.push_back(e.path());
    }
    std::sort(files.rbegin(), files.rend());  // YYYY-MM-DD sorts by date: newest first
    if (files.size() > 2)
      files.resize(2);
    std::vector<std::string> newest_first;
    for (auto& f : files) {
      std::ifstream in(f, std::ios::binary);
      in.seekg(0, std::ios::end);
      const auto size = static_cast<std::streamoff>(in.tellg());
      constexpr std::streamoff cap = 4 << 20;
      in.seekg(size > cap ? size - cap : 0);
      std::vector<std::string> lines;
      for (std::string line; std::getline(in, line);)
        if (line.find(needle) != std::string::npos)
          lines.push_back(std::move(line));
      for (auto it = lines.rbegin(); it != lines.rend() && newest_first.size() < max_lines; ++it)
        newest_first.push_back(std::move(*it));
      if (newest_first.size() >= max_lines)
        break;
    }
    out.assign(newest_first.rbegin(), newest_first.rend());
  } catch (const std::exception&) {
  }
  return out;
}

void add_store_findings(status_snapshot& s, const storage::store& db, std::size_t newest) {
  auto msgs = db.query_messages(storage::message_filter{.user = {}, .contact = {}, .account = {}, .item = {},
                                                        .limit = newest});
  // query_messages is newest first; findings are kept oldest first (as the live engine does).
  for (auto it = msgs.rbegin(); it != msgs.rend(); ++it)
    for (auto& f : actors::findings_of(*it, it->date)) {
      ++s.findings_by_kind[f.kind];
      s.findings.push_back(std::move(f));
    }
  if (s.findings.size() > actors::engine_metrics::max_findings)
    s.findings.erase(s.findings.begin(),
                     s.findings.end() - static_cast<std::ptrdiff_t>(actors::engine_metrics::max_findings));
}

namespace {
// POST /api/diagnose: the `diagnose --json` document for one user (nullopt: unknown) or all.
std::optional<nlohmann::json> diagnose_json(const core::config& cfg, const std::string& user) {
  auto one = cfg;
  if (!user.empty()) {
    auto m = cfg.find_mailbox(user);
    if (!m)
      return std::nullopt;
    one.mailboxes = {*m};
  }
  auto ds = diagnose_all(one, {}, nullptr);
  if (!ds)
    return nlohmann::json{{"error", ds.error()}};
  return diagnoses_json(*ds, false);
}
} // namespace

expected<status_server_options, std::string> service_options(const core::config& cfg, std::string listen) {
  status_server_options o;
  o.listen = std::move(listen);
  o.token = cfg.service.token;
  o.allow_remote = cfg.service.allow_remote;
  if (o.token.empty())
    return unexpected{fmt::format("no bearer token: set [service] token_env and that environment variable{}",
                                  cfg.service.token_env.empty() ? "" : fmt::format(" ({})", cfg.service.token_env))};
  o.recent_log = [log_dir = cfg.engine.log_dir](const std::string& user) { return recent_log_lines(log_dir, user); };
  o.diagnose = [cfg](const std::string& user) { return diagnose_json(cfg, user); };
  return o;
}

expected<std::unique_ptr<status_server>, std::string> start_run_service(const core::config& cfg,
                                                                         actors::engine_options& engine) {
  auto opts = service_options(cfg, cfg.service.listen);
  if (!opts)
    return unexpected{opts.error()};
  // The engine's store handle and the config in force (SIGHUP replaces it), shared with the
  // service's threads.
  struct live_state {
    std::mutex mu;
    std::shared_ptr<storage::store> db;
    std::shared_ptr<const core::config> cfg;
  };
  auto live = std::make_shared<live_state>();
  live->cfg = std::make_shared<const core::config>(cfg);
  auto current_cfg = [live] {
    std::lock_guard lock(live->mu);
    return live->cfg;
  };
  auto metrics = std::make_shared<actors::engine_metrics>();
  engine.metrics = metrics;
  engine.on_store = [live](std::shared_ptr<storage::store> db) {
    std::lock_guard lock(live->mu);
    live->db = std::move(db);
  };
  engine.on_reload = [live](const core::config& next) {
    auto c = std::make_shared<const core::config>(next);
    std::lock_guard lock(live->mu);
    live->cfg = std::move(c);
  };
  opts.value().diagnose = [current_cfg](const std::string& user) { return diagnose_json(*current_cfg(), user); };
  opts.value().snapshot = [live, current_cfg, metrics] {
    std::shared_ptr<storage::store> db;
    {
      std::lock_guard lock(live->mu);
      db = live->db;
    }
    auto snap = snapshot_from_store(*current_cfg(), db.get());
    auto st = metrics->snapshot();
    snap.ready = st.ready && db;
    snap.metrics = engine_samples(st);
    snap.findings = std::move(st.recent_findings);
    snap.findings_by_kind = std::move(st.findings_by_kind);
    return snap;
  };
  const auto host = cfg.service.listen.substr(0, cfg.service.listen.rfind(':'));
  auto srv = status_server::start(std::move(opts.value()));
  if (srv)
    std::cout << fmt::format("listening {}:{}\n", host, srv.value()->port()) << std::flush;
  return srv;
}

int run_serve(const std::string& config_file, const std::string& listen_override) {
  auto cfg = core::load_config(config_file);
  if (!cfg) {
    std::cerr << fmt::format("mailscan: config: {}\n", cfg.error().message);
    return 2;
  }
  auto opts = service_options(*cfg, !listen_override.empty() ? listen_override
                                    : !cfg->service.listen.empty() ? cfg->service.listen
                                                                   : std::string("127.0.0.1:8080"));
  if (!opts) {
    std::cerr << fmt::format("mailscan: serve: {}\n", opts.error());
    return 2;
  }
  auto& o = opts.value();
  const auto host = o.listen.substr(0, o.listen.rfind(':'));
  const core::config snapshot_cfg = *cfg;
  // Findings need a walk over the newest messages: at most one walk per 30 s.
  struct findings_cache {
    std::mutex mu;
    std::chrono::steady_clock::time_point at{};
    status_snapshot value;
  };
  auto cache = std::make_shared<findings_cache>();
  o.snapshot = [&snapshot_cfg, cache] {
    if (!std::filesystem::exists(snapshot_cfg.engine.data_dir / "CURRENT"))
      return snapshot_from_store(snapshot_cfg, nullptr);
    storage::open_options oo;
    oo.create_if_missing = false;
    oo.read_only = true;  // beside a running `mailscan run`, which holds the store read-write
    auto db = storage::store::open(snapshot_cfg.engine.data_dir, oo);
    auto snap = snapshot_from_store(snapshot_cfg, db ? db.value().get() : nullptr);
    if (db) {
      std::lock_guard lock(cache->mu);
      const auto now = std::chrono::steady_clock::now();
      if (cache->at == std::chrono::steady_clock::time_point{} || now - cache->at > std::chrono::seconds(30)) {
        cache->value = {};
        add_store_findings(cache->value, *db.value());
        cache->at = now;
      }
      snap.findings = cache->value.findings;
      snap.findings_by_kind = cache->value.findings_by_kind;
    }
    return snap;
  };
  // SIGINT/SIGTERM are blocked in every thread (the server's inherits the mask) and taken
  // with sigwait: an orderly stop without a polling loop.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  auto srv = status_server::start(std::move(opts.value()));
  if (!srv) {
    std::cerr << fmt::format("mailscan: serve: {}\n", srv.error());
    return 2;
  }
  std::cout << fmt::format("listening {}:{}\n", host, srv.value()->port()) << std::flush;
  int sig = 0;
  sigwait(&set, &sig);
  srv.value()->stop();
  return 0;
}

} // namespace mscan::apps
