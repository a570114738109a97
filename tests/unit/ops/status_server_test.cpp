// The status service: every endpoint, the token requirement, and a real socket round trip.
#include "apps/mailscan/status_server.hpp"

#include <utility>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <catch2/catch.hpp>

using namespace mscan;

namespace {

apps::status_snapshot sample() {
  apps::status_snapshot s;
  s.ready = true;
  storage::mailbox_state ok;
  ok.user = "alice";
  ok.last_scanned = 1'700'000'000;
  ok.messages_tracked = 42;
  storage::mailbox_state bad;
  bad.user = "bob smith";
  bad.state = "error";
  bad.consecutive_failures = 12;
  bad.last_error_reason = "certificate_invalid";
  bad.last_error_detail = "certificate verify failed";
  storage::mailbox_state locked;
  locked.user = "carol";
  locked.state = "credentials_changed";
  locked.last_error_reason = "credentials_changed";
  s.mailboxes = {ok, bad, locked};
  storage::notification_record n;
  n.at = 1'700'000'100;
  n.user = "bob smith";
  n.kind = "failing";
  n.reason = "certificate_invalid";
  s.notifications = {n};
  s.metrics = {{"mailscan_scans_total", "Finished passes.", "counter", {{"result", "ok"}}, 7}};
  return s;
}

apps::status_server_options options() {
  apps::status_server_options o;
  o.token = "t0ken";
  o.snapshot = sample;
  o.recent_log = [](const std::string& user) { return std::vector<std::string>{"line for " + user}; };
  return o;
}

const std::string auth = "Bearer t0ken";

} // namespace

TEST_CASE("status service: every data endpoint needs the bearer token", "[unit][ops]") {
  auto o = options();
  for (auto path : {"/healthz", "/readyz", "/metrics", "/api/mailboxes", "/api/mailboxes/alice", "/api/issues",
                    "/api/notifications"}) {
    CHECK(apps::handle_request(o, "GET", path, "").status == 401);
    CHECK(apps::handle_request(o, "GET", path, "Bearer wrong").status == 401);
    CHECK(apps::handle_request(o, "GET", path, "Bearer t0ken-and-more").status == 401);
    CHECK(apps::handle_request(o, "GET", path, "t0ken").status == 401);
    CHECK(apps::handle_request(o, "GET", path, auth).status == 200);
  }
  auto page = apps::handle_request(o, "GET", "/", "");
  CHECK(page.status == 200);
  CHECK(page.content_type.starts_with("text/html"));
  CHECK(page.body.find("t0ken") == std::string::npos);
  CHECK(apps::handle_request(o, "POST", "/api/issues", auth).status == 405);
  CHECK(apps::handle_request(o, "GET", "/nope", auth).status == 404);
  o.token.clear();  // no token configured: nothing is served
  CHECK(apps::handle_request(o, "GET", "/healthz", "Bearer ").status == 401);
}

TEST_CASE("status service: mailboxes + issues + detail + notifications + readiness", "[unit][ops]") {
  auto o = options();
  auto mb = nlohmann::json::parse(apps::handle_request(o, "GET", "/api/mailboxes", auth).body);
  REQUIRE(mb["mailboxes"].size() == 3);
  auto& a = mb["mailboxes"][0];
  for (auto key : {"user", "state", "last_scanned", "consecutive_failures", "last_error", "messages_tracked"})
    CHECK(a.contains(key));
  CHECK(a["last_scanned"] == "2023-11-14T22:13:20Z");
  CHECK(a["last_error"].is_null());

  auto is = nlohmann::json::parse(apps::handle_request(o, "GET", "/api/issues", auth).body);
  REQUIRE(is["issues"].size() == 2);
  CHECK(is["issues"][0]["user"] == "bob smith");
  CHECK(is["issues"][0]["reason"] == "certificate_invalid");
  CHECK(is["issues"][0]["next_step"].get<std::string>().find("ca_file") != std::string::npos);
  CHECK(is["issues"][1]["state"] == "credentials_changed");
  CHECK(is["issues"][1]["next_step"].get<std::string>().find("force-sync") != std::string::npos);

  auto d = apps::handle_request(o, "GET", "/api/mailboxes/bob%20smith", auth);
  REQUIRE(d.status == 200);
  auto dj = nlohmann::json::parse(d.body);
  CHECK(dj["mailbox"]["consecutive_failures"] == 12);
  CHECK(dj["notifications"].size() == 1);
  CHECK(dj["log"][0] == "line for bob smith");
  CHECK(apps::handle_request(o, "GET", "/api/mailboxes/zed", auth).status == 404);

  auto n = nlohmann::json::parse(apps::handle_request(o, "GET", "/api/notifications", auth).body);
  CHECK(n["notifications"][0]["kind"] == "failing");

  CHECK(apps::handle_request(o, "GET", "/readyz", auth).status == 200);
  o.snapshot = [] { return apps::status_snapshot{}; };
  CHECK(apps::handle_request(o, "GET", "/readyz", auth).status == 503);
}

