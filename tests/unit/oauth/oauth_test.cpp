// OAuth2 without a network: sealed secrets (AES-256-GCM), token responses and their
// classification, request bodies, the sealed refresh-token file, provider presets in the
// config, and the health rules for token failures.
#include "core/config.hpp"
#include "core/mailbox_health.hpp"
#include "core/oauth_token.hpp"
#include "core/secret_box.hpp"

#include "../storage/temp_dir.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <cstdlib>
#include <fstream>

using namespace mscan;
using namespace mscan::core;

namespace {

secret_key key_of(char c) {
  auto k = parse_secret_key(std::string(64, c));
  REQUIRE(k);
  return *k;
}

expected<config, config_error> parse(const std::string& text) { return parse_config(text, "/tmp/t/mailscan.toml"); }

} // namespace

TEST_CASE("sealed secrets round-trip and refuse a wrong key, tampering and another purpose", "[unit][oauth]") {
  auto k = key_of('a');
  for (std::string plain : {std::string{}, std::string{"x"}, std::string{"1//0refresh-token-\xff\x00 with bytes", 30},
                            std::string(5000, 'z')}) {
    auto sealed = seal(k, plain, "purpose");
    CHECK(is_sealed(sealed));
    if (plain.size() >= 8)  // shorter texts may occur in base64 by chance
      CHECK(sealed.find(plain.substr(0, 8)) == std::string::npos);
    auto opened = open_sealed(k, sealed, "purpose");
    REQUIRE(opened);
    CHECK(*opened == plain);
  }
  auto sealed = seal(k, "the secret", "purpose");
  CHECK(seal(k, "the secret", "purpose") != sealed);  // a fresh nonce each time

  auto wrong = open_sealed(key_of('b'), sealed, "purpose");
  REQUIRE_FALSE(wrong);
  CHECK(wrong.error().find("wrong key") != std::string::npos);
  CHECK_FALSE(open_sealed(k, sealed, "other purpose"));
  // Flip one character of the ciphertext part: the tag no longer verifies.
  auto tampered = sealed;
  tampered[10] = tampered[10] == 'A' ? 'B' : 'A';
  CHECK_FALSE(open_sealed(k, tampered, "purpose"));
  CHECK_FALSE(open_sealed(k, "plain text", "purpose"));
  CHECK_FALSE(open_sealed(k, "msk1:!!!!", "purpose"));
  CHECK_FALSE(open_sealed(k, "msk1:", "purpose"));
}

TEST_CASE("secrets keys: 64 hex digits from a file or an environment variable", "[unit][oauth]") {
  CHECK(parse_secret_key(std::string(64, 'F') + "\n"));
  CHECK_FALSE(parse_secret_key(std::string(63, 'a')));
  CHECK_FALSE(parse_secret_key(std::string(63, 'a') + "g"));
  auto generated = generate_secret_key_hex();
  CHECK(parse_secret_key(generated));
  CHECK(generated != generate_secret_key_hex());

  ::setenv("MSCAN_TEST_KEY_UNIT", generated.c_str(), 1);
  CHECK(load_secret_key({}, "MSCAN_TEST_KEY_UNIT"));
  ::unsetenv("MSCAN_TEST_KEY_UNIT");
  auto missing = load_secret_key({}, "MSCAN_TEST_KEY_UNIT");
  REQUIRE_FALSE(missing);
  CHECK(missing.error() == "environment variable MSCAN_TEST_KEY_UNIT (the secrets key) is not set");
  auto no_file = load_secret_key("/nonexistent/key", "");
  REQUIRE_FALSE(no_file);
  CHECK(no_file.error().find("cannot be read") != std::string::npos);
  CHECK_FALSE(load_secret_key({}, ""));
}

