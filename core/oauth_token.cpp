#include "core/oauth_token.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <openssl/crypto.h>

#include <fstream>
#include <set>
#include <sstream>
#include <sys/stat.h>

namespace mscan::core {

std::string_view to_string(refresh_failure f) {
  switch (f) {
    case refresh_failure::none: return "none";
    case refresh_failure::revoked: return "revoked";
    case refresh_failure::rejected: return "rejected";
    case refresh_failure::transient: return "transient";
  }
  return "none";
}

std::string_view reason_for(refresh_failure f) {
  return f == refresh_failure::transient ? "token_refresh_failed" : "credentials_changed";
}

namespace {

// A description from the server goes into logs: printable ASCII only, bounded.
std::string printable(std::string_view s, std::size_t max = 200) {
  std::string out;
  for (char c : s) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    out += (c >= 0x20 && c < 0x7f) ? c : ' ';
  }
  return out;
}

refresh_failure classify_error(std::string_view error, int status) {
  if (error == "invalid_grant")
    return refresh_failure::revoked;
  if (error == "temporarily_unavailable" || error == "server_error" || error == "slow_down")
    return refresh_failure::transient;
  if (!error.empty() && status < 500 && status != 429)
    return refresh_failure::rejected;
  return status == 429 || status >= 500 ? refresh_failure::transient : refresh_failure::rejected;
}

} // namespace

token_response parse_token_response(int status, std::string_view body) {
  token_response r;
  if (status == 0) {
    r.failure = refresh_failure::transient;
    r.detail = fmt::format("token endpoint unreachable: {}", printable(body));
    return r;
  }
  nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (status >= 200 && status < 300) {
    const bool has_token = j.is_object() && j.contains("access_token") && j["access_token"].is_string() &&
                           !j["access_token"].get_ref<const std::string&>().empty();
    if (!has_token) {
      r.failure = refresh_failure::transient;
      r.detail = fmt::format("token endpoint answered HTTP {} without an access_token", status);
      return r;
    }
    if (auto t = j.find("token_type"); t != j.end() && t->is_string()) {
      std::string type = t->get<std::string>();
      for (auto& c : type)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (type != "bearer") {
        r.failure = refresh_failure::rejected;
        r.detail = fmt::format("token endpoint issued a '{}' token, not a bearer token", printable(type, 40));
        return r;
      }
    }
    r.access_token = j["access_token"].get<std::string>();
    r.expires_in = 3600;  // RFC 6749 5.1: RECOMMENDED, not required; an hour is the common default
    if (auto e = j.find("expires_in"); e != j.end()) {
      if (e->is_number_unsigned() || (e->is_number_integer() && e->get<std::int64_t>() >= 0))
        r.expires_in = static_cast<std::uint32_t>(std::min<std::uint64_t>(e->get<std::uint64_t>(), 365 * 86400));
      else if (e->is_string()) {  // some providers send "3599"
        try {
          r.expires_in = static_cast<std::uint32_t>(std::stoul(e->get<std::string>()));
        } catch (const std::exception&) {
        }
      }
    }
    if (auto rt = j.find("refresh_token"); rt != j.end() && rt->is_string())
      r.refresh_token = rt->get<std::string>();
    r.ok = true;
    return r;
  }
  std::string error, description;
  if (j.is_object()) {
    if (auto e = j.find("error"); e != j.end() && e->is_string())
      error = e->get<std::string>();
    if (auto d = j.find("error_description"); d != j.end() && d->is_string())
      description = d->get<std::string>();
  }
  r.failure = classify_error(error, status);
  r.error = printable(error, 60);
  r.detail = fmt::format("token endpoint answered HTTP {}{}{}", status, error.empty() ? "" : " " + r.error,
                         description.empty() ? "" : ": " + printable(description));
  return r;
}

std::string form_urlencode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')
      out += static_cast<char>(c);
    else
      out += fmt::format("%{:02X}", c);
  }
  return out;
}

std::string token_request_body(const oauth_credential_config& c, std::string_view refresh_token) {
  std::string b;
  auto add = [&](std::string_view k, std::string_view v) {
    if (!b.empty())
      b += '&';
    b += k;
    b += '=';
    b += form_urlencode(v);
  };
  if (c.grant == oauth_grant::refresh_token) {
    add("grant_type", "refresh_token");
    add("refresh_token", refresh_token);
  } else {
    add("grant_type", "client_credentials");
  }
  add("client_id", c.client_id);
  if (!c.client_secret.empty())
    add("client_secret", c.client_secret);
  if (!c.scope.empty())
    add("scope", c.scope);
  return b;
}

std::string token_aad(std::string_view credential) {
  return fmt::format("mailscan oauth_credential:{}", credential);
}