TEST_CASE("status service: Prometheus metrics text", "[unit][ops]") {
  auto text = apps::prometheus_text(sample());
  CHECK(text.find("mailscan_ready 1\n") != std::string::npos);
  CHECK(text.find("mailscan_mailboxes{state=\"error\"} 1\n") != std::string::npos);
  CHECK(text.find("mailscan_mailboxes{state=\"ok\"} 1\n") != std::string::npos);
  CHECK(text.find("mailscan_mailbox_errors{reason=\"certificate_invalid\"} 1\n") != std::string::npos);
  CHECK(text.find("mailscan_consecutive_failures{user=\"bob smith\"} 12\n") != std::string::npos);
  CHECK(text.find("mailscan_messages_tracked{user=\"alice\"} 42\n") != std::string::npos);
  CHECK(text.find("# TYPE mailscan_scans_total counter\nmailscan_scans_total{result=\"ok\"} 7\n") !=
        std::string::npos);
}

TEST_CASE("status service over a real socket on 127.0.0.1", "[unit][ops]") {
  auto srv = apps::status_server::start(options());
  REQUIRE(srv);
  REQUIRE(srv.value()->port() != 0);
  namespace http = boost::beast::http;
  boost::asio::io_context ioc;
  auto get = [&](const std::string& target, const std::string& authorization) {
    boost::asio::ip::tcp::socket sock(ioc);
    sock.connect({boost::asio::ip::make_address("127.0.0.1"), srv.value()->port()});
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, "127.0.0.1");
    if (!authorization.empty())
      req.set(http::field::authorization, authorization);
    http::write(sock, req);
    boost::beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::read(sock, buf, res);
    return res;
  };
  auto unauth = get("/api/issues", "");
  CHECK(unauth.result_int() == 401);
  CHECK(unauth[http::field::www_authenticate] == "Bearer realm=\"mailscan\"");
  auto ok = get("/api/issues", auth);
  CHECK(ok.result_int() == 200);
  CHECK(ok.body().find("certificate_invalid") != std::string::npos);
  CHECK(get("/", "").body().find("mailscan status") != std::string::npos);
  srv.value()->stop();
  srv.value()->stop();  // idempotent

  CHECK_FALSE(apps::status_server::start({.listen = "127.0.0.1:0"}));             // no token
  CHECK_FALSE(apps::status_server::start({.listen = "nohost", .token = "x"}));     // no port
  CHECK_FALSE(apps::status_server::start({.listen = "example.com:80", .token = "x"}));  // not an IP
}

#include "core/config.hpp"

#include <cstdlib>
#include <fstream>

TEST_CASE("recent log lines of one user from the two newest daily files", "[unit][ops]") {
  std::string tmpl = (std::filesystem::temp_directory_path() / "mscan-ops-log-XXXXXX").string();
  REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
  const std::filesystem::path dir = tmpl;
  std::ofstream(dir / "MailScanner_2026-11-22.log") << "t ERROR event=x user=alice host=h folder=- detail=oldest\n";
  std::ofstream(dir / "MailScanner_2026-11-23.log")
      << "t ERROR event=a user=alice host=h folder=- detail=one\n"
      << "t ERROR event=b user=alice2 host=h folder=- detail=other user\n"
      << "t ERROR event=c user=\"bob smith\" host=h folder=- detail=bob\n";
  std::ofstream(dir / "MailScanner_2026-11-24.log") << "t WARN event=d user=alice host=h folder=- detail=two\n"
                                                     << "t INFO event=e user=alice host=h folder=- detail=three\n";
  auto lines = apps::recent_log_lines(dir, "alice");
  REQUIRE(lines.size() == 3);  // the 22nd is older than the two newest files
  CHECK(lines[0].find("detail=one") != std::string::npos);
  CHECK(lines[2].find("detail=three") != std::string::npos);
  auto two = apps::recent_log_lines(dir, "alice", 2);
  REQUIRE(two.size() == 2);
  CHECK(two[0].find("detail=two") != std::string::npos);
  auto bob = apps::recent_log_lines(dir, "bob smith");
  REQUIRE(bob.size() == 1);
  CHECK(apps::recent_log_lines(dir / "missing", "alice").empty());
  std::filesystem::remove_all(dir);
}