TEST_CASE("token responses are parsed and classified", "[unit][oauth]") {
  SECTION("success") {
    auto r = parse_token_response(200, R"({"access_token":"at-1","token_type":"Bearer","expires_in":3599})");
    CHECK(r.ok);
    CHECK(r.access_token == "at-1");
    CHECK(r.expires_in == 3599);
    CHECK(r.refresh_token.empty());
    auto s = parse_token_response(200, R"({"access_token":"at-2","expires_in":"120","refresh_token":"rt-2"})");
    CHECK(s.ok);
    CHECK(s.expires_in == 120);
    CHECK(s.refresh_token == "rt-2");
    CHECK(parse_token_response(200, R"({"access_token":"at-3"})").expires_in == 3600);
  }
  SECTION("revoked: invalid_grant") {
    auto r = parse_token_response(400, R"({"error":"invalid_grant","error_description":"AADSTS70008: expired due to inactivity"})");
    CHECK_FALSE(r.ok);
    CHECK(r.failure == refresh_failure::revoked);
    CHECK(r.error == "invalid_grant");
    CHECK(r.detail == "token endpoint answered HTTP 400 invalid_grant: AADSTS70008: expired due to inactivity");
    CHECK(reason_for(r.failure) == "credentials_changed");
  }
  SECTION("rejected: the client or the scope is wrong") {
    for (auto e : {"invalid_client", "unauthorized_client", "invalid_scope", "unsupported_grant_type"}) {
      auto r = parse_token_response(401, fmt::format(R"({{"error":"{}"}})", e));
      CHECK(r.failure == refresh_failure::rejected);
      CHECK(reason_for(r.failure) == "credentials_changed");
    }
    CHECK(parse_token_response(403, "forbidden").failure == refresh_failure::rejected);
    CHECK(parse_token_response(200, R"({"access_token":"x","token_type":"mac"})").failure == refresh_failure::rejected);
  }
  SECTION("transient: retry with back-off") {
    CHECK(parse_token_response(400, R"({"error":"temporarily_unavailable"})").failure == refresh_failure::transient);
    CHECK(parse_token_response(500, R"({"error":"server_error"})").failure == refresh_failure::transient);
    CHECK(parse_token_response(503, "<html>Service Unavailable</html>").failure == refresh_failure::transient);
    CHECK(parse_token_response(429, "").failure == refresh_failure::transient);
    CHECK(parse_token_response(0, "Connection refused").failure == refresh_failure::transient);
    CHECK(parse_token_response(200, "{not json").failure == refresh_failure::transient);
    CHECK(parse_token_response(200, R"({"access_token":""})").failure == refresh_failure::transient);
    CHECK(reason_for(refresh_failure::transient) == "token_refresh_failed");
  }
  SECTION("details are one printable, bounded line") {
    auto r = parse_token_response(400, std::string(R"({"error":"invalid_grant","error_description":")") +
                                         std::string(1000, 'x') + "\\n\\u0001\"}");
    CHECK(r.detail.size() < 300);
    CHECK(r.detail.find('\n') == std::string::npos);
  }
}

TEST_CASE("token request bodies are form-encoded per grant", "[unit][oauth]") {
  oauth_credential_config c;
  c.client_id = "app id";
  c.client_secret = "s&cr=t";
  c.scope = "https://outlook.office365.com/.default";
  CHECK(token_request_body(c, "") ==
        "grant_type=client_credentials&client_id=app%20id&client_secret=s%26cr%3Dt&"
        "scope=https%3A%2F%2Foutlook.office365.com%2F.default");
  c.grant = oauth_grant::refresh_token;
  c.scope.clear();
  CHECK(token_request_body(c, "1//r+t") ==
        "grant_type=refresh_token&refresh_token=1%2F%2Fr%2Bt&client_id=app%20id&client_secret=s%26cr%3Dt");
}

TEST_CASE("the refresh-token file is sealed and bound to its credential", "[unit][oauth]") {
  storage::test::temp_dir dir;
  auto p = dir.path() / "tokens" / "contoso.json";
  auto k = key_of('c');
  token_file t{"1//refresh-SECRET", 1000, 2000};
  REQUIRE(write_token_file(p, k, "contoso", t));
  std::ifstream in(p);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text.find("refresh-SECRET") == std::string::npos);
  CHECK((std::filesystem::status(p).permissions() & std::filesystem::perms::others_read) == std::filesystem::perms::none);
  auto back = read_token_file(p, k, "contoso");
  REQUIRE(back);
  CHECK(back->refresh_token == "1//refresh-SECRET");
  CHECK(back->stored_at == 1000);
  CHECK(back->last_used == 2000);
  auto wrong = read_token_file(p, key_of('d'), "contoso");
  REQUIRE_FALSE(wrong);
  CHECK(wrong.error().find("wrong key") != std::string::npos);
  CHECK_FALSE(read_token_file(p, k, "fabrikam"));
  CHECK_FALSE(read_token_file(dir.path() / "missing.json", k, "contoso"));
}

