// `mailscan run` with [service]: the status service over the running engine against a private
// dovecot — health/readiness/status/metrics behind the bearer token, a failing mailbox in the
// issues list with its reason, unknown references and parse warnings found in tracked mail,
// diagnostics on demand, notifications in `status --json`, and the log retention.
#include "tests/support/dovecot_fixture.hpp"
#include "tests/support/mailscan_cli.hpp"

#include <utility>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <fstream>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;
using namespace mscan;

namespace {

struct http_result {
  int status = 0;
  std::string body;
};

http_result http_call(std::uint16_t port, boost::beast::http::verb verb, const std::string& target,
                      const std::string& token) {
  namespace http = boost::beast::http;
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::socket sock(ioc);
  sock.connect({boost::asio::ip::make_address("127.0.0.1"), port});
  http::request<http::empty_body> req{verb, target, 11};
  req.set(http::field::host, "127.0.0.1");
  if (!token.empty())
    req.set(http::field::authorization, "Bearer " + token);
  req.prepare_payload();
  http::write(sock, req);
  boost::beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(sock, buf, res);
  return {static_cast<int>(res.result_int()), res.body()};
}

http_result get(std::uint16_t port, const std::string& target, const std::string& token) {
  return http_call(port, boost::beast::http::verb::get, target, token);
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Polls `pred` until it holds or the deadline passes (the engine runs in another process).
template <class F>
bool eventually(F pred, std::chrono::seconds limit = std::chrono::seconds(30)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred())
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return pred();
}

std::string mailbox(const std::string& user, const test::dovecot_fixture& dc, const std::string& password) {
  return fmt::format("[[mailbox]]\nuser = \"{0}\"\naddress = \"{0}@corp.example\"\nhost = \"127.0.0.1\"\n"
                     "port = {1}\nsecurity = \"tls\"\nca_file = \"{2}\"\nusername = \"{0}\"\npassword = \"{3}\"\n"
                     "folders = \"INBOX\"\n\n",
                     user, dc.imaps_port(), dc.ca_file(), password);
}

// A reference shaped like an opportunity that names no known item, a Date the MIME parser
// cannot read and a multipart body whose closing delimiter never comes (it warns about both).
const char* odd_message =
    "From: Bob <bob@acme.example>\r\nTo: alice@corp.example\r\nSubject: about OPP-9999\r\n"
    "Message-ID: <ops-svc-1@acme.example>\r\nDate: the day before yesterday\r\n"
    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
    "--b1\r\nContent-Type: text/plain\r\n\r\nHi\r\n";

} // namespace

