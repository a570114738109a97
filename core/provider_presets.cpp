#include "core/provider_presets.hpp"

#include <array>

namespace mscan::core {

namespace {

constexpr std::array<provider_preset, 2> presets{{
  {"office365", "outlook.office365.com", 993, security_mode::tls, auth_kind::xoauth2,
   /*throttle_backoff_s=*/300, /*max_download_mb_per_day=*/0, /*max_connections_per_mailbox=*/20,
   "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
   "https://outlook.office365.com/.default",
   "https://outlook.office365.com/IMAP.AccessAsUser.All offline_access"},
  {"gmail", "imap.gmail.com", 993, security_mode::tls, auth_kind::xoauth2,
   /*throttle_backoff_s=*/120, /*max_download_mb_per_day=*/2500, /*max_connections_per_mailbox=*/15,
   "https://oauth2.googleapis.com/token", "", "https://mail.google.com/"},
}};

} // namespace

const provider_preset* find_provider(std::string_view name) {
  for (auto& p : presets)
    if (p.name == name)
      return &p;
  return nullptr;
}

std::string_view known_providers() { return "office365 | gmail"; }

} // namespace mscan::core