expected<token_file, std::string> read_token_file(const std::filesystem::path& p, const secret_key& key,
                                                  std::string_view credential) {
  std::ifstream in(p, std::ios::binary);
  if (!in)
    return unexpected{fmt::format("refresh token file {} cannot be read (store one with `mailscan oauth "
                                  "store-token`)",
                                  p.string())};
  std::ostringstream ss;
  ss << in.rdbuf();
  auto j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (!j.is_object() || !j.contains("refresh_token") || !j["refresh_token"].is_string())
    return unexpected{fmt::format("refresh token file {} is malformed", p.string())};
  if (j.value("credential", std::string{}) != credential)
    return unexpected{fmt::format("refresh token file {} belongs to another credential", p.string())};
  auto opened = open_sealed(key, j["refresh_token"].get<std::string>(), token_aad(credential));
  if (!opened)
    return unexpected{fmt::format("refresh token file {}: {}", p.string(), opened.error())};
  token_file t;
  t.refresh_token = std::move(opened.value());
  t.stored_at = j.value("stored_at", std::int64_t{0});
  t.last_used = j.value("last_used", std::int64_t{0});
  return t;
}

expected<bool, std::string> write_token_file(const std::filesystem::path& p, const secret_key& key,
                                             std::string_view credential, const token_file& t) {
  nlohmann::json j{{"version", 1},
                   {"credential", std::string{credential}},
                   {"refresh_token", seal(key, t.refresh_token, token_aad(credential))},
                   {"stored_at", t.stored_at},
                   {"last_used", t.last_used}};
  std::error_code ec;
  if (p.has_parent_path())
    std::filesystem::create_directories(p.parent_path(), ec);
  auto tmp = p;
  tmp += ".tmp";
  {
    auto old = ::umask(077);
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    ::umask(old);
    if (!out)
      return unexpected{fmt::format("cannot write {}", tmp.string())};
    out << j.dump() << '\n';
    out.flush();
    if (!out)
      return unexpected{fmt::format("cannot write {}", tmp.string())};
  }
  std::filesystem::permissions(tmp, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write,
                               std::filesystem::perm_options::replace, ec);
  std::filesystem::rename(tmp, p, ec);
  if (ec)
    return unexpected{fmt::format("cannot replace {}: {}", p.string(), ec.message())};
  return true;
}

std::optional<std::int64_t> idle_warning_days(const token_file& t, std::int64_t now) {
  auto since = t.last_used ? t.last_used : t.stored_at;
  if (since <= 0)
    return std::nullopt;
  auto days = (now - since) / 86400;
  if (days < refresh_idle_warn_days)
    return std::nullopt;
  return days;
}

std::string idle_warning_text(std::int64_t days) {
  return fmt::format("the refresh token has not been used for {} days; Microsoft expires refresh tokens after "
                     "{} days of inactivity: run `mailscan run` (or `mailscan diagnose`) against this "
                     "credential soon, or re-authorise and `mailscan oauth store-token`",
                     days, refresh_idle_expiry_days);
}

expected<oauth_secrets, std::string> resolve_oauth_secrets(const config& cfg) {
  oauth_secrets out;
  std::set<std::string> used;
  for (auto& m : cfg.mailboxes)
    if (!m.oauth_credential.empty())
      used.insert(m.oauth_credential);
  bool need_key = false;
  for (auto& c : cfg.oauth_credentials)
    if (used.count(c.name) && (c.grant == oauth_grant::refresh_token || is_sealed(c.client_secret)))
      need_key = true;
  if (need_key) {
    auto k = load_secret_key(cfg.engine.secrets_key_file, cfg.engine.secrets_key_env);
    if (!k)
      return unexpected{k.error()};
    out.key = k.value();
  }
  for (auto& c : cfg.oauth_credentials) {
    if (!used.count(c.name))
      continue;
    std::string secret = c.client_secret;
    if (is_sealed(secret)) {
      auto opened = open_sealed(*out.key, secret, token_aad(c.name));
      if (!opened)
        return unexpected{fmt::format("oauth_credential '{}': client secret: {}", c.name, opened.error())};
      secret = std::move(opened.value());
    }
    out.client_secrets[c.name] = std::move(secret);
    if (c.grant == oauth_grant::refresh_token && std::filesystem::exists(c.refresh_token_file)) {
      auto t = read_token_file(c.refresh_token_file, *out.key, c.name);
      if (!t)
        return unexpected{fmt::format("oauth_credential '{}': {}", c.name, t.error())};
      OPENSSL_cleanse(t->refresh_token.data(), t->refresh_token.size());
    }
  }
  return out;
}

} // namespace mscan::core