TEST_CASE("an idle refresh token is warned about before the 90-day inactivity expiry", "[unit][oauth]") {
  const std::int64_t day = 86400, now = 1000 * day;
  CHECK_FALSE(idle_warning_days(token_file{"x", now - 5 * day, now - 59 * day}, now));
  auto d = idle_warning_days(token_file{"x", now - 100 * day, now - 75 * day}, now);
  REQUIRE(d);
  CHECK(*d == 75);
  CHECK(idle_warning_days(token_file{"x", now - 61 * day, 0}, now));  // never used: from storage
  CHECK(idle_warning_text(75).find("90 days") != std::string::npos);
}

TEST_CASE("provider presets fill host, port, security, auth and limits, explicit keys win", "[unit][oauth]") {
  auto cfg = parse(R"(
[engine]
secrets_key_env = "K"
[[oauth_credential]]
name = "contoso"
provider = "office365"
tenant = "contoso.onmicrosoft.com"
client_id = "app"
client_secret_env = "MSCAN_UNSET_SECRET"
[[oauth_credential]]
name = "google"
provider = "gmail"
grant = "refresh_token"
client_id = "gid"
refresh_token_file = "tokens/google.json"
[[mailbox]]
user = "shared"
address = "shared@contoso.example"
provider = "office365"
oauth_credential = "contoso"
[[mailbox]]
user = "g"
address = "g@gmail.example"
provider = "gmail"
oauth_credential = "google"
[[mailbox]]
user = "local"
provider = "office365"
host = "127.0.0.1"
port = 10993
throttle_backoff_s = 5
oauth_credential = "contoso"
)");
  REQUIRE(cfg);
  auto& o365 = cfg->mailboxes[0];
  CHECK(o365.host == "outlook.office365.com");
  CHECK(o365.port == 993);
  CHECK(o365.security == security_mode::tls);
  CHECK(o365.auth == auth_kind::xoauth2);
  CHECK(o365.username == "shared@contoso.example");  // the shared mailbox, not the identity
  CHECK(o365.throttle_backoff_s == 300);
  CHECK(o365.is_set());
  auto& gm = cfg->mailboxes[1];
  CHECK(gm.host == "imap.gmail.com");
  CHECK(gm.max_download_mb_per_day == 2500);
  auto& local = cfg->mailboxes[2];
  CHECK(local.host == "127.0.0.1");
  CHECK(local.port == 10993);
  CHECK(local.throttle_backoff_s == 5);
  CHECK(local.username == "local");  // no address: the user name
  auto c = cfg->find_oauth_credential("contoso");
  REQUIRE(c);
  CHECK(c->token_url == "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token");
  CHECK(c->scope == "https://outlook.office365.com/.default");
  CHECK(c->secret_problem == "environment variable MSCAN_UNSET_SECRET is not set");
  auto g = cfg->find_oauth_credential("google");
  REQUIRE(g);
  CHECK(g->token_url == "https://oauth2.googleapis.com/token");
  CHECK(g->scope == "https://mail.google.com/");
  CHECK(g->refresh_token_file == "/tmp/t/tokens/google.json");
}

