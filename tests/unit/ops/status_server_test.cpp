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
