// Operations end to end: the real `mailscan diagnose --json` and `test-mailbox` against a
// private dovecot (one OK, one wrong password, one Not Set, one wrong CA), and the dashboard
// of `mailscan serve` rendered by headless Chromium showing the failing mailbox and its reason.
#include "core/notifier.hpp"
#include "storage/store.hpp"
#include "tests/support/dovecot_fixture.hpp"
#include "tests/unit/ops/http_receiver.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <spawn.h>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace fs = std::filesystem;
using namespace mscan;

namespace {

struct run_result {
  int code = -1;
  std::string out;
};

fs::path ops_unique_dir(std::string_view name) {
  auto base = fs::path{MAILSCAN_BINARY_DIR} / "test-tmp";
  fs::create_directories(base);
  std::string tmpl = (base / fmt::format("{}.XXXXXX", name)).string();
  REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
  return tmpl;
}

run_result run_cmd(const std::string& cmd) {
  run_result r;
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[65536];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
    r.out.append(buf, n);
  int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string mailscan_bin() { return fmt::format("{}/apps/mailscan/mailscan", MAILSCAN_BINARY_DIR); }

std::string mailbox(const std::string& user, std::uint16_t port, const std::string& ca_file,
                    const std::string& secret_line) {
  return fmt::format("[[mailbox]]\nuser = \"{0}\"\naddress = \"{0}@corp.example\"\nhost = \"127.0.0.1\"\n"
                     "port = {1}\nsecurity = \"tls\"\nca_file = \"{2}\"\nusername = \"{0}\"\n{3}\n"
                     "folders = \"INBOX\"\n\n",
                     user, port, ca_file, secret_line);
}

const char* message =
    "From: Bob <bob@acme.example>\r\nTo: alice@corp.example\r\nSubject: hello\r\n"
    "Message-ID: <ops-1@acme.example>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nHi\r\n";

fs::path write_config(const fs::path& dir, const test::dovecot_fixture& dc, bool with_unset_and_wrong_ca) {
  std::string toml = fmt::format("[engine]\ndata_dir = \"data\"\nlog_dir = \"logs\"\n"
                                 "[service]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"MAILSCAN_OPS_TEST_TOKEN\"\n\n");
  toml += mailbox("alice", dc.imaps_port(), dc.ca_file(), "password = \"pw-alice\"");
  toml += mailbox("bob", dc.imaps_port(), dc.ca_file(), "password = \"not-bobs-password\"");
  if (with_unset_and_wrong_ca) {
    toml += mailbox("carol", dc.imaps_port(), dc.ca_file(), "password_env = \"MAILSCAN_OPS_TEST_UNSET_PW\"");
    toml += mailbox("dave", dc.imaps_port(), dc.wrong_ca_file(), "password = \"pw-dave\"");
  }
  auto file = dir / "mailscan.toml";
  std::ofstream(file) << toml;
  return file;
}

} // namespace

TEST_CASE("mailscan diagnose --json against dovecot: OK + wrong password + Not Set + wrong CA",
          "[integration][ops]") {
  REQUIRE(test::dovecot_available());
  test::dovecot_fixture dc{{{{"alice", "pw-alice"}, {"bob", "pw-bob"}, {"carol", "pw-carol"}, {"dave", "pw-dave"}}}};
  dc.seed("alice", "INBOX", message);
  auto dir = ops_unique_dir("ops-diagnose");
  auto cfg = write_config(dir, dc, true);
  ::unsetenv("MAILSCAN_OPS_TEST_UNSET_PW");

  auto r = run_cmd(fmt::format("{} diagnose --config {} --json 2>{}", mailscan_bin(), cfg.string(),
                               (dir / "stderr.txt").string()));
  CHECK(r.code == 3);
  auto j = nlohmann::json::parse(r.out);  // stdout is exactly one JSON document
  REQUIRE(j["mailboxes"].size() == 4);
  std::map<std::string, nlohmann::json> by_user;
  for (auto& m : j["mailboxes"])
    by_user[m["user"]] = m;
  CHECK(by_user["alice"]["result"] == "OK");
  CHECK(by_user["alice"]["reason"].is_null());
  CHECK(by_user["bob"]["result"] == "Error");
  CHECK(by_user["bob"]["reason"] == "login_failed");
  CHECK(by_user["bob"]["next_step"].get<std::string>().find("username/password") != std::string::npos);
  CHECK(by_user["carol"]["result"] == "Not Set");
  CHECK(by_user["carol"]["detail"].get<std::string>().find("MAILSCAN_OPS_TEST_UNSET_PW") != std::string::npos);
  CHECK(by_user["dave"]["result"] == "Error");
  CHECK(by_user["dave"]["reason"] == "certificate_invalid");
  CHECK(by_user["dave"]["next_step"].get<std::string>().find("ca_file") != std::string::npos);
  for (auto secret : {"pw-alice", "not-bobs-password", "pw-dave"})
    CHECK(r.out.find(secret) == std::string::npos);

  // Not a terminal: plain progress lines, then the table.
  auto plain = run_cmd(fmt::format("{} diagnose --config {} 2>/dev/null", mailscan_bin(), cfg.string()));
  CHECK(plain.code == 3);
  CHECK(plain.out.find("[3/3] ") != std::string::npos);
  CHECK(plain.out.find("4 mailbox(es): 1 OK, 2 Error, 1 Not Set") != std::string::npos);

  auto t = run_cmd(fmt::format("{} test-mailbox --config {} alice --json 2>/dev/null", mailscan_bin(), cfg.string()));
  CHECK(t.code == 0);
  auto tj = nlohmann::json::parse(t.out)["mailboxes"][0];
  CHECK(tj["result"] == "OK");
  CHECK_FALSE(tj["capabilities"].empty());
  REQUIRE(tj["folders"].size() == 1);
  CHECK(tj["folders"][0]["name"] == "INBOX");
  CHECK(tj["folders"][0]["messages"] == 1);
  CHECK(t.out.find("pw-alice") == std::string::npos);
  auto tb = run_cmd(fmt::format("{} test-mailbox --config {} bob 2>/dev/null", mailscan_bin(), cfg.string()));
  CHECK(tb.code == 3);
  CHECK(tb.out.find("login_failed") != std::string::npos);
  CHECK(tb.out.find("[redacted]") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("dashboard in headless Chromium shows the failing mailbox and its reason", "[integration][ops]") {
  REQUIRE(test::dovecot_available());
  const std::string chromium = "/usr/bin/chromium";
  INFO("the dashboard test needs Debian's chromium (scripts/setup.sh installs it)");
  REQUIRE(fs::exists(chromium));
  test::dovecot_fixture dc{{{{"alice", "pw-alice"}, {"bob", "pw-bob"}}}};
  dc.seed("alice", "INBOX", message);
  auto dir = ops_unique_dir("ops-dashboard");
  auto cfg = write_config(dir, dc, false);

  // The config has [service]: `run` serves too (and needs the token) while it scans.
  ::setenv("MAILSCAN_OPS_TEST_TOKEN", "dash-token-123", 1);
  auto run = run_cmd(fmt::format("{} run --config {} --once 2>/dev/null", mailscan_bin(), cfg.string()));
  CHECK(run.code == 3);  // bob failed

  // `mailscan serve` in the background; its first stdout line says where it listens.
  int out_pipe[2];
  REQUIRE(::pipe(out_pipe) == 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  posix_spawn_file_actions_addclose(&fa, out_pipe[0]);
  const std::string bin = mailscan_bin(), cfg_s = cfg.string();
  const char* argv[] = {bin.c_str(), "serve", "--config", cfg_s.c_str(), nullptr};
  pid_t pid = 0;
  REQUIRE(posix_spawn(&pid, bin.c_str(), &fa, nullptr, const_cast<char**>(argv), environ) == 0);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out_pipe[1]);
  std::string line;
  char c;
  while (::read(out_pipe[0], &c, 1) == 1 && c != '\n')
    line.push_back(c);
  ::close(out_pipe[0]);
  INFO("serve said: " << line);
  REQUIRE(line.starts_with("listening 127.0.0.1:"));
  const auto port = line.substr(std::string("listening 127.0.0.1:").size());

  auto profile = ops_unique_dir("ops-chromium");
  auto dom = run_cmd(fmt::format(
      "timeout 120 {} --headless --no-sandbox --disable-gpu --disable-background-networking "
      "--disable-component-update --disable-sync --no-first-run --user-data-dir={} "
      "--virtual-time-budget=10000 --dump-dom 'http://127.0.0.1:{}/#token=dash-token-123&detail=bob&diagnose=bob' "
      "2>/dev/null",
      chromium, profile.string(), port));
  // Without the token the page renders no data, only the message saying so.
  auto no_token = run_cmd(fmt::format(
      "timeout 120 {} --headless --no-sandbox --disable-gpu --disable-background-networking "
      "--disable-component-update --disable-sync --no-first-run --user-data-dir={} "
      "--virtual-time-budget=10000 --dump-dom 'http://127.0.0.1:{}/' 2>/dev/null",
      chromium, profile.string(), port));
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);

  INFO(dom.out);
  CHECK(dom.out.find("data-loaded=\"1\"") != std::string::npos);
  CHECK(dom.out.find("<tr class=\"clickable issue\" data-user=\"bob\">") != std::string::npos);
  CHECK(dom.out.find("<td class=\"reason\">login_failed</td>") != std::string::npos);
  CHECK(dom.out.find("check username/password") != std::string::npos);
  CHECK(dom.out.find("data-user=\"alice\"") != std::string::npos);
  CHECK(dom.out.find("dash-token-123") == std::string::npos);
  // bob's detail with his recent log lines, and the diagnostics button's result for him.
  CHECK(dom.out.find("<h2>Mailbox bob</h2>") != std::string::npos);
  CHECK(dom.out.find("event=scan_failed user=bob") != std::string::npos);
  CHECK(dom.out.find("data-diagnosed=\"1\"") != std::string::npos);
  CHECK(dom.out.find("<tr class=\"diagnosis\" data-user=\"bob\" data-result=\"Error\">") != std::string::npos);
  CHECK(dom.out.find("id=\"diagnose-all\"") != std::string::npos);
  CHECK(no_token.out.find("not authorised") != std::string::npos);
  CHECK(no_token.out.find("login_failed") == std::string::npos);
  fs::remove_all(profile);
  fs::remove_all(dir);
}

// ---- mailbox health against the real server -------------------------------------------------

namespace {

// One real probe through the `mailscan` executable, as the health layer's pass outcome.
core::pass_outcome probe(const fs::path& cfg, const std::string& user, std::int64_t at) {
  auto r = run_cmd(fmt::format("{} test-mailbox --config {} {} --json 2>/dev/null", mailscan_bin(), cfg.string(), user));
  auto m = nlohmann::json::parse(r.out)["mailboxes"][0];
  core::pass_outcome p;
  p.ok = m["result"] == "OK";
  p.reason = m["reason"].is_null() ? "" : m["reason"].get<std::string>();
  p.detail = m["detail"];
  p.finished_at = at;
  return p;
}

fs::path single_config(const fs::path& dir, const test::dovecot_fixture& dc, const std::string& password) {
  auto file = dir / "one.toml";
  std::ofstream(file) << "[engine]\ndata_dir = \"data\"\nlog_dir = \"logs\"\n\n"
                      << mailbox("alice", dc.imaps_port(), dc.ca_file(), fmt::format("password = \"{}\"", password));
  return file;
}

} // namespace

TEST_CASE("dovecot: wrong password after success -> credentials_changed -> new password -> OK and "
          "10 failures -> one webhook notification",
          "[integration][ops]") {
  REQUIRE(test::dovecot_available());
  test::dovecot_fixture dc{{{{"alice", "first-pw"}}}};
  auto dir = ops_unique_dir("ops-health");
  auto db = storage::store::open(dir / "health-db");
  REQUIRE(db);
  test::http_receiver rx({});
  core::notifier nt({.url = fmt::format("http://127.0.0.1:{}/hook", rx.port()),
                     .backoff = std::chrono::milliseconds(1)},
                    db.value().get());
  std::int64_t t = 1'800'000'000;
  auto step = [&](const std::string& password) {
    auto cfg_file = single_config(dir, dc, password);
    auto cfg = core::load_config(cfg_file);
    REQUIRE(cfg);
    const auto& m = cfg->mailboxes.at(0);
    auto prev = db.value()->mailbox_state_of("alice").value_or(storage::mailbox_state{});
    if (!core::may_login(prev, m))
      return std::string("skipped");
    auto d = core::record_pass(*db.value(), &nt, m, probe(cfg_file, "alice", ++t), 10);
    REQUIRE(d);
    return d->state.state;
  };

  CHECK(step("first-pw") == "ok");
  dc.set_password("alice", "second-pw");  // changed on the server, not yet in the config
  CHECK(step("first-pw") == "credentials_changed");
  CHECK(step("first-pw") == "skipped");  // no more LOGINs with the refused password
  CHECK(step("first-pw") == "skipped");
  CHECK(step("second-pw") == "ok");      // the operator put the new password in the config

  dc.stop();  // from now on every pass fails
  for (int i = 0; i < 12; ++i)
    CHECK(step("second-pw") == "error");
  CHECK(db.value()->mailbox_state_of("alice")->consecutive_failures == 12);
  CHECK(db.value()->mailbox_state_of("alice")->last_error_reason == "connection_refused");

  rx.stop();
  std::vector<std::string> kinds;
  for (auto& r : rx.requests())
    kinds.push_back(nlohmann::json::parse(r.body)["kind"]);
  CHECK(kinds == std::vector<std::string>{"credentials_changed", "recovered", "failing"});
  CHECK(db.value()->notifications().size() == 3);
  db.value().reset();
  fs::remove_all(dir);
}
