#pragma once
// Provider presets: `provider = "office365" | "gmail"` on a [[mailbox]] or [[oauth_credential]]
// fills the provider's host, port, security, auth, token endpoint, scopes and limits; any key
// written explicitly overrides the preset. Plain data, no I/O.
//
// Limits the engine respects by default:
//   - concurrent connections per mailbox: Office 365 allows 20, Gmail 15; the engine never
//     opens more than one per mailbox, so both are met by construction.
//   - throttling: Office 365 answers "Server Unavailable" / "Request is throttled" (classified
//     as `throttled` in protocols/imap); throttle_backoff_s is the minimum pause before the
//     next login to the host (Microsoft asks clients to back off for minutes, not seconds).
//   - Gmail's IMAP download quota: 2,500 MB a day per account (max_download_mb_per_day).
#include "core/config.hpp"

#include <cstdint>
#include <string_view>

namespace mscan::core {

struct provider_preset {
  std::string_view name;
  std::string_view host;
  std::uint16_t port;
  security_mode security;
  auth_kind auth;
  std::uint32_t throttle_backoff_s;
  std::uint32_t max_download_mb_per_day;  // 0 = none
  std::uint32_t max_connections_per_mailbox;
  std::string_view token_url;              // "{tenant}" is replaced by the credential's tenant
  std::string_view scope_client_credentials;  // "" = the provider has no such grant for IMAP
  std::string_view scope_refresh_token;
};

// nullptr for an unknown name (the config loader lists the known ones).
const provider_preset* find_provider(std::string_view name);
std::string_view known_providers();  // "office365 | gmail"

} // namespace mscan::core
