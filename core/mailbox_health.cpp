#include "core/mailbox_health.hpp"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>

namespace mscan::core {

namespace {

std::string hex(const unsigned char* p, std::size_t n) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(digits[p[i] >> 4]);
    out.push_back(digits[p[i] & 15]);
  }
  return out;
}

// Length-prefixed fields so ("ab","c") and ("a","bc") hash differently.
std::string digest(std::string_view salt, const mailbox_config& m) {
  std::string input;
  auto add = [&](std::string_view s) {
    input += fmt::format("{}:", s.size());
    input.append(s);
  };
  add(salt);
  add(m.user);
  add(m.host);
  add(std::to_string(m.port));
  add(m.username);
  add(m.secret);
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  const bool ok = EVP_Digest(input.data(), input.size(), md.data(), &len, EVP_sha256(), nullptr) == 1;
  OPENSSL_cleanse(input.data(), input.size());
  return ok ? hex(md.data(), len) : std::string{};
}

bool is_auth_refusal(std::string_view reason) { return reason == "login_failed"; }

} // namespace

std::string_view to_string(notify_kind k) noexcept {
  switch (k) {
    case notify_kind::none: return "none";
    case notify_kind::failing: return "failing";
    case notify_kind::recovered: return "recovered";
    case notify_kind::credentials_changed: return "credentials_changed";
  }
  return "none";
}

std::string credential_hash(const mailbox_config& m) {
  std::array<unsigned char, 16> salt{};
  if (RAND_bytes(salt.data(), static_cast<int>(salt.size())) != 1)
    return {};  // no hash: credentials_changed cannot be detected, nothing else breaks
  const auto s = hex(salt.data(), salt.size());
  auto d = digest(s, m);
  return d.empty() ? std::string{} : s + "$" + d;
}

bool credential_matches(std::string_view stored, const mailbox_config& m) {
  const auto dollar = stored.find('$');
  if (dollar == std::string_view::npos || dollar == 0)
    return false;
  const auto want = digest(stored.substr(0, dollar), m);
  const auto have = stored.substr(dollar + 1);
  return !want.empty() && want.size() == have.size() &&
         CRYPTO_memcmp(want.data(), have.data(), want.size()) == 0;
}

bool may_login(const storage::mailbox_state& prev, const mailbox_config& m) {
  // OAuth mailboxes: the credential's token actor is the gate (it stops asking the token
  // endpoint after invalid_grant until a new refresh token is stored), and the credentials
  // are not in the mailbox's config, so its hash could never change.
  if (prev.state != "credentials_changed" || !m.oauth_credential.empty())
    return true;
  return !credential_matches(prev.credential_hash, m);
}

bool credentials_proven(const storage::mailbox_state& prev, const mailbox_config& m) {
  return prev.state != "credentials_changed" && !prev.credential_hash.empty() &&
         credential_matches(prev.credential_hash, m);
}

storage::mailbox_state force_sync(storage::mailbox_state s) {
  if (s.state == "credentials_changed") {
    s.state = "error";
    s.credential_hash.clear();  // forgets which credential was refused: one more attempt
  }
  return s;
}

health_decision next_state(const storage::mailbox_state& prev, const pass_outcome& pass,
                           const mailbox_config& m, std::uint32_t notify_after) {
  if (notify_after == 0)
    notify_after = 1;
  health_decision d;
  d.state = prev;
  d.state.user = m.user;
  auto& s = d.state;
  if (pass.slow)
    s.slow = true;
  else if (pass.ok && !pass.slice)
    s.slow = false;

  if (m.disable_mail_scan) {
    s.state = "disabled";
    s.consecutive_failures = 0;
    s.notified = false;
    return d;
  }

  if (pass.ok) {
    if (prev.notified && prev.state != "disabled")
      d.notify = notify_kind::recovered;
    s.state = "ok";
    s.consecutive_failures = 0;
    s.last_error_reason.clear();
    s.last_error_detail.clear();
    s.last_scanned = pass.finished_at;
    s.notified = false;
    if (!credential_matches(s.credential_hash, m))
      s.credential_hash = credential_hash(m);
    return d;
  }

  s.consecutive_failures = prev.state == "disabled" ? 1 : prev.consecutive_failures + 1;
  s.last_error_reason = pass.reason;
  s.last_error_detail = pass.detail;
  if (prev.state == "disabled")
    s.notified = false;

  // The token endpoint refused the OAuth credential (invalid_grant: consent revoked, refresh
  // token expired; invalid_client: secret expired): an operator must act. The token actor
  // already stopped asking; the mailbox shows credentials_changed and notifies once.
  if (pass.reason == "credentials_changed" && !m.oauth_credential.empty()) {
    s.state = "credentials_changed";
    if (!s.notified) {
      d.notify = notify_kind::credentials_changed;
      s.notified = true;
    }
    return d;
  }

  // Refused with the credentials that last worked (the password changed on the server), or a
  // refused replacement while already locked out: stop logging in.
  const bool same_as_stored = credential_matches(prev.credential_hash, m);
  if (is_auth_refusal(pass.reason) &&
      (same_as_stored || (prev.state == "credentials_changed" && !prev.credential_hash.empty()))) {
    s.state = "credentials_changed";
    s.last_error_reason = "credentials_changed";
    s.last_error_detail = pass.detail.empty() ? "login refused with credentials that worked before"
                                              : pass.detail;
    if (!same_as_stored)
      s.credential_hash = credential_hash(m);
    d.stop_logins = true;
    if (!s.notified) {
      d.notify = notify_kind::credentials_changed;
      s.notified = true;
    }
    return d;
  }

  s.state = "error";
  if (!s.notified && s.consecutive_failures >= notify_after) {
    d.notify = notify_kind::failing;
    s.notified = true;
  }
  return d;
}

