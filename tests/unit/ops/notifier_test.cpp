// The webhook channel against a local receiver on 127.0.0.1, and records in the store.
#include "core/notifier.hpp"
#include "storage/store.hpp"
#include "http_receiver.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>

using namespace mscan;

namespace {

storage::mailbox_state failing_state() {
  storage::mailbox_state s;
  s.user = "alice";
  s.state = "error";
  s.consecutive_failures = 10;
  s.last_error_reason = "login_failed";
  s.last_error_detail = "NO [AUTHENTICATIONFAILED]";
  return s;
}

core::webhook_options to(std::uint16_t port, std::string path = "/hook") {
  core::webhook_options o;
  o.url = fmt::format("http://127.0.0.1:{}{}", port, path);
  o.timeout = std::chrono::milliseconds(3000);
  o.backoff = std::chrono::milliseconds(1);
  return o;
}

struct tmp_dir {
  std::filesystem::path path;
  tmp_dir() {
    std::string p = (std::filesystem::temp_directory_path() / "mscan-ops-XXXXXX").string();
    path = ::mkdtemp(p.data());
  }
  ~tmp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

} // namespace

TEST_CASE("webhook receives the notification as JSON with the bearer token", "[unit][ops]") {
  test::http_receiver rx({200});
  auto o = to(rx.port());
  o.bearer_token = "hook-token";
  auto n = core::make_notification(failing_state(), core::notify_kind::failing, 1'700'000'000);
  auto r = core::post_webhook(o, core::notification_json(n).dump());
  CHECK(r.delivered);
  CHECK(r.attempts == 1);
  CHECK(r.http_status == 200);
  rx.stop();
  auto reqs = rx.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].method == "POST");
  CHECK(reqs[0].target == "/hook");
  CHECK(reqs[0].authorization == "Bearer hook-token");
  CHECK(reqs[0].content_type == "application/json");
  auto j = nlohmann::json::parse(reqs[0].body);
  CHECK(j["kind"] == "failing");
  CHECK(j["user"] == "alice");
  CHECK(j["reason"] == "login_failed");
  CHECK(j["consecutive_failures"] == 10);
  CHECK(j["at"] == "2023-11-14T22:13:20Z");
  CHECK(j["next_step"].get<std::string>().find("username/password") != std::string::npos);
}

TEST_CASE("webhook retries 5xx within the bound and gives up on 4xx", "[unit][ops]") {
  {
    test::http_receiver rx({503, 502, 200});
    auto r = core::post_webhook(to(rx.port()), "{}");
    CHECK(r.delivered);
    CHECK(r.attempts == 3);
  }
  {
    test::http_receiver rx({503, 503, 503, 503});
    auto r = core::post_webhook(to(rx.port()), "{}");
    CHECK_FALSE(r.delivered);
    CHECK(r.attempts == 3);
    CHECK(r.http_status == 503);
    rx.stop();
    CHECK(rx.requests().size() == 3);
  }
  {
    test::http_receiver rx({404});
    auto r = core::post_webhook(to(rx.port(), "/secret-path-token"), "{}");
    CHECK_FALSE(r.delivered);
    CHECK(r.attempts == 1);
    CHECK(r.error.find("HTTP 404") != std::string::npos);
    CHECK(r.error.find("secret-path-token") == std::string::npos);  // the URL path may be a secret
  }
}

TEST_CASE("webhook to a closed port fails after the bounded attempts", "[unit][ops]") {
  std::uint16_t port = 0;
  {
    test::http_receiver rx({});
    port = rx.port();
  }  // closed now
  auto r = core::post_webhook(to(port), "{}");
  CHECK_FALSE(r.delivered);
  CHECK(r.attempts == 3);
  CHECK_FALSE(r.error.empty());
  auto bad = core::post_webhook(core::webhook_options{.url = "ftp://x"}, "{}");
  CHECK_FALSE(bad.delivered);
  CHECK(bad.attempts == 0);
}

