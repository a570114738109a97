// OAuth2 end to end: the `mailscan` executable, a private dovecot that accepts XOAUTH2 through
// its oauth2 passdb, and a local token server (tests/support/oauth_token_server) that issues
// tokens over TLS with the fixture's CA and answers dovecot's introspection requests.
// Every test also checks that no secret (client secret, refresh token, access tokens) appears
// in any output or log.
#include "core/oauth_token.hpp"
#include "core/secret_box.hpp"
#include "tests/support/dovecot_fixture.hpp"
#include "tests/support/mailscan_cli.hpp"
#include "tests/support/oauth_token_server.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;
using namespace mscan;

namespace {

constexpr const char* domain = "oauth.test";
using test::eventually;
std::string read_all(const fs::path& p) { return test::read_whole_file(p); }
std::string logs_of(const fs::path& dir) { return test::engine_logs(dir); }


std::string message(const std::string& user, int n) {
  return fmt::format("From: Bob <bob@acme.example>\r\nTo: {0}@{1}\r\nSubject: oauth {2}\r\n"
                     "Message-ID: <oauth-{0}-{2}@acme.example>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n"
                     "body {2}\r\n",
                     user, domain, n);
}

struct oauth_env {
  fs::path dir = test::unique_test_dir("oauth");
  std::string client_secret = "cs-" + core::generate_secret_key_hex().substr(0, 24);
  std::string refresh_token = "rt-" + core::generate_secret_key_hex().substr(0, 24);
  std::string key_hex = core::generate_secret_key_hex();
  std::string secret_env, key_env;
  explicit oauth_env(const std::string& tag) : secret_env("MSCAN_OAUTH_CS_" + tag), key_env("MSCAN_OAUTH_KEY_" + tag) {
    ::setenv(secret_env.c_str(), client_secret.c_str(), 1);
    ::setenv(key_env.c_str(), key_hex.c_str(), 1);
  }
  ~oauth_env() {
    ::unsetenv(secret_env.c_str());
    ::unsetenv(key_env.c_str());
  }
};

std::vector<test::dovecot_user> users(std::size_t n) {
  std::vector<test::dovecot_user> out;
  for (std::size_t i = 0; i < n; ++i)
    out.push_back({fmt::format("box{}@{}", i, domain), "unused-" + std::to_string(i)});
  return out;
}

// The credential and `n` mailboxes sharing it (provider preset, host/port overridden to the
// fixture: tests never connect to the real provider).
std::string config_text(const oauth_env& e, const test::dovecot_fixture& dc, const test::oauth_token_server& srv,
                        std::size_t n, bool refresh_grant, std::uint32_t poll_s = 60) {
  std::string c = fmt::format("[engine]\ndata_dir = \"data\"\nlog_dir = \"logs\"\ninfo_logging = true\ndays_back = 0\n"
                              "poll_interval_s = {}\nmax_backoff_s = 2\nmax_connections = 16\n"
                              "max_connections_per_host = 16\nsecrets_key_env = \"{}\"\n\n",
                              poll_s, e.key_env);
  c += fmt::format("[[oauth_credential]]\nname = \"tenant\"\ntoken_url = \"{}\"\nclient_id = \"mailscan-app\"\n"
                   "client_secret_env = \"{}\"\nca_file = \"{}\"\nscope = \"imap\"\n",
                   srv.token_url(), e.secret_env, dc.ca_file());
  if (refresh_grant)
    c += "grant = \"refresh_token\"\nrefresh_token_file = \"tokens/tenant.json\"\n";
  c += "\n";
  for (std::size_t i = 0; i < n; ++i)
    c += fmt::format("[[mailbox]]\nuser = \"box{0}\"\naddress = \"box{0}@{1}\"\nprovider = \"office365\"\n"
                     "host = \"127.0.0.1\"\nport = {2}\nca_file = \"{3}\"\noauth_credential = \"tenant\"\n\n",
                     i, domain, dc.imaps_port(), dc.ca_file());
  std::ofstream(e.dir / "mailscan.toml") << c;
  return (e.dir / "mailscan.toml").string();
}

// The "mailboxes" list of a --json answer (a copy: a range-for over a member of a temporary
// would outlive the temporary).
nlohmann::json mailboxes_of(const std::string& json_text) {
  auto j = nlohmann::json::parse(json_text, nullptr, false);
  auto list = j.is_object() && j.contains("mailboxes") ? j["mailboxes"] : nlohmann::json::array();
  CHECK_FALSE(list.empty());  // a loop over nothing would check nothing
  return list;
}



// No secret in any text the operator (or a test log) can see.
void check_no_secrets(const oauth_env& e, const test::oauth_token_server& srv, const std::vector<std::string>& texts) {
  std::vector<std::string> secrets{e.client_secret, e.refresh_token, e.key_hex};
  for (auto& t : srv.issued_tokens())
    secrets.push_back(t);
  for (auto& text : texts)
    for (auto& s : secrets)
      CHECK(text.find(s) == std::string::npos);
}

// `mailscan ARGS...` with `input` on its standard input, stdout into `out_file`.
int pipe_to_mailscan(const std::string& args, const std::string& input, const fs::path& out_file = "/dev/null") {
  auto cmd = fmt::format("'{}' {} >'{}'", test::mailscan_path(), args, out_file.string());
  FILE* p = ::popen(cmd.c_str(), "w");
  if (!p)
    return -1;
  std::fputs(input.c_str(), p);
  int st = ::pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// `mailscan oauth store-token --config CONF tenant` with the token on its standard input.
int store_token(const std::string& conf, const std::string& token) {
  return pipe_to_mailscan(fmt::format("oauth store-token --config '{}' tenant", conf), token);
}

} // namespace

// The token server first (dovecot needs its introspection URL), then dovecot, then the
// server's TLS certificate from the fixture's CA.
struct oauth_stack {
  test::oauth_token_server srv;
  test::dovecot_fixture dc;
  oauth_stack(const oauth_env& e, std::size_t mailboxes, std::uint32_t expires_in)
    : srv({.client_id = "mailscan-app", .client_secret = e.client_secret, .refresh_token = e.refresh_token,
           .expires_in = expires_in, .identity = fmt::format("app@{}", domain)}),
      dc({.users = users(mailboxes), .oauth2_introspection_url = srv.introspection_url()}) {
    srv.use_certificate(dc.root() / "server.pem", dc.root() / "server.key");
  }
};

TEST_CASE("oauth: one service principal for 100 mailboxes costs one token request", "[integration][oauth]") {
  REQUIRE(test::dovecot_available());
  oauth_env e{"SP"};
  oauth_stack s{e, 100, 3600};
  for (int i = 0; i < 100; ++i)
    s.dc.seed(fmt::format("box{}@{}", i, domain), "INBOX", message(fmt::format("box{}", i), 1));
  auto conf = config_text(e, s.dc, s.srv, 100, false);
  // The client secret sealed at rest (`mailscan oauth seal`) instead of in the environment.
  REQUIRE(pipe_to_mailscan(fmt::format("oauth seal --config '{}' tenant", conf), e.client_secret,
                           e.dir / "tenant.secret") == 0);
  CHECK(read_all(e.dir / "tenant.secret").starts_with("msk1:"));
  ::unsetenv(e.secret_env.c_str());
  {
    auto text = read_all(conf);
    auto at = text.find("client_secret_env");
    text.replace(at, text.find('\n', at) - at, "client_secret_file = \"tenant.secret\"");
    std::ofstream(conf) << text;
  }

  auto run = test::run_mailscan({"run", "--config", conf, "--once"});
  INFO("stdout: " << run.out.substr(0, 2000) << "\nstderr: " << run.err << "\ndovecot: " << s.dc.log_tail(20));
  REQUIRE(run.code == 0);
  CHECK(s.srv.token_requests() == 1);  // not 100
  CHECK(s.srv.tokens_issued() == 1);
  CHECK(s.srv.introspections() >= 100);  // every login was validated by dovecot
  CHECK(test::tracked_count(conf) == 100);

  auto status = test::run_mailscan({"status", "--config", conf, "--json"});
  REQUIRE(status.code == 0);
  for (auto& m : mailboxes_of(status.out))
    CHECK(m.at("state") == "ok");
  auto diag = test::run_mailscan({"diagnose", "--config", conf, "--json"});
  CHECK(diag.code == 0);
  CHECK(s.srv.token_requests() == 2);  // the diagnose process: one more, for all 100
  check_no_secrets(e, s.srv, {run.out, run.err, status.out, status.err, diag.out, diag.err, logs_of(e.dir),
                              s.dc.log_tail(2000), read_all(e.dir / "tenant.secret")});
}

TEST_CASE("oauth: an access token that expires mid-run is refreshed once and scanning continues, nothing lost",
          "[integration][oauth]") {
  REQUIRE(test::dovecot_available());
  oauth_env e{"EXP"};
  oauth_stack s{e, 3, 3600};
  for (int i = 0; i < 3; ++i)
    for (int n = 0; n < 5; ++n)
      s.dc.seed(fmt::format("box{}@{}", i, domain), "INBOX", message(fmt::format("box{}", i), n));
  auto conf = config_text(e, s.dc, s.srv, 3, false, /*poll_s=*/1);
  // The first two token requests fail (503 temporarily_unavailable): retried with back-off.
  s.srv.fail_next(2);

  auto log = e.dir / "run.log";
  auto pid = test::spawn_mailscan({"run", "--config", conf}, log);
  REQUIRE(pid > 0);
  bool first = eventually([&] { return test::tracked_count(conf) == 15; });
  CHECK(first);
  CHECK(s.srv.token_requests() == 3);  // 2 refused + 1 issued
  // The provider expires the token early (revocation, policy): the next logins are refused.
  s.srv.expire_access_tokens();
  for (int i = 0; i < 3; ++i)
    for (int n = 5; n < 10; ++n)
      s.dc.seed(fmt::format("box{}@{}", i, domain), "INBOX", message(fmt::format("box{}", i), n));
  bool second = eventually([&] { return test::tracked_count(conf) == 30; });
  ::kill(pid, SIGTERM);
  int code = test::wait_exit(pid);
  INFO("run log: " << read_all(log).substr(0, 3000) << "\ndovecot: " << s.dc.log_tail(30));
  CHECK(second);
  CHECK(code == 0);
  // One refresh for the three mailboxes that found the token refused, not three.
  CHECK(s.srv.tokens_issued() == 2);
  CHECK(s.srv.token_requests() == 4);
  auto logs = logs_of(e.dir);
  CHECK(logs.find("oauth_login_retry") != std::string::npos);
  CHECK(logs.find("oauth_refresh_retry") != std::string::npos);
  CHECK(logs.find("scan_failed") == std::string::npos);  // the retry made every pass succeed
  check_no_secrets(e, s.srv, {read_all(log), logs, s.dc.log_tail(2000)});
}

TEST_CASE("oauth: a revoked refresh token is credentials_changed without a retry storm, and a new one resumes",
          "[integration][oauth]") {
  REQUIRE(test::dovecot_available());
  oauth_env e{"REV"};
  oauth_stack s{e, 3, 3600};
  for (int i = 0; i < 3; ++i)
    s.dc.seed(fmt::format("box{}@{}", i, domain), "INBOX", message(fmt::format("box{}", i), 1));
  auto conf = config_text(e, s.dc, s.srv, 3, true, /*poll_s=*/1);
  REQUIRE(store_token(conf, e.refresh_token) == 0);
  auto stored = read_all(e.dir / "tokens" / "tenant.json");
  CHECK(stored.find(e.refresh_token) == std::string::npos);  // sealed at rest

  auto first = test::run_mailscan({"run", "--config", conf, "--once"});
  INFO("stdout: " << first.out << "\nstderr: " << first.err << "\ndovecot: " << s.dc.log_tail(20));
  REQUIRE(first.code == 0);
  CHECK(s.srv.token_requests() == 1);

  s.srv.revoke_refresh_token();
  s.srv.expire_access_tokens();
  auto log = e.dir / "run.log";
  auto pid = test::spawn_mailscan({"run", "--config", conf}, log);
  REQUIRE(pid > 0);
  // Several failed passes per mailbox (poll 1 s, back-off capped at 2 s) ...
  bool failed = eventually([&] {
    auto l = logs_of(e.dir);
    std::size_t n = 0;
    for (auto p = l.find("scan_failed"); p != std::string::npos; p = l.find("scan_failed", p + 1))
      ++n;
    return n >= 9;
  });
  CHECK(failed);
  // ... and still one token request in this run: invalid_grant stops the asking.
  CHECK(s.srv.token_requests() == 2);

  auto status = test::run_mailscan({"status", "--config", conf, "--json"});
  REQUIRE(status.code == 0);
  for (auto& m : mailboxes_of(status.out)) {
    CHECK(m.at("state") == "credentials_changed");
    CHECK(m.at("last_error").at("reason") == "credentials_changed");
  }

  // Re-authorised: a new refresh token stored while the engine runs is picked up by itself.
  const std::string renewed = "rt-renewed-" + core::generate_secret_key_hex().substr(0, 16);
  s.srv.set_refresh_token(renewed);
  REQUIRE(store_token(conf, renewed) == 0);
  s.dc.seed(fmt::format("box0@{}", domain), "INBOX", message("box0", 2));
  auto all_ok = [&] {
    auto st = test::run_mailscan({"status", "--config", conf, "--json"});
    auto j = nlohmann::json::parse(st.out, nullptr, false);
    if (!j.is_object())
      return false;
    for (auto& m : j.at("mailboxes"))
      if (m.at("state") != "ok")
        return false;
    return true;
  };
  // Every mailbox logs in again by itself (each after its back-off).
  bool resumed = eventually([&] { return test::tracked_count(conf) == 4 && all_ok(); });
  ::kill(pid, SIGTERM);
  int code = test::wait_exit(pid);
  INFO("run log: " << read_all(log).substr(0, 3000));
  CHECK(resumed);
  CHECK(code == 0);
  CHECK(s.srv.token_requests() == 3);

  // diagnose after another revocation: the refusal, classified, with the next step.
  s.srv.revoke_refresh_token();
  s.srv.expire_access_tokens();
  auto diag = test::run_mailscan({"diagnose", "--config", conf, "--json"});
  CHECK(diag.code == 3);
  for (auto& m : mailboxes_of(diag.out)) {
    CHECK(m.at("result") == "Error");
    CHECK(m.at("reason") == "credentials_changed");
    CHECK(m.at("detail").get<std::string>().find("invalid_grant") != std::string::npos);
    CHECK(m.at("next_step").get<std::string>().find("mailscan oauth store-token") != std::string::npos);
  }
  CHECK(s.srv.token_requests() == 4);
  check_no_secrets(e, s.srv, {first.out, first.err, read_all(log), status.out, diag.out, diag.err, logs_of(e.dir),
                              s.dc.log_tail(2000)});
  auto renewed_file = read_all(e.dir / "tokens" / "tenant.json");
  CHECK(renewed_file.find(renewed) == std::string::npos);
}

TEST_CASE("oauth: a missing or wrong secrets key stops start-up with exit 2", "[integration][oauth]") {
  oauth_env e{"KEY"};
  test::oauth_token_server srv{{.client_id = "mailscan-app", .client_secret = e.client_secret,
                                .refresh_token = e.refresh_token, .expires_in = 60, .identity = "app@x"}};
  std::string c = fmt::format("[engine]\ndata_dir = \"data\"\nlog_dir = \"logs\"\nsecrets_key_env = \"{}\"\n"
                              "[[oauth_credential]]\nname = \"tenant\"\ntoken_url = \"{}\"\nclient_id = \"x\"\n"
                              "grant = \"refresh_token\"\nrefresh_token_file = \"tokens/tenant.json\"\n"
                              "[[mailbox]]\nuser = \"a\"\nhost = \"127.0.0.1\"\nport = 1\n"
                              "oauth_credential = \"tenant\"\n",
                              e.key_env, srv.token_url());
  std::ofstream(e.dir / "mailscan.toml") << c;
  auto conf = (e.dir / "mailscan.toml").string();
  REQUIRE(store_token(conf, e.refresh_token) == 0);

  ::unsetenv(e.key_env.c_str());
  auto missing = test::run_mailscan({"run", "--config", conf, "--once"});
  CHECK(missing.code == 2);
  CHECK(missing.err == fmt::format("mailscan: config: environment variable {} (the secrets key) is not set\n", e.key_env));

  ::setenv(e.key_env.c_str(), core::generate_secret_key_hex().c_str(), 1);
  auto wrong = test::run_mailscan({"run", "--config", conf, "--once"});
  CHECK(wrong.code == 2);
  CHECK(wrong.err.find("wrong key") != std::string::npos);
  auto diag = test::run_mailscan({"diagnose", "--config", conf});
  CHECK(diag.code == 2);
  CHECK(srv.token_requests() == 0);  // nothing was contacted

  // The right key, and a refresh token last used 75 days ago: diagnose and the log warn about
  // Microsoft's 90-day inactivity expiry (whatever else the probe finds: here the endpoint's
  // TLS has no certificate and the mailbox's port is closed).
  auto key = core::parse_secret_key(e.key_hex);
  REQUIRE(key);
  ::setenv(e.key_env.c_str(), e.key_hex.c_str(), 1);
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  REQUIRE(core::write_token_file(e.dir / "tokens" / "tenant.json", *key, "tenant",
                                 core::token_file{e.refresh_token, now - 80 * 86400, now - 75 * 86400}));
  auto idle = test::run_mailscan({"diagnose", "--config", conf, "--json"});
  auto j = nlohmann::json::parse(idle.out, nullptr, false);
  REQUIRE(j.is_object());
  auto detail = j.at("mailboxes").at(0).at("detail").get<std::string>();
  CHECK(detail.find("has not been used for 75 days") != std::string::npos);
  CHECK(logs_of(e.dir).find("oauth_refresh_token_idle") != std::string::npos);
  check_no_secrets(e, srv, {missing.err, wrong.err, diag.out, diag.err, idle.out, idle.err, logs_of(e.dir)});
}

TEST_CASE("oauth: Gmail's daily download quota pauses that mailbox only, not its host", "[integration][oauth]") {
  REQUIRE(test::dovecot_available());
  test::dovecot_fixture dc{{.users = {{"quota", "pw-q"}, {"other", "pw-o"}}}};
  // 1.2 MB of text: downloaded in full (text parts are fetched up to 2 MB).
  std::string big = "From: bob@acme.example\r\nTo: quota@corp.example\r\nSubject: big\r\n"
                    "Message-ID: <big@acme.example>\r\n\r\n";
  for (int i = 0; i < 16000; ++i)
    big += std::string(76, 'a' + i % 26) + "\r\n";
  dc.seed("quota", "INBOX", big);
  dc.seed("other", "INBOX", message("other", 1));
  auto dir = test::unique_test_dir("oauth-quota");
  // fetch_text = "always": with no rule reading text the header path would not download it.
  std::string c = "[engine]\ndata_dir = \"data\"\nlog_dir = \"logs\"\ninfo_logging = true\ndays_back = 0\n"
                  "poll_interval_s = 1\nmax_backoff_s = 2\nfetch_text = \"always\"\n\n";
  // The gmail preset (quota 2,500 MB, xoauth2) with host, auth and quota overridden for the test.
  c += fmt::format("[[mailbox]]\nuser = \"quota\"\nprovider = \"gmail\"\nhost = \"127.0.0.1\"\nport = {0}\n"
                   "security = \"none\"\nauth = \"password\"\npassword = \"pw-q\"\nmax_download_mb_per_day = 1\n\n"
                   "[[mailbox]]\nuser = \"other\"\nhost = \"127.0.0.1\"\nport = {0}\nsecurity = \"none\"\n"
                   "password = \"pw-o\"\n",
                   dc.imap_port());
  std::ofstream(dir / "mailscan.toml") << c;
  auto conf = (dir / "mailscan.toml").string();
  auto log = dir / "run.log";
  auto pid = test::spawn_mailscan({"run", "--config", conf}, log);
  REQUIRE(pid > 0);
  CHECK(eventually([&] { return test::tracked_count(conf) == 2; }));
  CHECK(eventually([&] { return logs_of(dir).find("daily download quota of 1 MB") != std::string::npos; }));
  dc.seed("quota", "INBOX", message("quota", 2));
  dc.seed("other", "INBOX", message("other", 2));
  bool other_continues = eventually([&] { return test::tracked_count(conf) == 3; });
  auto st = test::run_mailscan({"status", "--config", conf, "--json"});
  ::kill(pid, SIGTERM);
  test::wait_exit(pid);
  INFO("run log: " << read_all(log) << "\nlogs: " << logs_of(dir).substr(0, 3000));
  CHECK(other_continues);
  CHECK(test::tracked_count(conf) == 3);  // the quota mailbox waits for the next UTC day
  CHECK(logs_of(dir).find("host_throttled") == std::string::npos);
  for (auto& m : mailboxes_of(st.out))
    if (m.at("user") == "quota")
      CHECK(m.at("last_error").at("reason") == "throttled");
}

TEST_CASE("oauth: a refused client and an unavailable endpoint are classified with bounded token requests",
          "[integration][oauth]") {
  REQUIRE(test::dovecot_available());
  oauth_env e{"CLS"};
  oauth_stack s{e, 3, 3600};
  auto conf = config_text(e, s.dc, s.srv, 3, false);

  // Temporarily unavailable beyond the retries: 3 attempts with back-off for all three
  // mailboxes together, then the cool-down answers without a request.
  s.srv.fail_next(100);
  auto busy = test::run_mailscan({"run", "--config", conf, "--once"});
  CHECK(busy.code == 3);
  CHECK(s.srv.token_requests() == 3);
  CHECK(busy.out.find("Error (token_refresh_failed): token endpoint answered HTTP 503 temporarily_unavailable") !=
        std::string::npos);
  auto st = test::run_mailscan({"status", "--config", conf, "--json"});
  for (auto& m : mailboxes_of(st.out)) {
    CHECK(m.at("state") == "error");
    CHECK(m.at("last_error").at("reason") == "token_refresh_failed");
  }

  // A wrong client secret: refused once, never retried.
  s.srv.fail_next(0);
  ::setenv(e.secret_env.c_str(), "not-the-secret", 1);
  auto refused = test::run_mailscan({"run", "--config", conf, "--once"});
  CHECK(refused.code == 3);
  CHECK(s.srv.token_requests() == 4);
  auto diag = test::run_mailscan({"diagnose", "--config", conf, "--json"});
  CHECK(diag.code == 3);
  CHECK(s.srv.token_requests() == 5);
  for (auto& m : mailboxes_of(diag.out)) {
    CHECK(m.at("reason") == "credentials_changed");
    CHECK(m.at("detail").get<std::string>().find("invalid_client") != std::string::npos);
    CHECK(m.at("next_step").get<std::string>().find("[[oauth_credential]]") != std::string::npos);
  }
  check_no_secrets(e, s.srv, {busy.out, busy.err, st.out, refused.out, refused.err, diag.out, diag.err,
                              logs_of(e.dir)});
  CHECK(logs_of(e.dir).find("not-the-secret") == std::string::npos);
}

TEST_CASE("oauth: short-lived access tokens are refreshed before they expire", "[integration][oauth]") {
  REQUIRE(test::dovecot_available());
  oauth_env e{"SHORT"};
  oauth_stack s{e, 2, /*expires_in=*/4};  // refreshed from 2 s on (margin: half the lifetime)
  for (int i = 0; i < 2; ++i)
    s.dc.seed(fmt::format("box{}@{}", i, domain), "INBOX", message(fmt::format("box{}", i), 1));
  auto conf = config_text(e, s.dc, s.srv, 2, false, /*poll_s=*/1);
  auto log = e.dir / "run.log";
  auto pid = test::spawn_mailscan({"run", "--config", conf}, log);
  REQUIRE(pid > 0);
  bool refreshed = eventually([&] { return s.srv.tokens_issued() >= 3; }, std::chrono::seconds(20));
  ::kill(pid, SIGTERM);
  int code = test::wait_exit(pid);
  INFO("run log: " << read_all(log).substr(0, 2000));
  CHECK(refreshed);
  CHECK(code == 0);
  CHECK(test::tracked_count(conf) == 2);
  auto logs = logs_of(e.dir);
  // Never a login with an expired token: no refusal, no retry, no failed pass.
  CHECK(logs.find("oauth_login_retry") == std::string::npos);
  CHECK(logs.find("scan_failed") == std::string::npos);
  check_no_secrets(e, s.srv, {read_all(log), logs});
}
