// Every transition of core/mailbox_health.hpp's state machine.
#include "core/mailbox_health.hpp"

#include <catch2/catch.hpp>

using namespace mscan;
using core::notify_kind;

namespace {

core::mailbox_config alice(std::string secret = "pw1") {
  core::mailbox_config m;
  m.user = "alice";
  m.host = "127.0.0.1";
  m.username = "alice";
  m.secret = std::move(secret);
  return m;
}

core::pass_outcome ok_pass(std::int64_t t = 100) { return {true, "", "", t}; }
core::pass_outcome fail(std::string reason, std::int64_t t = 100) {
  return {false, std::move(reason), "detail", t};
}

} // namespace

TEST_CASE("credential hash is salted and never holds the secret and detects a change", "[unit][ops]") {
  auto m = alice("hunter2-secret");
  auto h1 = core::credential_hash(m), h2 = core::credential_hash(m);
  REQUIRE_FALSE(h1.empty());
  CHECK(h1 != h2);  // fresh salt each time
  CHECK(h1.find("hunter2") == std::string::npos);
  CHECK(core::credential_matches(h1, m));
  CHECK(core::credential_matches(h2, m));
  CHECK_FALSE(core::credential_matches(h1, alice("hunter3-secret")));
  auto other_user = m;
  other_user.username = "alice2";
  CHECK_FALSE(core::credential_matches(h1, other_user));
  CHECK_FALSE(core::credential_matches("", m));
  CHECK_FALSE(core::credential_matches("nodollar", m));
  CHECK_FALSE(core::credential_matches("ab$", m));
}

TEST_CASE("wrong password after success -> credentials_changed -> new password -> OK", "[unit][ops]") {
  storage::mailbox_state s;
  auto m = alice("old");
  auto d = core::next_state(s, ok_pass(10), m, 10);
  CHECK(d.state.state == "ok");
  CHECK(d.notify == notify_kind::none);
  CHECK(d.state.last_scanned == 10);
  CHECK(core::credential_matches(d.state.credential_hash, m));

  // The server's password changed; the config still has the old one.
  d = core::next_state(d.state, fail("login_failed", 20), m, 10);
  CHECK(d.state.state == "credentials_changed");
  CHECK(d.state.last_error_reason == "credentials_changed");
  CHECK(d.stop_logins);
  CHECK(d.notify == notify_kind::credentials_changed);
  CHECK(d.state.last_scanned == 10);  // last successful scan kept
  CHECK_FALSE(core::may_login(d.state, m));

  // Operator puts a new (wrong) password: one attempt, refused: locked again, not re-notified.
  auto wrong = alice("typo");
  CHECK(core::may_login(d.state, wrong));
  auto d2 = core::next_state(d.state, fail("login_failed", 30), wrong, 10);
  CHECK(d2.state.state == "credentials_changed");
  CHECK(d2.notify == notify_kind::none);
  CHECK_FALSE(core::may_login(d2.state, wrong));

  // The right new password: logs in, recovers, notifies recovery once.
  auto fixed = alice("new");
  CHECK(core::may_login(d2.state, fixed));
  auto d3 = core::next_state(d2.state, ok_pass(40), fixed, 10);
  CHECK(d3.state.state == "ok");
  CHECK(d3.notify == notify_kind::recovered);
  CHECK(d3.state.consecutive_failures == 0);
  CHECK(d3.state.last_error_reason.empty());
  CHECK_FALSE(d3.state.notified);
  CHECK(core::credential_matches(d3.state.credential_hash, fixed));
  CHECK(core::may_login(d3.state, fixed));
}

TEST_CASE("login_failed without an earlier success is an ordinary error", "[unit][ops]") {
  storage::mailbox_state s;
  auto d = core::next_state(s, fail("login_failed"), alice(), 10);
  CHECK(d.state.state == "error");
  CHECK(d.state.last_error_reason == "login_failed");
  CHECK_FALSE(d.stop_logins);
  CHECK(core::may_login(d.state, alice()));
}

TEST_CASE("force-sync lifts credentials_changed for one more attempt", "[unit][ops]") {
  auto m = alice();
  auto d = core::next_state({}, ok_pass(), m, 10);
  d = core::next_state(d.state, fail("login_failed"), m, 10);
  REQUIRE(d.state.state == "credentials_changed");
  auto forced = core::force_sync(d.state);
  CHECK(forced.state == "error");
  CHECK(core::may_login(forced, m));
  // Refused again after the force: an ordinary error (the operator asked for the attempt).
  auto again = core::next_state(forced, fail("login_failed"), m, 10);
  CHECK(again.state.state == "error");
  CHECK(again.notify == notify_kind::none);  // this episode already notified
  auto good = core::next_state(forced, ok_pass(), m, 10);
  CHECK(good.state.state == "ok");
  CHECK(good.notify == notify_kind::recovered);
  // force_sync leaves other states alone.
  CHECK(core::force_sync(good.state) == good.state);
}