TEST_CASE("service config table: listen + token from the environment + webhook", "[unit][ops]") {
  ::setenv("MSCAN_OPS_CFG_TOKEN", "tok", 1);
  auto cfg = core::parse_config("[service]\nlisten = \"127.0.0.1:8080\"\ntoken_env = \"MSCAN_OPS_CFG_TOKEN\"\n"
                                "webhook_url = \"https://hooks.example/x\"\nwebhook_ca_file = \"ca.pem\"\n",
                                "/etc/mailscan/m.toml");
  REQUIRE(cfg);
  CHECK(cfg->service.listen == "127.0.0.1:8080");
  CHECK(cfg->service.token == "tok");
  CHECK(cfg->service.webhook_url == "https://hooks.example/x");
  CHECK(cfg->service.webhook_ca_file == "/etc/mailscan/ca.pem");
  auto none = core::parse_config("", "/etc/m.toml");
  REQUIRE(none);
  CHECK(none->service.listen.empty());
  auto no_token = core::parse_config("[service]\nlisten = \"127.0.0.1:8080\"\n", "/etc/m.toml");
  REQUIRE_FALSE(no_token);
  CHECK(no_token.error().message.find("token_env") != std::string::npos);
  auto bad_listen = core::parse_config("[service]\nlisten = \"8080\"\ntoken_env = \"X\"\n", "/etc/m.toml");
  REQUIRE_FALSE(bad_listen);
  CHECK(bad_listen.error().message.find("listen") != std::string::npos);
  auto typo = core::parse_config("[service]\nlisen = \"127.0.0.1:1\"\n", "/etc/m.toml");
  REQUIRE_FALSE(typo);
  CHECK(typo.error().message.find("lisen") != std::string::npos);
  auto bad_hook = core::parse_config("[service]\nwebhook_url = \"ftp://x\"\n", "/etc/m.toml");
  REQUIRE_FALSE(bad_hook);
}

TEST_CASE("status service: /health, /ready, /api/status aliases and diagnostics on demand", "[unit][ops]") {
  auto o = options();
  std::vector<std::string> asked;
  o.diagnose = [&](const std::string& user) -> std::optional<nlohmann::json> {
    asked.push_back(user);
    if (!user.empty() && user != "bob smith")
      return std::nullopt;
    return nlohmann::json{{"mailboxes", {{{"user", "bob smith"}, {"result", "Error"}, {"reason", "login_failed"}}}}};
  };
  CHECK(apps::handle_request(o, "GET", "/health", auth).status == 200);
  CHECK(apps::handle_request(o, "GET", "/ready", auth).status == 200);
  auto st = nlohmann::json::parse(apps::handle_request(o, "GET", "/api/status", auth).body);
  CHECK(st["ready"] == true);
  CHECK(st["mailboxes"].size() == 3);
  for (auto path : {"/health", "/ready", "/api/status", "/api/diagnose"})
    CHECK(apps::handle_request(o, path == std::string("/api/diagnose") ? "POST" : "GET", path, "").status == 401);
  CHECK(asked.empty());  // no probe without the token
  CHECK(apps::handle_request(o, "GET", "/api/diagnose", auth).status == 405);  // logins: POST only
  auto d = apps::handle_request(o, "POST", "/api/diagnose?user=bob%20smith", auth);
  REQUIRE(d.status == 200);
  CHECK(nlohmann::json::parse(d.body)["mailboxes"][0]["reason"] == "login_failed");
  CHECK(apps::handle_request(o, "POST", "/api/diagnose", auth).status == 200);
  CHECK(apps::handle_request(o, "POST", "/api/diagnose?user=nobody", auth).status == 404);
  CHECK(asked == std::vector<std::string>{"bob smith", "", "nobody"});
  o.diagnose = nullptr;
  CHECK(apps::handle_request(o, "POST", "/api/diagnose", auth).status == 501);
}

