// diagnose / test-mailbox rendering and exit codes, with the probe replaced by a fake.
#include "apps/mailscan/diagnose.hpp"

#include <catch2/catch.hpp>

#include <sstream>

using namespace mscan;

namespace {

core::mailbox_config mailbox(std::string user, std::string secret = "s3cret-pw") {
  core::mailbox_config m;
  m.user = user;
  m.host = "127.0.0.1";
  m.port = 993;
  m.username = user;
  m.secret = std::move(secret);
  return m;
}

actors::pass_result pass(std::string user, bool ok, std::string reason = {}, std::string detail = {},
                         std::vector<std::string> caps = {}, std::vector<actors::folder_info> folders = {}) {
  actors::pass_result p;
  p.user = std::move(user);
  p.ok = ok;
  p.reason = std::move(reason);
  p.detail = std::move(detail);
  p.capabilities = std::move(caps);
  p.folders = std::move(folders);
  return p;
}

apps::probe_fn fake(std::vector<actors::pass_result> passes, std::size_t* probed = nullptr) {
  return [passes, probed](const core::config& cfg, const actors::engine_options& o)
             -> expected<actors::engine_report, std::string> {
    if (o.mode != actors::engine_mode::probe)
      return unexpected{std::string("not a probe")};
    if (probed)
      *probed = cfg.mailboxes.size();
    actors::engine_report r;
    std::size_t n = 0;
    for (auto& p : passes) {
      r.passes.push_back(p);
      if (o.on_progress)
        o.on_progress(p, ++n, passes.size());
    }
    return r;
  };
}

} // namespace

TEST_CASE("diagnose: Not Set + OK + Error with next steps and the JSON shape", "[unit][ops]") {
  core::config cfg;
  cfg.mailboxes.push_back(mailbox("alice"));
  cfg.mailboxes.push_back(mailbox("bob"));
  auto carol = mailbox("carol", "");
  carol.secret_problem = "environment variable CAROL_PW is not set";
  cfg.mailboxes.push_back(carol);
  auto dave = mailbox("dave");
  dave.host.clear();
  cfg.mailboxes.push_back(dave);

  auto ok = pass("alice", true, "", "", {"IMAP4rev1", "IDLE"}, {{"INBOX", 3}, {"Sent", 1}});
  auto bad = pass("bob", false, "login_failed", "NO [AUTHENTICATIONFAILED] bad password s3cret-pw");
  std::size_t probed = 0;
  std::ostringstream prog;
  apps::progress_reporter pr(prog, false, 2);
  auto ds = apps::diagnose_all(cfg, fake({ok, bad}, &probed), &pr);
  REQUIRE(ds);
  CHECK(probed == 2);  // Not Set mailboxes are never contacted
  REQUIRE(ds->size() == 4);
  CHECK((*ds)[0].result == "OK");
  CHECK((*ds)[1].result == "Error");
  CHECK((*ds)[1].reason == "login_failed");
  CHECK((*ds)[1].next_step.find("check username/password") != std::string::npos);
  CHECK((*ds)[1].detail.find("s3cret-pw") == std::string::npos);  // redacted
  CHECK((*ds)[2].result == "Not Set");
  CHECK((*ds)[2].detail.find("CAROL_PW") != std::string::npos);
  CHECK((*ds)[3].result == "Not Set");
  CHECK((*ds)[3].detail.find("host") != std::string::npos);
  CHECK(prog.str() == "[1/2] alice: OK\n[2/2] bob: Error\n");
  CHECK(apps::diagnose_exit_code(*ds) == 3);

  auto j = apps::diagnoses_json(*ds, false);
  REQUIRE(j["mailboxes"].size() == 4);
  for (auto& m : j["mailboxes"]) {
    for (auto key : {"user", "result", "reason", "detail", "next_step"})
      CHECK(m.contains(key));
    CHECK_FALSE(m.contains("capabilities"));
  }
  CHECK(j["mailboxes"][0]["reason"].is_null());
  CHECK(j["mailboxes"][1]["reason"] == "login_failed");
  CHECK(j["mailboxes"][2]["result"] == "Not Set");
  CHECK(j.dump().find("s3cret-pw") == std::string::npos);

  std::ostringstream text;
  apps::print_diagnoses(text, *ds);
  CHECK(text.str().find("bob                  Error    login_failed") != std::string::npos);
  CHECK(text.str().find("4 mailbox(es): 1 OK, 1 Error, 2 Not Set") != std::string::npos);
  CHECK(text.str().find("s3cret-pw") == std::string::npos);
}

TEST_CASE("diagnose: all OK or Not Set exits 0 and a mailbox the probe never reported is an Error",
          "[unit][ops]") {
  core::config cfg;
  cfg.mailboxes.push_back(mailbox("alice"));
  cfg.mailboxes.push_back(mailbox("nobody", ""));
  auto ds = apps::diagnose_all(cfg, fake({pass("alice", true)}), nullptr);
  REQUIRE(ds);
  CHECK(apps::diagnose_exit_code(*ds) == 0);
  cfg.mailboxes.push_back(mailbox("zed"));
  ds = apps::diagnose_all(cfg, fake({pass("alice", true)}), nullptr);
  REQUIRE(ds);
  CHECK((*ds)[2].result == "Error");
  CHECK(apps::diagnose_exit_code(*ds) == 3);
}

TEST_CASE("test-mailbox detail shows capabilities + folders with counts + auth with the secret redacted", "[unit][ops]") {
  auto m = mailbox("alice");
  auto ok = pass("alice", true, "", "", {"IMAP4rev1", "IDLE"}, {{"INBOX", 3}, {"Sent", 1}});
  auto d = apps::from_pass(m, ok);
  std::ostringstream os;
  apps::print_mailbox_detail(os, d);
  auto s = os.str();
  CHECK(s.find("IMAP4rev1 IDLE") != std::string::npos);
  CHECK(s.find("INBOX") != std::string::npos);
  CHECK(s.find("3 message(s)") != std::string::npos);
  CHECK(s.find("auth:         password") != std::string::npos);
  CHECK(s.find("[redacted]") != std::string::npos);
  CHECK(s.find("s3cret-pw") == std::string::npos);
  auto j = apps::diagnoses_json({d}, true)["mailboxes"][0];
  CHECK(j["folders"][0]["name"] == "INBOX");
  CHECK(j["folders"][0]["messages"] == 3);
  CHECK(j["capabilities"].size() == 2);
  CHECK(j["result"] == "OK");
}

TEST_CASE("folder_not_found and every other reason get a next step naming what to fix", "[unit][ops]") {
  auto m = mailbox("alice");
  auto p = pass("alice", false, "folder_not_found",
                "folder \"Sent Items\" cannot be opened: NO Mailbox doesn't exist", {}, {{"INBOX", 2}});
  auto d = apps::from_pass(m, p);
  CHECK(d.next_step.find("Sent Items") != std::string::npos);
  CHECK(d.next_step.find("INBOX") != std::string::npos);
  p.reason = "certificate_invalid";
  CHECK(apps::from_pass(m, p).next_step.find("ca_file") != std::string::npos);
}

TEST_CASE("progress bar on a terminal redraws one line and clears it", "[unit][ops]") {
  std::ostringstream os;
  apps::progress_reporter pr(os, true, 4);
  pr.finished("a", true, 1);
  pr.finished("b", false, 2);
  pr.done();
  auto s = os.str();
  CHECK(s.find("\r[###############---------------] 2/4 tested, 1 error(s)") != std::string::npos);
  CHECK(s.find('\n') == std::string::npos);
  CHECK(s.substr(s.size() - 4) == "\r\033[K");
}