TEST_CASE("run with [service]: live status, metrics, issues, diagnose on demand, notifications, log retention",
          "[integration][ops]") {
  REQUIRE(test::dovecot_available());
  test::dovecot_fixture dc{{{{"alice", "pw-alice"}, {"bob", "pw-bob"}}}};
  dc.seed("alice", "INBOX", odd_message);
  auto dir = test::unique_test_dir("ops-run-service");
  fs::create_directories(dir / "logs");
  std::ofstream(dir / "logs" / "MailScanner_2020-01-01.log") << "ancient\n";
  std::ofstream(dir / "logs" / "MailScanner_2099-01-01.log") << "a clock set wrong must not lose this\n";
  const std::string token = "svc-token-4711";
  ::setenv("MAILSCAN_OPS_SVC_TOKEN", token.c_str(), 1);
  auto cfg = dir / "mailscan.toml";
  const std::string toml = "[engine]\ndata_dir = \"data\"\nlog_dir = \"logs\"\npoll_interval_s = 1\n"
                           "notify_after_failures = 1\nlog_retention_days = 5\nlog_timezone = \"UTC\"\n"
                           "warning_logging = true\n";
  const std::string rest = "\n[service]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"MAILSCAN_OPS_SVC_TOKEN\"\n\n"
                           "[[item_pattern]]\nkind = \"opportunity\"\nregex = \"OPP-\\\\d+\"\n\n" +
                           mailbox("alice", dc, "pw-alice") + mailbox("bob", dc, "not-bobs-password");
  std::ofstream(cfg) << toml << "info_logging = false\n" << rest;

  const auto out = dir / "run.out";
  auto pid = test::spawn_mailscan({"run", "--config", cfg.string()}, out);
  std::uint16_t port = 0;
  REQUIRE(eventually([&] {
    auto text = slurp(out);
    auto pos = text.find("listening 127.0.0.1:");
    if (pos == std::string::npos)
      return false;
    port = static_cast<std::uint16_t>(std::stoi(text.substr(pos + 20)));
    return true;
  }));
  INFO("run output: " << slurp(out));

  for (auto path : {"/health", "/ready", "/api/status", "/metrics", "/api/issues"})
    CHECK(get(port, path, "").status == 401);
  CHECK(get(port, "/health", token).status == 200);
  CHECK(eventually([&] { return get(port, "/ready", token).status == 200; }));

  // bob's wrong password and alice's odd message, as the running engine sees them.
  nlohmann::json issues;
  CHECK(eventually([&] {
    issues = nlohmann::json::parse(get(port, "/api/issues", token).body);
    bool bob = false, ref = false, warn = false;
    for (auto& i : issues["issues"]) {
      bob |= i["kind"] == "mailbox" && i["user"] == "bob" && i["reason"] == "login_failed" &&
             i["next_step"].get<std::string>().find("check username/password") != std::string::npos;
      ref |= i["kind"] == "unknown_reference" && i["user"] == "alice" &&
             i["detail"].get<std::string>().find("OPP-9999") != std::string::npos;
      warn |= i["kind"] == "parse_warning" && i["message_id"] == "<ops-svc-1@acme.example>";
    }
    return bob && ref && warn;
  }));
  INFO(issues.dump(2));

  auto status = nlohmann::json::parse(get(port, "/api/status", token).body);
  CHECK(status["ready"] == true);
  REQUIRE(status["mailboxes"].size() == 2);

  std::string metrics;
  CHECK(eventually([&] {
    metrics = get(port, "/metrics", token).body;
    return metrics.find("mailscan_messages_new_total 1\n") != std::string::npos;
  }));
  INFO(metrics);
  const auto host_leases = fmt::format("mailscan_host_leases_in_use{{host=\"127.0.0.1:{}\"}} ", dc.imaps_port());
  for (auto s : {"mailscan_ready 1\n", "mailscan_scans_total{result=\"ok\"} ", "mailscan_scans_total{result=\"error\"} ",
                 "mailscan_scan_errors_total{reason=\"login_failed\"} ", "mailscan_leases_in_use ",
                 host_leases.c_str(),
                 "mailscan_lease_queue_depth ", "mailscan_writer_queue_depth ",
                 "# TYPE mailscan_write_seconds histogram\n", "mailscan_write_seconds_count ",
                 "mailscan_mailboxes{state=\"error\"} 1\n"})
    CHECK(metrics.find(s) != std::string::npos);

  // Diagnostics on demand: the same probe as `mailscan diagnose`, as JSON.
  auto diag = http_call(port, boost::beast::http::verb::post, "/api/diagnose?user=bob", token);
  REQUIRE(diag.status == 200);
  auto d = nlohmann::json::parse(diag.body);
  REQUIRE(d["mailboxes"].size() == 1);
  CHECK(d["mailboxes"][0]["result"] == "Error");
  CHECK(d["mailboxes"][0]["reason"] == "login_failed");
  CHECK(diag.body.find("not-bobs-password") == std::string::npos);
  CHECK(http_call(port, boost::beast::http::verb::post, "/api/diagnose?user=nobody", token).status == 404);
  CHECK(http_call(port, boost::beast::http::verb::post, "/api/diagnose", "").status == 401);

  // info_logging changes at run time: the reload's own info line appears only once it is on.
  auto logs = [&] {
    std::string all;
    for (auto& e : fs::directory_iterator(dir / "logs"))
      all += slurp(e.path());
    return all;
  };
  CHECK(logs().find("event=config_reloaded") == std::string::npos);
  std::ofstream(cfg, std::ios::trunc) << toml << "info_logging = true\n" << rest << mailbox("carol", dc, "x");
  ::kill(pid, SIGHUP);
  CHECK(eventually([&] { return logs().find("INFO event=config_reloaded") != std::string::npos; }));
  // The service follows the reloaded config: carol is listed.
  CHECK(eventually([&] {
    return nlohmann::json::parse(get(port, "/api/status", token).body)["mailboxes"].size() == 3;
  }));

  ::kill(pid, SIGTERM);
  const int code = test::wait_exit(pid);
  CHECK((code == 3 || code == 0));  // 3: bob's last pass failed; 0: it was stopped mid-pass

  // The retention ran when the day's file was opened; a file dated in the future stays.
  CHECK_FALSE(fs::exists(dir / "logs" / "MailScanner_2020-01-01.log"));
  CHECK(fs::exists(dir / "logs" / "MailScanner_2099-01-01.log"));

  auto st = test::run_mailscan({"status", "--config", cfg.string(), "--json"});
  REQUIRE(st.code == 0);
  auto sj = nlohmann::json::parse(st.out);
  REQUIRE(sj["mailboxes"].size() == 3);
  REQUIRE(sj["notifications"].is_array());
  bool failing = false;
  for (auto& n : sj["notifications"])
    failing |= n["user"] == "bob" && n["kind"] == "failing" && n["reason"] == "login_failed";
  CHECK(failing);
  auto human = test::run_mailscan({"status", "--config", cfg.string()});
  CHECK(human.out.find("notifications (newest first):") != std::string::npos);
  CHECK(human.out.find("bob failing login_failed:") != std::string::npos);
  CHECK(human.out.find(token) == std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("run refuses a non-loopback [service] listen without allow_remote, and a missing token",
          "[integration][ops]") {
  auto dir = test::unique_test_dir("ops-run-remote");
  ::setenv("MAILSCAN_OPS_SVC_TOKEN", "x", 1);
  auto cfg = dir / "remote.toml";
  std::ofstream(cfg) << "[engine]\ndata_dir = \"data\"\nlog_dir = \"logs\"\n"
                        "[service]\nlisten = \"0.0.0.0:0\"\ntoken_env = \"MAILSCAN_OPS_SVC_TOKEN\"\n";
  auto r = test::run_mailscan({"run", "--config", cfg.string(), "--once"});
  CHECK(r.code == 2);
  CHECK(r.err.find("allow_remote") != std::string::npos);
  auto cfg2 = dir / "notoken.toml";
  std::ofstream(cfg2) << "[engine]\ndata_dir = \"data\"\nlog_dir = \"logs\"\n"
                         "[service]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"MAILSCAN_OPS_SVC_UNSET\"\n";
  auto r2 = test::run_mailscan({"run", "--config", cfg2.string(), "--once"});
  CHECK(r2.code == 2);
  CHECK(r2.err.find("MAILSCAN_OPS_SVC_UNSET") != std::string::npos);
  fs::remove_all(dir);
}
