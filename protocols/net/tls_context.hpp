#pragma once
// The one client TLS context setup (internal to protocols/net): TLS 1.2 or newer, the system
// trust store plus an optional extra CA file, peer verification unless switched off. Used by
// the IMAP transport (which caches contexts per (verify, ca_file)) and the HTTP client.
#include <utility>  // before Asio (Boost 1.74 + g++ 12, see TOOLCHAIN.md)

#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <string>

namespace mscan::net {

// nullptr with `err` set when the CA file cannot be loaded (or TLS 1.2 cannot be enforced).
// system_trust = false leaves the system store out (parsing it costs ~15 ms of CPU): the
// caller adds it with add_system_trust() before the first handshake.
std::shared_ptr<boost::asio::ssl::context> make_client_tls_context(bool verify, const std::string& ca_file,
                                                                  std::string& err, bool system_trust = true);
void add_system_trust(boost::asio::ssl::context& c);

} // namespace mscan::net
