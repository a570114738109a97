#pragma once
// One blocking HTTP(S) request (Boost.Beast + OpenSSL): the webhook notifier and the OAuth
// token actor use it. https verifies the chain (system store plus an optional extra CA file)
// and the host name, sends SNI for DNS names; the timeout bounds resolve + connect + TLS +
// request + response. Blocking: call it from a detached actor or a worker thread.
// Error texts never contain the request body or headers (they carry secrets).
#include "common/expected.hpp"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mscan::net {

struct http_url {
  bool tls = false;
  std::string host, port, target;
};

// http://host[:port]/path or https://...; no user:password in the authority.
expected<http_url, std::string> parse_http_url(std::string_view url);

struct http_request {
  std::string url;
  std::string content_type;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers{};  // e.g. Authorization
  std::filesystem::path ca_file{};
  bool verify_certificate = true;
  std::chrono::milliseconds timeout{5000};
  std::string user_agent = "mailscan";
};

struct http_response {
  int status = 0;        // 0 = no HTTP answer (see error)
  std::string body{};
  std::string error{};   // why there is no answer: "timeout", "TLS: ...", "Connection refused"
  bool retryable = true; // for status 0: a network failure worth another attempt
  std::uint32_t retry_after_s = 0;  // the Retry-After header (seconds form), 0 = none
};

// POSTs `body`. Never throws.
http_response http_post(const http_request& req);

} // namespace mscan::net