TEST_CASE("issues list: failing mailboxes, then unknown references and parse warnings", "[unit][ops]") {
  storage::message_record rec;
  rec.key = "<m1@x>";
  rec.message_id = "<m1@x>";
  rec.subject = "Re: OPP-9999 quote";
  rec.users = {"alice"};
  rec.reasons = {{"user", "alice", "mailbox"}, {"alert", "OPP-9999", "opportunity"}};
  rec.warnings = {"unknown opportunity reference OPP-9999 in subject", "multipart without closing delimiter"};
  auto fs = actors::findings_of(rec, 1'700'000'000);
  REQUIRE(fs.size() == 2);  // the alert's own warning text is not listed twice
  CHECK(fs[0].kind == "unknown_reference");
  CHECK(fs[0].user == "alice");
  CHECK(fs[0].next_step.find("reference = \"OPP-9999\"") != std::string::npos);
  CHECK(fs[1].kind == "parse_warning");
  CHECK(fs[1].detail == "multipart without closing delimiter");
  CHECK(fs[1].next_step.find("mailscan explain <m1@x>") != std::string::npos);

  auto o = options();
  o.snapshot = [fs] {
    auto s = sample();
    s.findings = fs;
    s.findings_by_kind = {{"unknown_reference", 1}, {"parse_warning", 1}};
    return s;
  };
  auto is = nlohmann::json::parse(apps::handle_request(o, "GET", "/api/issues", auth).body);
  REQUIRE(is["issues"].size() == 4);
  CHECK(is["issues"][0]["kind"] == "mailbox");
  CHECK(is["issues"][0]["reason"] == "certificate_invalid");
  CHECK(is["issues"][2]["kind"] == "parse_warning");  // newest finding first
  CHECK(is["issues"][3]["kind"] == "unknown_reference");
  CHECK(is["issues"][3]["message_id"] == "<m1@x>");
  CHECK(is["counts"]["mailbox"] == 2);
  CHECK(is["counts"]["unknown_reference"] == 1);
}

TEST_CASE("engine metrics: scans, errors by reason, leases, queues, write latency histogram", "[unit][ops]") {
  actors::engine_metrics m;
  m.set_ready(true);
  m.set_limits(64, 16);
  m.scan_finished("", 10, 7, 8);
  m.scan_finished("login_failed", 0, 0, 0);
  m.scan_finished("login_failed", 0, 0, 0);
  m.leases("127.0.0.1:993", 3, 5, 4);
  m.leases("127.0.0.1:143", 1, 0, 4);
  m.slow_mailbox(+1, false);
  m.slow_mailbox(+1, true);
  m.slow_mailbox(-1, false);
  m.host_paused();
  m.kept_session_lost();
  m.write_done(0.0007, 2, true);
  m.write_done(0.03, 1, true);
  m.write_done(9, 1, false);
  storage::message_record rec;
  rec.key = "k";
  rec.warnings = {"no header fields"};
  for (int i = 0; i < 250; ++i)
    m.found(actors::findings_of(rec, i));
  auto s = m.snapshot();
  CHECK(s.ready);
  CHECK(s.recent_findings.size() == actors::engine_metrics::max_findings);  // bounded
  CHECK(s.recent_findings.back().at == 249);
  CHECK(s.findings_by_kind["parse_warning"] == 250);
  apps::status_snapshot snap;
  snap.metrics = apps::engine_samples(s);
  auto text = apps::prometheus_text(snap);
  INFO(text);
  for (auto line : {"mailscan_scans_total{result=\"ok\"} 1\n", "mailscan_scans_total{result=\"error\"} 2\n",
                    "mailscan_scan_errors_total{reason=\"login_failed\"} 2\n", "mailscan_messages_new_total 7\n",
                    "mailscan_leases_in_use 4\n", "mailscan_leases_max 64\n",
                    "mailscan_host_leases_in_use{host=\"127.0.0.1:993\"} 3\n",
                    "mailscan_host_queue_depth{host=\"127.0.0.1:993\"} 5\n", "mailscan_lease_queue_depth 5\n",
                    "mailscan_writer_queue_depth 1\n", "# TYPE mailscan_write_seconds histogram\n",
                    "mailscan_write_seconds_bucket{le=\"0.001\"} 1\n", "mailscan_write_seconds_bucket{le=\"0.05\"} 2\n",
                    "mailscan_write_seconds_bucket{le=\"2.5\"} 2\n", "mailscan_write_seconds_bucket{le=\"+Inf\"} 3\n",
                    "mailscan_write_seconds_count 3\n", "mailscan_write_failures_total 1\n",
                    "mailscan_slow_mailboxes 1\n", "mailscan_slow_lane_yields_total 1\n",
                    "mailscan_host_pauses_total 1\n", "mailscan_kept_sessions_lost_total 1\n"})
    CHECK(text.find(line) != std::string::npos);
  // One HELP/TYPE per family.
  CHECK(text.find("# TYPE mailscan_write_seconds_sum") == std::string::npos);
  CHECK(text.find("# TYPE mailscan_scans_total counter\n") == text.rfind("# TYPE mailscan_scans_total counter\n"));
}

TEST_CASE("status service refuses a non-loopback address unless allow_remote", "[unit][ops]") {
  auto o = options();
  o.listen = "0.0.0.0:0";
  auto refused = apps::status_server::start(o);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().find("allow_remote") != std::string::npos);
  o.listen = "[::1]:0";
  auto v6 = apps::status_server::start(o);  // loopback: served, or a bind error where IPv6 is off
  if (!v6)
    CHECK(v6.error().find("allow_remote") == std::string::npos);
  o.listen = "0.0.0.0:0";
  o.allow_remote = true;
  auto allowed = apps::status_server::start(o);
  CHECK(allowed);
  ::setenv("MSCAN_OPS_CFG_TOKEN", "tok", 1);
  auto cfg = core::parse_config("[service]\nlisten = \"0.0.0.0:0\"\ntoken_env = \"MSCAN_OPS_CFG_TOKEN\"\n"
                                "allow_remote = true\n", "/etc/m.toml");
  REQUIRE(cfg);
  CHECK(cfg->service.allow_remote);
  auto so = apps::service_options(*cfg, cfg->service.listen);
  REQUIRE(so);
  CHECK(so->allow_remote);
  CHECK(so->diagnose);
  ::unsetenv("MSCAN_OPS_CFG_TOKEN");
  auto no_tok = core::parse_config("[service]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"MSCAN_OPS_CFG_TOKEN\"\n",
                                   "/etc/m.toml");
  REQUIRE(no_tok);
  auto no = apps::service_options(*no_tok, no_tok->service.listen);
  REQUIRE_FALSE(no);
  CHECK(no.error().find("MSCAN_OPS_CFG_TOKEN") != std::string::npos);
}

