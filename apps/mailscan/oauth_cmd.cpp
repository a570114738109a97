#include "apps/mailscan/oauth_cmd.hpp"

#include "apps/mailscan/diagnose.hpp"
#include "core/oauth_token.hpp"

#include <fmt/format.h>
#include <openssl/crypto.h>

#include <ctime>
#include <iostream>
#include <iterator>

namespace mscan::apps {

namespace {

constexpr int exit_ok = 0, exit_usage = 2, exit_failed = 3;

std::string read_secret(std::istream& in) {
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' '))
    s.pop_back();
  return s;
}

struct credential_ctx {
  core::config cfg;
  const core::oauth_credential_config* cred = nullptr;
  core::secret_key key;
};

std::optional<credential_ctx> open_credential(const std::string& config_file, const std::string& name,
                                              std::string_view command, int& code) {
  auto cfg = core::load_config(config_file);
  if (!cfg) {
    code = error_line("config", cfg.error().message, exit_usage);
    return std::nullopt;
  }
  credential_ctx c{std::move(cfg.value()), nullptr, {}};
  c.cred = c.cfg.find_oauth_credential(name);
  if (!c.cred) {
    code = error_line(command, fmt::format("no [[oauth_credential]] named '{}' in {}", name, config_file), exit_usage);
    return std::nullopt;
  }
  auto key = core::load_secret_key(c.cfg.engine.secrets_key_file, c.cfg.engine.secrets_key_env);
  if (!key) {
    code = error_line("config", key.error(), exit_usage);
    return std::nullopt;
  }
  c.key = key.value();
  return c;
}

} // namespace

int oauth_startup_check(const core::config& cfg) {
  auto r = core::resolve_oauth_secrets(cfg);
  if (!r)
    return error_line("config", r.error(), exit_usage);
  return exit_ok;
}

std::map<std::string, std::string> oauth_idle_warnings(const core::config& cfg) {
  std::map<std::string, std::string> out;
  std::map<std::string, std::string> by_credential;
  std::optional<core::secret_key> key;
  for (auto& c : cfg.oauth_credentials) {
    if (c.grant != core::oauth_grant::refresh_token)
      continue;
    if (!key) {
      auto k = core::load_secret_key(cfg.engine.secrets_key_file, cfg.engine.secrets_key_env);
      if (!k)
        return out;  // the start-up check reports this
      key = k.value();
    }
    auto t = core::read_token_file(c.refresh_token_file, *key, c.name);
    if (!t)
      continue;
    if (auto days = core::idle_warning_days(*t, static_cast<std::int64_t>(std::time(nullptr))))
      by_credential[c.name] = core::idle_warning_text(*days);
    OPENSSL_cleanse(t->refresh_token.data(), t->refresh_token.size());
  }
  for (auto& m : cfg.mailboxes)
    if (auto it = by_credential.find(m.oauth_credential); it != by_credential.end())
      out[m.user] = it->second;
  return out;
}

int run_oauth_new_key() {
  auto k = core::generate_secret_key_hex();
  if (k.empty())
    return error_line("oauth new-key", "no randomness available", exit_failed);
  std::cout << k << "\n";
  return exit_ok;
}

int run_oauth_store_token(const std::string& config_file, const std::string& name, std::istream& in) {
  int code = 0;
  auto c = open_credential(config_file, name, "oauth store-token", code);
  if (!c)
    return code;
  if (c->cred->grant != core::oauth_grant::refresh_token)
    return error_line("oauth store-token", fmt::format("oauth_credential '{}' uses grant = \"client_credentials\": "
                                                       "it has no refresh token", name),
                      exit_usage);
  core::token_file t;
  t.refresh_token = read_secret(in);
  if (t.refresh_token.empty())
    return error_line("oauth store-token", "no refresh token on standard input", exit_usage);
  t.stored_at = static_cast<std::int64_t>(std::time(nullptr));
  auto w = core::write_token_file(c->cred->refresh_token_file, c->key, name, t);
  OPENSSL_cleanse(t.refresh_token.data(), t.refresh_token.size());
  if (!w)
    return error_line("oauth store-token", w.error(), exit_failed);
  std::cout << fmt::format("{}: refresh token stored (sealed) in {}\n", name, c->cred->refresh_token_file.string());
  return exit_ok;
}

int run_oauth_seal(const std::string& config_file, const std::string& name, std::istream& in) {
  int code = 0;
  auto c = open_credential(config_file, name, "oauth seal", code);
  if (!c)
    return code;
  auto secret = read_secret(in);
  if (secret.empty())
    return error_line("oauth seal", "no secret on standard input", exit_usage);
  std::cout << core::seal(c->key, secret, core::token_aad(name)) << "\n";
  OPENSSL_cleanse(secret.data(), secret.size());
  return exit_ok;
}

} // namespace mscan::apps