TEST_CASE("https webhook refuses a server it cannot verify", "[unit][ops]") {
  test::http_receiver rx({200});  // speaks plain HTTP: the TLS handshake must fail
  auto o = to(rx.port());
  o.url = fmt::format("https://127.0.0.1:{}/hook", rx.port());
  o.attempts = 1;
  auto r = core::post_webhook(o, "{}");
  CHECK_FALSE(r.delivered);
  CHECK_FALSE(r.error.empty());
}

TEST_CASE("notifier records each notification with its delivery outcome", "[unit][ops]") {
  tmp_dir dir;
  auto db = storage::store::open(dir.path / "db");
  REQUIRE(db);
  test::http_receiver rx({200});
  core::notifier nt(to(rx.port()), db.value().get());
  auto r = nt.notify(core::make_notification(failing_state(), core::notify_kind::failing, 100));
  CHECK(r.delivered);
  auto rec = core::make_notification(failing_state(), core::notify_kind::recovered, 200);
  CHECK(rec.reason.empty());
  core::notifier offline({}, db.value().get());
  offline.notify(rec);
  auto all = db.value()->notifications();
  REQUIRE(all.size() == 2);
  CHECK(all[0].kind == "recovered");
  CHECK(all[0].delivery.empty());
  CHECK(all[1].kind == "failing");
  CHECK(all[1].delivery == "webhook: delivered");
  CHECK(all[1].reason == "login_failed");
}

TEST_CASE("record_pass: states persist and the webhook gets exactly the episode's notifications",
          "[unit][ops]") {
  tmp_dir dir;
  auto opened = storage::store::open(dir.path / "db");
  REQUIRE(opened);
  auto& db = *opened.value();
  test::http_receiver rx({});
  core::notifier nt(to(rx.port()), &db);
  core::mailbox_config m;
  m.user = "alice";
  m.host = "127.0.0.1";
  m.username = "alice";
  m.secret = "old-password";
  std::int64_t t = 1000;
  auto pass_ok = [&] { return core::pass_outcome{true, "", "", ++t}; };
  auto pass_fail = [&](std::string r) { return core::pass_outcome{false, std::move(r), "d", ++t}; };

  REQUIRE(core::record_pass(db, &nt, m, pass_ok(), 10));
  for (int i = 0; i < 12; ++i)
    REQUIRE(core::record_pass(db, &nt, m, pass_fail("timeout"), 10));
  CHECK(db.mailbox_state_of("alice")->consecutive_failures == 12);
  REQUIRE(core::record_pass(db, &nt, m, pass_ok(), 10));
  // The password changes on the server: one credentials_changed, logins stop.
  auto d = core::record_pass(db, &nt, m, pass_fail("login_failed"), 10);
  REQUIRE(d);
  CHECK(d->stop_logins);
  CHECK_FALSE(core::may_login(*db.mailbox_state_of("alice"), m));
  m.secret = "new-password";
  CHECK(core::may_login(*db.mailbox_state_of("alice"), m));
  REQUIRE(core::record_pass(db, &nt, m, pass_ok(), 10));
  CHECK(db.mailbox_state_of("alice")->state == "ok");

  rx.stop();
  std::vector<std::string> kinds;
  for (auto& r : rx.requests())
    kinds.push_back(nlohmann::json::parse(r.body)["kind"]);
  CHECK(kinds == std::vector<std::string>{"failing", "recovered", "credentials_changed", "recovered"});
  auto stored = db.notifications();
  REQUIRE(stored.size() == 4);
  CHECK(stored[0].kind == "recovered");
  CHECK(stored[1].kind == "credentials_changed");
  CHECK(stored[3].kind == "failing");
  CHECK(stored[3].consecutive_failures == 10);
  for (auto& r : rx.requests()) {  // secrets never leave in a notification
    CHECK(r.body.find("old-password") == std::string::npos);
    CHECK(r.body.find("new-password") == std::string::npos);
  }
}