std::string next_step(std::string_view reason, std::string_view detail) {
  if (reason == "dns_failure")
    return "host name does not resolve: check the mailbox's host setting and this machine's DNS";
  if (reason == "connection_refused")
    return "nothing accepts connections there: check host, port and security (993 = tls, 143 = starttls), and firewalls";
  if (reason == "timeout")
    return "the server did not answer in time: check that the host is reachable from here and not overloaded; "
           "raise connect_timeout_s/command_timeout_s if it is just slow";
  if (reason == "tls_handshake_failed")
    return "TLS handshake failed: check that the port speaks the configured security (tls on 993, starttls on 143) "
           "and that the server allows TLS 1.2 or later";
  if (reason == "certificate_invalid")
    return "certificate not trusted: set ca_file to the CA that signed the server's certificate, fix the server's "
           "chain, or check that host matches the certificate's name";
  if (reason == "starttls_unavailable")
    return "the server does not offer STARTTLS: use security = \"tls\" on port 993, or enable STARTTLS on the server";
  if (reason == "login_failed")
    return "login failed: check username/password; if they changed, update the mailbox's credentials";
  if (reason == "auth_method_unsupported")
    return "the server does not offer the configured auth method: switch auth (password | xoauth2) or enable it on the server";
  if (reason == "account_unavailable")
    return "the server reports the account unavailable (disabled, locked or under maintenance): ask the mail "
           "administrator, then run `mailscan test-mailbox USER`";
  if (reason == "folder_not_found")
    return fmt::format("a configured folder does not exist{}: fix the mailbox's folders setting (see "
                       "`mailscan test-mailbox USER` for the folders that exist) or use folders = \"*\"",
                       detail.empty() ? "" : fmt::format(" ({})", detail));
  if (reason == "server_bye")
    return "the server closed the session: check the server's log; if it repeats, lower max_connections_per_host";
  if (reason == "protocol_error")
    return "the server answered something unexpected: run `mailscan test-mailbox USER` and report the detail";
  if (reason == "throttled")
    return "the server limits connections: lower max_connections_per_host or raise the server's per-user limit";
  if (reason == "credentials_changed" && detail.find("token endpoint") != std::string_view::npos)
    return detail.find("invalid_grant") != std::string_view::npos
             ? "the OAuth refresh token was refused (consent revoked, or the token expired or was rotated "
               "away): re-authorise the account and store the new token with `mailscan oauth store-token "
               "--config FILE CREDENTIAL` (scanning resumes by itself)"
             : "the token endpoint refused the OAuth client (client id or secret wrong or expired, scope not "
               "granted): fix the [[oauth_credential]] and restart mailscan";
  if (reason == "credentials_changed" && detail.find("refresh token file") != std::string_view::npos)
    return "no usable refresh token: store one with `mailscan oauth store-token --config FILE CREDENTIAL`";
  if (reason == "credentials_changed")
    return "logins stopped after the server refused credentials that worked before: put the new password in the "
           "config (scanning resumes by itself) or run `mailscan force-sync USER` once it is fixed";
  if (reason == "token_refresh_failed")
    return "the OAuth token endpoint could not be reached or is temporarily unavailable (retried with back-off): "
           "check the credential's token_url, the network and the provider's status; scanning resumes by itself";
  if (reason == "disk_full")
    return "the disk holding data_dir is full: free space or move data_dir; scanning resumes where it stopped";
  if (reason == "storage_error")
    return "the database could not be written: check data_dir's permissions and the disk, and the log for the cause";
  return "see the detail and the daily log; run `mailscan test-mailbox USER` for the whole conversation";
}

} // namespace mscan::core
