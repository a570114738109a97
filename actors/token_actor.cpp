#include "actors/token_actor.hpp"
#include "common/text.hpp"

#include "core/oauth_token.hpp"
#include "protocols/net/http_client.hpp"

#include <fmt/format.h>
#include <openssl/crypto.h>

#include <thread>

namespace mscan::actors {

using namespace mscan::atoms;

namespace {

using clock = std::chrono::steady_clock;


struct token_state {
  token_actor_settings s;
  std::string host;  // of the token endpoint, for log lines
  std::string access_token;
  clock::time_point refresh_at{};  // refresh from here on (expiry minus margin)
  // Blocked (revoked/rejected): no request until the refresh-token file changes.
  std::optional<core::refresh_failure> blocked;
  std::filesystem::file_time_type blocked_file_time{};
  std::string last_detail;
  clock::time_point cooldown_until{};
  std::chrono::seconds next_cooldown{0};
  std::uint64_t refreshes = 0;

  static inline const char* name = "token";
};

using token_actor_t = caf::stateful_actor<token_state>;

void log(token_actor_t* self, core::log_level lvl, std::string_view event, std::string detail) {
  auto& st = self->state;
  if (st.s.log)
    st.s.log->write(lvl, event, "", st.host, "", fmt::format("credential={} {}", st.s.cfg.name, detail));
}

std::filesystem::file_time_type file_time(const std::filesystem::path& p) {
  std::error_code ec;
  auto t = std::filesystem::last_write_time(p, ec);
  return ec ? std::filesystem::file_time_type{} : t;
}

caf::message failure(std::string_view reason, std::string detail) {
  return caf::make_message(std::string{}, std::string{reason}, std::move(detail));
}

void block(token_actor_t* self, core::refresh_failure kind, std::string detail) {
  auto& st = self->state;
  st.blocked = kind;
  st.blocked_file_time = file_time(st.s.cfg.refresh_token_file);
  st.last_detail = std::move(detail);
  st.access_token.clear();
  log(self, core::log_level::error, "oauth_refresh_failed",
      fmt::format("class={} {}; no further token requests until the credential is fixed", to_string(kind),
                  st.last_detail));
}

// One refresh with retries; true when a new access token is cached.
bool refresh(token_actor_t* self) {
  auto& st = self->state;
  auto& c = st.s.cfg;
  core::token_file tf;
  if (c.grant == core::oauth_grant::refresh_token) {
    if (!st.s.key) {
      block(self, core::refresh_failure::rejected, "no secrets key to open the refresh token");
      return false;
    }
    auto t = core::read_token_file(c.refresh_token_file, *st.s.key, c.name);
    if (!t) {
      block(self, core::refresh_failure::rejected, t.error());
      return false;
    }
    tf = std::move(t.value());
  }
  net::http_request req{.url = c.token_url,
                        .content_type = "application/x-www-form-urlencoded",
                        .body = core::token_request_body(c, tf.refresh_token),
                        .headers = {},
                        .ca_file = c.ca_file,
                        .verify_certificate = c.verify_certificate,
                        .timeout = std::chrono::seconds(c.timeout_s),
                        .user_agent = "mailscan-oauth"};
  core::token_response tr;
  for (unsigned i = 1; i <= std::max(1u, st.s.attempts); ++i) {
    auto resp = net::http_post(req);
    tr = core::parse_token_response(resp.status, resp.status ? std::string_view{resp.body}
                                                              : std::string_view{resp.error});
    if (tr.ok || tr.failure != core::refresh_failure::transient || i == st.s.attempts)
      break;
    // Pacing a retry (this actor is detached; asks wait in its mailbox meanwhile).
    auto wait = st.s.backoff * (1 << (i - 1));
    if (resp.retry_after_s > 0)
      wait = std::min<std::chrono::milliseconds>(std::chrono::seconds(resp.retry_after_s), std::chrono::seconds(30));
    log(self, core::log_level::warning, "oauth_refresh_retry",
        fmt::format("attempt={} {}; retrying in {} ms", i, tr.detail, wait.count()));
    std::this_thread::sleep_for(wait);
  }
  OPENSSL_cleanse(req.body.data(), req.body.size());
  if (!tr.ok) {
    if (tr.failure != core::refresh_failure::transient) {
      block(self, tr.failure, tr.detail);
      return false;
    }
    st.next_cooldown = std::min(st.s.max_cooldown, st.next_cooldown.count() ? st.next_cooldown * 2 : st.s.cooldown);
    st.cooldown_until = clock::now() + st.next_cooldown;
    st.last_detail = tr.detail;
    log(self, core::log_level::error, "oauth_refresh_failed",
        fmt::format("class=transient {}; next attempt in {} s", tr.detail, st.next_cooldown.count()));
    return false;
  }
  ++st.refreshes;
  st.next_cooldown = std::chrono::seconds(0);
  st.access_token = std::move(tr.access_token);
  // Short-lived tokens still get used: the margin is at most half the lifetime.
  const auto margin = std::min<std::uint32_t>(c.refresh_margin_s, tr.expires_in / 2);
  st.refresh_at = clock::now() + std::chrono::seconds(tr.expires_in - margin);
  if (c.grant == core::oauth_grant::refresh_token) {
    // Rotation: a provider that sends a new refresh token invalidates the old one soon.
    if (!tr.refresh_token.empty())
      tf.refresh_token = std::move(tr.refresh_token);
    tf.last_used = now_unix();
    if (auto w = core::write_token_file(c.refresh_token_file, *st.s.key, c.name, tf); !w)
      log(self, core::log_level::error, "oauth_token_file_write_failed", w.error());
    OPENSSL_cleanse(tf.refresh_token.data(), tf.refresh_token.size());
  }
  log(self, core::log_level::info, "oauth_token_refreshed",
      fmt::format("expires_in={} refreshes={}", tr.expires_in, st.refreshes));
  return true;
}

caf::behavior token_actor(token_actor_t* self, token_actor_settings s) {
  self->state.s = std::move(s);
  auto& st = self->state;
  if (auto u = net::parse_http_url(st.s.cfg.token_url))
    st.host = u->host + ":" + u->port;
  if (st.s.cfg.grant == core::oauth_grant::refresh_token && st.s.key) {
    if (auto t = core::read_token_file(st.s.cfg.refresh_token_file, *st.s.key, st.s.cfg.name)) {
      if (auto days = core::idle_warning_days(*t, now_unix()))
        log(self, core::log_level::warning, "oauth_refresh_token_idle", core::idle_warning_text(*days));
      OPENSSL_cleanse(t->refresh_token.data(), t->refresh_token.size());
    }
  }
  return {
    [=](token_atom, const std::string& rejected) -> caf::message {
      auto& st = self->state;
      const auto now = clock::now();
      if (!st.access_token.empty() && st.access_token != rejected && now < st.refresh_at)
        return caf::make_message(st.access_token, std::string{}, std::string{});
      if (st.blocked) {
        if (st.s.cfg.grant != core::oauth_grant::refresh_token ||
            file_time(st.s.cfg.refresh_token_file) == st.blocked_file_time)
          return failure(core::reason_for(*st.blocked), st.last_detail);
        st.blocked.reset();  // a new refresh token was stored: try it
        log(self, core::log_level::info, "oauth_credential_unblocked", "the refresh token file changed");
      }
      if (now < st.cooldown_until)
        return failure("token_refresh_failed",
                       fmt::format("{} (next token request in {} s)", st.last_detail,
                                   std::chrono::duration_cast<std::chrono::seconds>(st.cooldown_until - now).count()));
      if (!rejected.empty() && rejected == st.access_token)
        log(self, core::log_level::info, "oauth_token_rejected", "the server refused the cached token; refreshing");
      if (refresh(self))
        return caf::make_message(st.access_token, std::string{}, std::string{});
      return failure(st.blocked ? core::reason_for(*st.blocked) : "token_refresh_failed", st.last_detail);
    },
  };
}

} // namespace

caf::actor spawn_token_actor(caf::actor_system& sys, token_actor_settings s) {
  return sys.spawn<caf::detached>(token_actor, std::move(s));
}

} // namespace mscan::actors
