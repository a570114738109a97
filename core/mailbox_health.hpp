#pragma once
// Per-mailbox health as a pure function of (previous state, finished pass): the state machine
// behind `status`, failure notifications and the credentials_changed lock-out. No I/O here;
// the engine stores the returned state and hands the returned notification to the notifier.
//
//            pass ok                      failure (N-th in a row: notify "failing" once)
//   ┌──────► ok ───────────────────────────────► error ──┐ failure (no more notifications)
//   │         ▲  pass ok (notify "recovered"          │  ◄┘
//   │         └──── when the episode had notified) ◄──┘
//   │
//   │  login_failed with the SAME credentials that last logged in successfully
//   │  (from ok or error)  ──► credentials_changed   (notify at once; logins STOP, because
//   │                             │                   servers lock accounts that retry)
//   │  new credentials in the     │ may_login() is false until the config's credentials hash
//   │  config log in              │ differs from the stored one, or `mailscan force-sync USER`
//   └─────────────────────────────┘ (a refused new credential stays credentials_changed)
//
//   disable_mail_scan ──► disabled (no notifications; leaving it restarts at ok/error)
#include "core/config.hpp"
#include "storage/types.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace mscan::core {

// The outcome of one pass (scan or probe) as the engine classified it.
struct pass_outcome {
  bool ok = false;
  std::string reason{}, detail{};  // reason code (INTERFACE.md) when !ok
  std::int64_t finished_at = 0;    // unix seconds
  // The slow-lane mark (storage::mailbox_state::slow): a slow answer sets it; a whole
  // (not a yielded slice) ok pass without one clears it.
  bool slow = false;
  bool slice = false;
};

enum class notify_kind { none, failing, recovered, credentials_changed };
std::string_view to_string(notify_kind) noexcept;  // "none" | "failing" | "recovered" | ...

struct health_decision {
  storage::mailbox_state state{};          // store this (put_mailbox_state)
  notify_kind notify = notify_kind::none;  // send (and record) one notification of this kind
  bool stop_logins = false;                // no LOGIN until may_login() says so again
};

// The next state after a pass. `mailbox` supplies the current credentials (hashed, salted,
// never kept) and disable_mail_scan; notify_after_failures 0 is treated as 1.
health_decision next_state(const storage::mailbox_state& prev, const pass_outcome& pass,
                           const mailbox_config& mailbox, std::uint32_t notify_after_failures);

// Before a pass: false while credentials_changed holds for the configured credentials.
bool may_login(const storage::mailbox_state& prev, const mailbox_config& mailbox);

// These credentials logged in before: `prev` holds their hash from a successful login (not
// a refused one, as in credentials_changed). Giving up a login half-way and retrying cannot
// then be a second wrong-password attempt (the slow lane, actors/mailbox_actor.cpp).
bool credentials_proven(const storage::mailbox_state& prev, const mailbox_config& mailbox);

// `mailscan force-sync USER`: lifts credentials_changed (the next pass logs in once more;
// a login_failed then is an ordinary error, not a new lock-out episode).
storage::mailbox_state force_sync(storage::mailbox_state prev);

// "salthex$sha256hex" over (user, host, port, username, secret) with a fresh random salt.
std::string credential_hash(const mailbox_config& mailbox);
// Whether `stored` (from credential_hash) was made from these credentials.
bool credential_matches(std::string_view stored, const mailbox_config& mailbox);

// What an operator should do about a reason code (INTERFACE.md codes plus disk_full and
// storage_error); `detail` refines it (e.g. the folder name). Never empty.
std::string next_step(std::string_view reason, std::string_view detail = {});

} // namespace mscan::core
