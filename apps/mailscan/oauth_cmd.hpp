#pragma once
// `mailscan oauth ...`: storing sealed OAuth secrets, and the start-up check every scanning
// command runs (a missing or wrong secrets key is exit 2 before anything connects).
//
//   mailscan oauth new-key                              prints a fresh key (64 hex digits)
//   mailscan oauth store-token --config FILE CREDENTIAL reads a refresh token from stdin and
//                                                       writes the credential's sealed
//                                                       refresh_token_file
//   mailscan oauth seal --config FILE CREDENTIAL        reads a client secret from stdin and
//                                                       prints it sealed (msk1:...) for a
//                                                       client_secret_file
#include "core/config.hpp"

#include <istream>
#include <map>
#include <string>

namespace mscan::apps {

// 0 when every credential in use can be resolved, else prints "mailscan: config: ..." and
// returns 2.
int oauth_startup_check(const core::config& cfg);

// user -> warning text, for mailboxes whose credential's refresh token has been idle long
// enough to be near the provider's inactivity expiry (read before a probe uses the token).
std::map<std::string, std::string> oauth_idle_warnings(const core::config& cfg);

int run_oauth_new_key();
int run_oauth_store_token(const std::string& config_file, const std::string& credential, std::istream& in);
int run_oauth_seal(const std::string& config_file, const std::string& credential, std::istream& in);

} // namespace mscan::apps
