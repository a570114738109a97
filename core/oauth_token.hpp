#pragma once
// OAuth2 token endpoint logic without I/O: the request body for each grant, the response
// parsed and classified (RFC 6749 5.1/5.2), the sealed refresh-token file, and the start-up
// resolution of every credential's secrets. The token actor (actors/token_actor) does the I/O.
//
// Refresh-token file (written by `mailscan oauth store-token`, rewritten when the provider
// rotates the token or after each use), mode 0600, JSON:
//   {"version": 1, "credential": "NAME", "refresh_token": "msk1:...", "stored_at": UNIX,
//    "last_used": UNIX}
// The token is sealed with the secrets key (AES-256-GCM, associated data = the credential's
// name), so the file alone reveals nothing and cannot be moved to another credential.
#include "common/expected.hpp"
#include "core/config.hpp"
#include "core/secret_box.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace mscan::core {

// How a failed refresh is handled.
enum class refresh_failure {
  none,
  revoked,    // invalid_grant: consent revoked, refresh token expired/rotated away
  rejected,   // invalid_client, unauthorized_client, invalid_scope, ...: the config is wrong
  transient,  // temporarily_unavailable, server_error, 429, 5xx, no answer: retry with back-off
};
std::string_view to_string(refresh_failure);

struct token_response {
  bool ok = false;
  std::string access_token;      // never printed
  std::uint32_t expires_in = 0;  // seconds
  std::string refresh_token;     // a rotated refresh token, when the provider sent one
  refresh_failure failure = refresh_failure::none;
  std::string error;   // the OAuth error code ("invalid_grant"), or "" for non-OAuth failures
  std::string detail;  // one line for logs and diagnose: status, error, description; no secrets
};

// Parses the endpoint's answer: `status` 0 = no HTTP answer (then `body` is the network error).
token_response parse_token_response(int status, std::string_view body);

// The mailbox reason code for a failure: revoked/rejected -> credentials_changed (an operator
// must act; no automatic retries), transient -> token_refresh_failed.
std::string_view reason_for(refresh_failure);

// application/x-www-form-urlencoded body for the credential's grant.
std::string token_request_body(const oauth_credential_config& c, std::string_view refresh_token);
std::string form_urlencode(std::string_view s);

std::string token_aad(std::string_view credential);

struct token_file {
  std::string refresh_token;  // opened; never printed
  std::int64_t stored_at = 0;
  std::int64_t last_used = 0;  // last successful refresh with it
};
// Errors: cannot read, malformed, other credential, wrong key.
expected<token_file, std::string> read_token_file(const std::filesystem::path& p, const secret_key& key,
                                                  std::string_view credential);
// Atomic (temp file + rename), mode 0600.
expected<bool, std::string> write_token_file(const std::filesystem::path& p, const secret_key& key,
                                             std::string_view credential, const token_file& t);

// Microsoft expires refresh tokens unused for 90 days; warn from this many days on.
inline constexpr std::int64_t refresh_idle_warn_days = 60;
inline constexpr std::int64_t refresh_idle_expiry_days = 90;
// Days since the token was last used when that is at least refresh_idle_warn_days, else none.
std::optional<std::int64_t> idle_warning_days(const token_file& t, std::int64_t now_unix);
std::string idle_warning_text(std::int64_t days);

// The credentials' secrets made usable: the secrets key loaded (when any credential needs
// it), sealed client secrets opened, every existing refresh-token file opened once (a wrong
// key fails here, at start-up, not at the first refresh).
struct oauth_secrets {
  std::optional<secret_key> key;
  std::map<std::string, std::string> client_secrets;  // credential name -> opened secret
};
// Errors name the credential and the cause (exit 2 in the CLI). A config without credentials
// used by a mailbox needs nothing and succeeds.
expected<oauth_secrets, std::string> resolve_oauth_secrets(const config& cfg);

} // namespace mscan::core