#include "storage/store.hpp"

TEST_CASE("serve: findings read from the store's newest messages", "[unit][ops]") {
  std::string tmpl = (std::filesystem::temp_directory_path() / "mscan-ops-store-XXXXXX").string();
  REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
  {
    auto db = storage::store::open(tmpl);
    REQUIRE(db);
    storage::message_record clean, odd;
    clean.key = clean.message_id = "<clean@x>";
    clean.users = {"alice"};
    clean.date = 1'700'000'000;
    odd.key = odd.message_id = "<odd@x>";
    odd.users = {"bob"};
    odd.date = 1'700'000'100;
    odd.reasons = {{"alert", "TT42", "ticket"}};
    odd.warnings = {"unknown ticket reference TT42 in subject", "no header fields"};
    std::vector<storage::message_record> recs{clean, odd};
    REQUIRE(db.value()->write(recs, {}));
    apps::status_snapshot s;
    apps::add_store_findings(s, *db.value());
    REQUIRE(s.findings.size() == 2);
    CHECK(s.findings[0].kind == "unknown_reference");
    CHECK(s.findings[0].user == "bob");
    CHECK(s.findings[0].at == 1'700'000'100);
    CHECK(s.findings[1].detail == "no header fields");
    CHECK(s.findings_by_kind["unknown_reference"] == 1);
    CHECK(s.findings_by_kind["parse_warning"] == 1);
    apps::status_snapshot none;
    apps::add_store_findings(none, *db.value(), 1);  // only the newest message: still odd
    CHECK(none.findings.size() == 2);
  }
  std::filesystem::remove_all(tmpl);
}
