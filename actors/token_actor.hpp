#pragma once
// One token actor per [[oauth_credential]] (never per mailbox: a service principal serves
// many mailboxes, and 100 mailboxes must cause one refresh, not 100). Runs detached: a token
// request blocks (HTTPS with certificate verification, protocols/net/http_client).
//
//            ask: cached token fresh ──────────────────────────────► reply token
//   ready ──┤ ask: none / near expiry / the asker's token was rejected ─► refreshing
//            │                                                          │ ok: cache, reply
//            │      transient (503, temporarily_unavailable, no answer) │ retry with back-off
//            │                  (attempts exhausted) ──► cooling down ──┤ (asks answered
//            │                                                          │  token_refresh_failed
//            │                                                          │  without a request)
//            │      invalid_grant / invalid_client / ... ──► blocked ───┘ (asks answered
//            │                     credentials_changed, no request until the refresh-token
//            └──────────────────── file changes: `mailscan oauth store-token`)
//
// Asks queue in the mailbox while a refresh runs (the actor handles one message at a time),
// then find the fresh token cached: concurrent asks cost one refresh.
#include "actors/messages.hpp"
#include "core/config.hpp"
#include "core/event_log.hpp"
#include "core/secret_box.hpp"

#include <chrono>
#include <memory>
#include <optional>

namespace mscan::actors {

struct token_actor_settings {
  core::oauth_credential_config cfg;  // client_secret opened (core::resolve_oauth_secrets)
  std::optional<core::secret_key> key;  // opens (and re-seals) the refresh-token file
  std::shared_ptr<core::event_log> log;
  unsigned attempts = 3;                            // per refresh, for transient failures
  std::chrono::milliseconds backoff{500};           // before retry n: backoff * 2^(n-1)
  std::chrono::seconds cooldown{30};                // after a failed refresh; doubles, capped
  std::chrono::seconds max_cooldown{900};
};

// Accepts: (token_atom, std::string rejected_token) -> (std::string token, std::string reason,
//          std::string detail). `rejected_token` is the token the server just refused ("" if
//          none): it is never handed out again. On failure token is "" and reason is
//          credentials_changed (revoked/rejected: an operator must act) or token_refresh_failed.
caf::actor spawn_token_actor(caf::actor_system& sys, token_actor_settings s);

} // namespace mscan::actors