TEST_CASE("OAuth config mistakes are one clear line", "[unit][oauth]") {
  auto err = [](const std::string& text) {
    auto c = parse(text);
    REQUIRE_FALSE(c);
    return c.error().message;
  };
  CHECK(err("[[mailbox]]\nuser = \"a\"\nhost = \"h\"\noauth_credential = \"nope\"\n")
          .find("names unknown oauth_credential 'nope'") != std::string::npos);
  CHECK(err("[[mailbox]]\nuser = \"a\"\nprovider = \"yahoo\"\n").find("expected one of office365 | gmail") !=
        std::string::npos);
  CHECK(err("[[oauth_credential]]\nname = \"g\"\nprovider = \"gmail\"\nclient_id = \"x\"\n")
          .find("no client_credentials grant") != std::string::npos);
  CHECK(err("[[oauth_credential]]\nname = \"o\"\nprovider = \"office365\"\nclient_id = \"x\"\n")
          .find("key 'tenant'") != std::string::npos);
  CHECK(err("[[oauth_credential]]\nname = \"o\"\ntoken_url = \"http://idp.example/token\"\nclient_id = \"x\"\n")
          .find("expected an https:// URL") != std::string::npos);
  CHECK(err("[[oauth_credential]]\nname = \"o\"\ntoken_url = \"https://idp.example/t\"\nclient_id = \"x\"\n"
            "grant = \"refresh_token\"\n")
          .find("refresh_token_file") != std::string::npos);
  CHECK(err("[[oauth_credential]]\nname = \"o\"\ntoken_url = \"https://idp.example/t\"\nclient_id = \"x\"\n"
            "[[mailbox]]\nuser = \"a\"\noauth_credential = \"o\"\npassword = \"p\"\n")
          .find("not both") != std::string::npos);
}

TEST_CASE("start-up: a missing or wrong secrets key is refused before anything connects", "[unit][oauth]") {
  storage::test::temp_dir dir;
  auto k = key_of('e');
  REQUIRE(write_token_file(dir.path() / "t.json", k, "c", token_file{"rt", 1, 1}));
  auto text = fmt::format(R"(
[engine]
secrets_key_env = "MSCAN_TEST_KEY_STARTUP"
[[oauth_credential]]
name = "c"
token_url = "https://127.0.0.1:1/token"
client_id = "x"
grant = "refresh_token"
refresh_token_file = "{}"
[[mailbox]]
user = "a"
host = "127.0.0.1"
oauth_credential = "c"
)", (dir.path() / "t.json").string());
  auto cfg = parse(text);
  REQUIRE(cfg);
  ::unsetenv("MSCAN_TEST_KEY_STARTUP");
  auto missing = resolve_oauth_secrets(*cfg);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().find("MSCAN_TEST_KEY_STARTUP") != std::string::npos);
  ::setenv("MSCAN_TEST_KEY_STARTUP", std::string(64, 'f').c_str(), 1);
  auto wrong = resolve_oauth_secrets(*cfg);
  REQUIRE_FALSE(wrong);
  CHECK(wrong.error().find("wrong key") != std::string::npos);
  ::setenv("MSCAN_TEST_KEY_STARTUP", std::string(64, 'e').c_str(), 1);
  auto ok = resolve_oauth_secrets(*cfg);
  REQUIRE(ok);
  CHECK(ok->key);
  ::unsetenv("MSCAN_TEST_KEY_STARTUP");
}

TEST_CASE("health: a refused OAuth credential is credentials_changed without stopping the token gate",
          "[unit][oauth]") {
  mailbox_config m;
  m.user = "shared";
  m.oauth_credential = "contoso";
  storage::mailbox_state prev;
  prev.state = "ok";
  auto d = next_state(prev, pass_outcome{false, "credentials_changed",
                                         "token endpoint answered HTTP 400 invalid_grant: consent revoked", 1},
                      m, 10);
  CHECK(d.state.state == "credentials_changed");
  CHECK(d.notify == notify_kind::credentials_changed);
  CHECK(may_login(d.state, m));  // the token actor decides, not the credential hash
  auto again = next_state(d.state, pass_outcome{false, "credentials_changed", "token endpoint ... invalid_grant", 2}, m, 10);
  CHECK(again.notify == notify_kind::none);  // one notification per episode
  CHECK(next_step("credentials_changed", "token endpoint answered HTTP 400 invalid_grant").find("store-token") !=
        std::string::npos);
  CHECK(next_step("token_refresh_failed", "token endpoint answered HTTP 503").find("back-off") != std::string::npos);
}