TEST_CASE("10 consecutive failures -> exactly one notification and recovery notifies once", "[unit][ops]") {
  auto m = alice();
  storage::mailbox_state s;
  int failing = 0;
  for (int i = 1; i <= 25; ++i) {
    auto d = core::next_state(s, fail("timeout", i), m, 10);
    if (d.notify == notify_kind::failing) {
      ++failing;
      CHECK(i == 10);
    } else {
      CHECK(d.notify == notify_kind::none);
    }
    CHECK(d.state.state == "error");
    CHECK(d.state.consecutive_failures == static_cast<std::uint32_t>(i));
    s = d.state;
  }
  CHECK(failing == 1);
  auto rec = core::next_state(s, ok_pass(), m, 10);
  CHECK(rec.notify == notify_kind::recovered);
  auto again = core::next_state(rec.state, ok_pass(), m, 10);
  CHECK(again.notify == notify_kind::none);
  // A new episode notifies again.
  s = again.state;
  int second = 0;
  for (int i = 0; i < 10; ++i) {
    auto d = core::next_state(s, fail("server_bye"), m, 10);
    second += d.notify == notify_kind::failing;
    s = d.state;
  }
  CHECK(second == 1);
}

TEST_CASE("an episode shorter than notify_after_failures notifies nothing", "[unit][ops]") {
  auto m = alice();
  storage::mailbox_state s;
  for (int i = 0; i < 9; ++i) {
    auto d = core::next_state(s, fail("timeout"), m, 10);
    CHECK(d.notify == notify_kind::none);
    s = d.state;
  }
  auto d = core::next_state(s, ok_pass(), m, 10);
  CHECK(d.notify == notify_kind::none);  // no "recovered" for an episode nobody heard of
  // notify_after_failures = 0 behaves as 1.
  CHECK(core::next_state({}, fail("timeout"), m, 0).notify == notify_kind::failing);
}

TEST_CASE("disabled mailboxes neither fail nor notify", "[unit][ops]") {
  auto m = alice();
  m.disable_mail_scan = true;
  storage::mailbox_state s;
  s.state = "error";
  s.consecutive_failures = 12;
  s.notified = true;
  auto d = core::next_state(s, fail("timeout"), m, 10);
  CHECK(d.state.state == "disabled");
  CHECK(d.notify == notify_kind::none);
  CHECK(d.state.consecutive_failures == 0);
  m.disable_mail_scan = false;
  auto back = core::next_state(d.state, fail("timeout"), m, 10);
  CHECK(back.state.state == "error");
  CHECK(back.state.consecutive_failures == 1);
}

TEST_CASE("every reason code has a concrete next step", "[unit][ops]") {
  for (auto r : {"dns_failure", "connection_refused", "timeout", "tls_handshake_failed",
                 "certificate_invalid", "starttls_unavailable", "login_failed",
                 "auth_method_unsupported", "account_unavailable", "folder_not_found", "server_bye",
                 "protocol_error", "throttled", "credentials_changed", "token_refresh_failed",
                 "disk_full", "storage_error"}) {
    auto step = core::next_step(r);
    CHECK(step != core::next_step("no_such_reason"));
  }
  CHECK(core::next_step("login_failed").find("username/password") != std::string::npos);
  CHECK(core::next_step("certificate_invalid").find("ca_file") != std::string::npos);
  CHECK(core::next_step("folder_not_found", "folder \"Sent Items\"").find("Sent Items") != std::string::npos);
}

TEST_CASE("the slow-lane mark: set by a slow pass, kept by failures and slices, cleared by a whole fast pass",
          "[unit][ops][slow_lane]") {
  auto m = alice();
  storage::mailbox_state s;
  auto slow_ok = ok_pass();
  slow_ok.slow = true;
  s = core::next_state(s, slow_ok, m, 3).state;
  CHECK(s.slow);
  s = core::next_state(s, fail("timeout"), m, 3).state;  // a failed pass says nothing of speed
  CHECK(s.slow);
  auto slice = ok_pass();
  slice.slice = true;  // a yielded slice is not a whole pass
  s = core::next_state(s, slice, m, 3).state;
  CHECK(s.slow);
  s = core::next_state(s, ok_pass(), m, 3).state;
  CHECK_FALSE(s.slow);
  auto slow_fail = fail("timeout");
  slow_fail.slow = true;
  CHECK(core::next_state(s, slow_fail, m, 3).state.slow);
}
